"""Where each downstream task's files lie in a shapes world that ``vlp data synth`` wrote: the ``--data``
and ``--images`` a fine-tuning or evaluation run is given, and the chance level of each task's metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TaskFiles:
    data: str  # the task's ROOT, relative to the world
    images: str = ""  # its images folder relative to the world; "" = ROOT/images
    chance: float | None = None  # the metric of a random guess, in percent (None: no fixed label set)

    def data_dir(self, world: Path) -> Path:
        return Path(world) / self.data

    def images_dir(self, world: Path) -> Path:
        return Path(world) / self.images if self.images else self.data_dir(world) / "images"


TASK_FILES = {
    "vqa": TaskFiles("vqa", images="images"),
    "gqa": TaskFiles("gqa"),
    "nlvr2": TaskFiles("nlvr2", chance=50.0),
    "snli_ve": TaskFiles("snli_ve", images="snli_ve/flickr30k_images", chance=100 / 3),
    "retrieval": TaskFiles("."),  # chance R@1 is 1 / the number of val images
}
