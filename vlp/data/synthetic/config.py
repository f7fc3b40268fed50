"""What a shapes world holds, and the seeded random streams every part draws from.

:class:`SynthConfig` is the one input of the generator (sizes, counts per image, seed). Each part of the
world draws from its own stream, :func:`part_rng` (seed, part, image), so adding a question kind or a
writer does not change the images or the captions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class SynthConfig:
    """What ``vlp data synth`` writes."""

    num_images: int = 2000
    seed: int = 0
    image_size: int = 64
    captions_per_image: int = 5
    max_objects: int = 4
    vqa_questions_per_image: int = 3
    gqa_questions_per_image: int = 3
    nlvr2_pairs_per_image: int = 2  # each image is drawn into about this many pairs
    nlvr2_sentences_per_pair: int = 4
    snli_hypotheses_per_image: int = 3  # one entailment, one neutral, one contradiction, repeating
    region_feature_dim: int = 64
    tokenizer_vocab_size: int = 1000
    jpeg_quality: int = 92

    def validate(self) -> None:
        checks = (
            ("num_images", self.num_images >= 10, "at least 10 (every split needs an image)"),
            ("image_size", self.image_size >= 32, "at least 32 pixels"),
            ("captions_per_image", self.captions_per_image >= 1, "at least 1"),
            ("max_objects", 1 <= self.max_objects <= 4, "between 1 and 4"),
            ("vqa_questions_per_image", self.vqa_questions_per_image >= 1, "at least 1"),
            ("gqa_questions_per_image", self.gqa_questions_per_image >= 1, "at least 1"),
            ("nlvr2_pairs_per_image", self.nlvr2_pairs_per_image >= 1, "at least 1"),
            ("nlvr2_sentences_per_pair", self.nlvr2_sentences_per_pair >= 1, "at least 1"),
            ("snli_hypotheses_per_image", self.snli_hypotheses_per_image >= 1, "at least 1"),
            ("region_feature_dim", self.region_feature_dim >= 16, "at least 16"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 95, "between 1 and 95"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"SynthConfig.{name}: expected {expected}, got {getattr(self, name)!r}")


def part_rng(seed: int, part: str, index: int = 0) -> random.Random:
    """The stream of one part of the world (and of one image within it, by ``index``)."""
    # A str seed is hashed with SHA-512 by `random`, independent of PYTHONHASHSEED.
    return random.Random(f"shapes-world:{seed}:{part}:{index}")
