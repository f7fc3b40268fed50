"""Streamed (image, caption) examples from WebDataset shards, split over DDP ranks and dataloader workers.

This is the one place a stream is sharded: each sample is read by exactly one (rank, worker) slot per
epoch. With at least as many shards as slots, whole shards go round-robin to the slots; with fewer, the
slots that share a shard take every n-th sample of it. The reader (:mod:`vlp.data.formats.webdataset`)
only parses the shards it is handed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import IterableDataset, get_worker_info

from vlp.data.examples import Example, image_key, stable_image_group
from vlp.data.formats.webdataset import WebDatasetReader
from vlp.data.records import CaptionRecord
from vlp.data.seeding import mix_seed
from vlp.ranks import rank_and_world_size


def assign_shards(num_shards: int, num_slots: int, slot: int) -> list[tuple[int, int, int]]:
    """What slot ``slot`` of ``num_slots`` reads: ``(shard index, stride, offset)`` triples.

    The slot reads the samples ``offset, offset + stride, ...`` (0-based, in tar order) of each shard
    listed. Over all slots every sample of every shard is read exactly once.
    """
    if num_shards < 1 or num_slots < 1 or not 0 <= slot < num_slots:
        raise ValueError(
            f"assign_shards: bad arguments num_shards={num_shards}, num_slots={num_slots}, slot={slot}"
        )
    if num_shards >= num_slots:
        return [(shard, 1, 0) for shard in range(slot, num_shards, num_slots)]
    shard = slot % num_shards
    sharing = len(range(shard, num_slots, num_shards))  # slots that read this shard
    return [(shard, sharing, slot // num_shards)]


class StreamPairDataset(IterableDataset):
    """(image, caption) examples from WebDataset shards: one caption per image per pass.

    A shard sample holds all captions of its image. Yielding them one after the other would fill a batch
    of 32 with 7-8 images (a small ITC batch and negative pool); instead each pass yields one caption per
    image, caption ``(offset(key) + epoch) % n`` of its n, so every caption is used once in n passes.
    ``shuffle`` > 0 permutes the shard order (the same on every slot, per ``seed`` and epoch) and, when
    > 1, passes the samples through a shuffle buffer of that size, so a streamed batch holds about as many
    distinct images as a map-style one.

    ``rank`` / ``world_size`` (or :meth:`set_rank`) default to those of :func:`vlp.ranks.rank_and_world_size`;
    dataloader workers split a rank's share further. Slots may receive a few samples more or less than
    each other.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        shuffle: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if shuffle < 0:
            raise ValueError(f"shuffle must be >= 0 (a buffer size), got {shuffle}")
        self.reader = WebDatasetReader(urls)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = rank, world_size

    @property
    def skipped(self) -> int:
        """Samples without an image or a caption, as counted in this process."""
        return self.reader.skipped

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (when ``shuffle`` is on) and move every image to its next caption."""
        self.epoch = epoch

    def set_rank(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def _slot(self) -> tuple[int, int]:
        rank, world_size = rank_and_world_size(self.rank, self.world_size)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world_size * workers

    def __iter__(self) -> Iterator[Example]:
        slot, num_slots = self._slot()
        shards = list(self.reader.shards)
        if self.shuffle:
            random.Random(mix_seed(self.seed, self.epoch)).shuffle(shards)
        plan = assign_shards(len(shards), num_slots, slot)
        records = (
            record
            for shard, stride, offset in plan
            for record in self.reader.read(shards[shard], stride, offset)
        )
        if self.shuffle > 1:
            rng = random.Random(mix_seed(self.seed, self.epoch, slot))
            records = _buffer_shuffle(records, self.shuffle, rng)
        for record in records:
            yield self._example(record)

    def _example(self, record: CaptionRecord) -> Example:
        key = image_key(record.image_id, record.image_path, record.image_bytes is not None)
        offset = stable_image_group(f"{self.seed}/{key}")
        return Example(
            text=record.captions[(offset + self.epoch) % len(record.captions)],
            image_key=key,
            image_group=stable_image_group(key),
            image_path=record.image_path,
            image_bytes=record.image_bytes,
            image_id=str(record.image_id),
        )


def _buffer_shuffle(
    records: Iterator[CaptionRecord], size: int, rng: random.Random
) -> Iterator[CaptionRecord]:
    buffer: list[CaptionRecord] = []
    for record in records:
        if len(buffer) < size:
            buffer.append(record)
            continue
        index = rng.randrange(len(buffer))
        yield buffer[index]
        buffer[index] = record
    rng.shuffle(buffer)
    yield from buffer
