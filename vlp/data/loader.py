"""The resumable loader: batches of one dataset in an order fixed by ``(seed, epoch)``, dealt across DDP
ranks, each batch collated with the seed of ``(seed, epoch, rank, batch index)``, so a loader restored
from :meth:`PretrainLoader.state_dict` yields exactly the batches an uninterrupted run would have yielded.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from vlp.data.batch import Batch
from vlp.data.collate import Collated, Collator
from vlp.data.examples import Example
from vlp.data.seeding import mix_seed
from vlp.data.skips import SkipStats, TooManyBadExamples
from vlp.ranks import rank_and_world_size

logger = logging.getLogger(__name__)

# Streams have no known length: the bad-example fraction is only judged mid-epoch after this many.
STREAM_MIN_SEEN_FOR_CHECK = 1000


def _identity(item):
    return item


class _EpochBatches(Dataset):
    """Batch ``k`` of one epoch, collated with the seed of (seed, epoch, rank, k)."""

    def __init__(
        self, dataset: Dataset, collator: Collator, batches: list[list[int]], seeds: tuple[int, ...]
    ):
        self.dataset = dataset
        self.collator = collator
        self.batches = batches
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Collated:
        examples = [self.dataset[i] for i in self.batches[k]]
        return self.collator.collate(examples, seed=mix_seed(*self.seeds, k))


class PretrainLoader:
    """Batches of one dataset, resumable mid-epoch and sharded across DDP ranks.

    Iterating plays the current epoch from its start (or from a position given to
    :meth:`load_state_dict`); when the epoch runs out the loader moves to the next one. Every random
    choice derives from ``(seed, epoch, rank, batch index)``; the epoch's order from ``(seed, epoch)``
    only, identical on all ranks, each rank taking every ``world_size``-th example of it.

    Map-style datasets are collated by ``num_workers`` DataLoader processes; skipping to a restored
    position happens at the sampler, so the skipped batches are never loaded. Streams
    (``IterableDataset``) are read in this process and collated by ``num_workers`` threads; resuming
    reads past the consumed examples without decoding them. A stream with ``set_rank`` (WebDataset
    shards) splits itself across ranks by shard, so ranks may see slightly different numbers of
    batches per epoch; any other stream is dealt out by example.
    """

    def __init__(
        self,
        dataset: Dataset | IterableDataset,
        collator: Collator,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 0,
        max_bad_fraction: float = 0.05,
        advance_epoch: bool = True,
        name: str = "train",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.collator = collator
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = rank_and_world_size(rank, world_size)
        self.num_workers = num_workers
        self.max_bad_fraction = max_bad_fraction
        self.advance_epoch = advance_epoch
        self.name = name
        self.is_stream = isinstance(dataset, IterableDataset)
        self.epoch = 0
        self.batches_done = 0
        self._resume_from: int | None = None
        self._stats = SkipStats()
        if not self.is_stream and len(self) == 0:
            raise ValueError(
                f"{name} data: {len(dataset)} examples give no batch of data.batch_size={batch_size} "
                f"per rank over {self.world_size} rank(s); lower data.batch_size"
            )

    # ---- positions

    def _rank_indices(self, epoch: int) -> list[int]:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        else:
            order = torch.arange(n)
        if self.drop_last:
            order = order[: n - n % self.world_size]
        elif n % self.world_size:
            pad = self.world_size - n % self.world_size
            order = torch.cat([order, order.repeat(pad // max(n, 1) + 1)[:pad]])
        return order[self.rank :: self.world_size].tolist()

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        indices = self._rank_indices(epoch)
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __len__(self) -> int:
        """Batches per epoch on this rank (map-style datasets only)."""
        if self.is_stream:
            raise TypeError(f"{self.name} data is a stream: its number of batches is not known")
        per_rank = (
            len(self.dataset) // self.world_size
            if self.drop_last
            else -(-len(self.dataset) // self.world_size)
        )
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (a position restored for this same epoch is kept)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches_done = 0
            self._resume_from = None
            self._stats = SkipStats()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "skipped": self._stats.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["batches_done"]`` of ``state["epoch"]``; the next iteration starts there."""
        try:
            epoch, done = int(state["epoch"]), int(state["batches_done"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"loader state needs integer 'epoch' and 'batches_done', got {state!r}") from err
        if epoch < 0 or done < 0:
            raise ValueError(f"loader state {state!r} is out of range for {self.name} data")
        if not self.is_stream and done > len(self):
            raise ValueError(
                f"{self.name} data changed since the checkpoint: its position (after batch {done} of epoch "
                f"{epoch}) is out of range for an epoch of this data ({len(self)} batches); resume with the "
                "data (and data.batch_size) the run was started with, or start a new run"
            )
        self.epoch, self.batches_done, self._resume_from = epoch, done, done
        self._stats = SkipStats.from_dict(state.get("skipped", {}))

    # ---- iteration

    def __iter__(self) -> Iterator[Batch]:
        start = self._resume_from or 0
        if self._resume_from is None:
            self._stats = SkipStats()
        self._resume_from = None
        self.batches_done = start
        epoch = self.epoch
        seeds = (self.seed, epoch, self.rank)
        if self.is_stream:
            results, total = self._stream_results(epoch, start, seeds), None
        else:
            results, total = self._map_results(epoch, start, seeds), self._epoch_examples(epoch)
        try:
            for k, collated in results:
                self._stats.add(collated.stats)
                self._check(total)
                self.batches_done = k + 1
                if collated.batch is not None:
                    yield collated.batch
        except GeneratorExit:  # a partial pass (e.g. validation reads a few batches): report its skips too
            if self._stats.skipped:
                logger.warning(
                    "%s data, epoch %d, first %d batches: %s",
                    self.name, self.epoch, self.batches_done, self._stats.report(),
                )  # fmt: skip
            raise
        self._finish_epoch()

    def _epoch_examples(self, epoch: int) -> int:
        return sum(len(b) for b in self._epoch_batches(epoch))

    def _map_results(self, epoch: int, start: int, seeds: tuple[int, ...]) -> Iterator[tuple[int, Collated]]:
        source = _EpochBatches(self.dataset, self.collator, self._epoch_batches(epoch), seeds)
        positions = range(start, len(source))
        if self.num_workers == 0:
            return ((k, source[k]) for k in positions)
        # Forked workers and the tokenizer's own thread pool do not mix (it warns, then disables itself).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = DataLoader(
            source, batch_size=None, sampler=positions, num_workers=self.num_workers, collate_fn=_identity
        )
        return zip(positions, loader, strict=True)

    def _stream_batches(self, epoch: int) -> Iterator[list[Example]]:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        # A stream that can split itself across ranks (by shard) does; any other is split by sample.
        self_splitting = hasattr(self.dataset, "set_rank")
        if self_splitting:
            self.dataset.set_rank(self.rank, self.world_size)
        chunk: list[Example] = []
        for i, example in enumerate(self.dataset):
            if not self_splitting and i % self.world_size != self.rank:
                continue
            chunk.append(example)
            if len(chunk) == self.batch_size:
                yield chunk
                chunk = []
        if chunk and not self.drop_last:
            yield chunk

    def _stream_results(
        self, epoch: int, start: int, seeds: tuple[int, ...]
    ) -> Iterator[tuple[int, Collated]]:
        """Stream batches: read in this process, collated by ``num_workers`` threads (in order)."""
        pending = (
            (k, chunk) for k, chunk in enumerate(self._stream_batches(epoch)) if k >= start
        )  # skipped batches are read but never decoded
        if self.num_workers == 0:
            for k, chunk in pending:
                yield k, self.collator.collate(chunk, seed=mix_seed(*seeds, k))
            return
        with ThreadPoolExecutor(max_workers=self.num_workers) as pool:
            queue: deque = deque()
            for k, chunk in pending:
                queue.append((k, pool.submit(self.collator.collate, chunk, mix_seed(*seeds, k))))
                if len(queue) >= 2 * self.num_workers:
                    k0, future = queue.popleft()
                    yield k0, future.result()
            while queue:
                k0, future = queue.popleft()
                yield k0, future.result()

    def _check(self, total: int | None) -> None:
        stats, limit = self._stats, self.max_bad_fraction
        if total is not None:
            too_many = stats.skipped > limit * total
        else:
            too_many = stats.seen >= STREAM_MIN_SEEN_FOR_CHECK and stats.skipped > limit * stats.seen
        if too_many:
            self._fail(total)

    def _fail(self, total: int | None) -> None:
        stats = self._stats
        of = f"{total} examples of the epoch" if total is not None else f"{stats.seen} examples seen"
        examples = "; ".join(stats.samples)
        raise TooManyBadExamples(
            f"{self.name} data, epoch {self.epoch}: {stats.summary()} so far, more than "
            f"data.max_bad_fraction={self.max_bad_fraction} of {of}. First problems: {examples}"
        )

    def _finish_epoch(self) -> None:
        stats = self._stats
        if stats.seen and stats.skipped > self.max_bad_fraction * stats.seen:
            self._fail(None)
        if stats.skipped:
            logger.warning("%s data, epoch %d: %s", self.name, self.epoch, stats.report())
        if self.advance_epoch:
            self.set_epoch(self.epoch + 1)
        else:
            self.batches_done = 0
            self._stats = SkipStats()
