"""Image-caption WebDataset shards, as img2dataset writes them: read (streaming, sharded) and write.

A shard is a tar file whose members come in groups sharing a key: ``KEY.jpg`` (the image; ``.png`` and
``.webp`` are read too), ``KEY.txt`` (the caption) and optionally ``KEY.json`` (img2dataset metadata:
``key``, ``caption``, ``url``, ``width``, ``height``, ``status``, ...; ours adds ``captions``, the full
list). Shards are named by local paths, brace patterns (``shards/shard-{000000..000009}.tar``), URLs
(``http(s)://``, fetched with curl) or ``pipe:<command>``; opening goes through ``webdataset.gopen``.

Reading splits the work so that each sample is seen by exactly one (DDP rank, dataloader worker) per
epoch: with at least as many shards as (rank, worker) slots, whole shards go round-robin to the slots;
with fewer, the slots that share a shard take every n-th sample of it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import tarfile
from collections.abc import Iterator, Sequence
from urllib.parse import urlparse

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import IterableDataset, get_worker_info

from vlp.data.formats.errors import FormatError
from vlp.data.records import CaptionRecord

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


# --------------------------------------------------------------------------- shard lists and assignment


def expand_shards(urls: str | Sequence[str]) -> list[str]:
    """The shard list named by ``urls``: braces expanded, ``::`` separating several patterns in a string.

    Local shards (no URL scheme, or ``file:``) must exist: a missing one is a ``FileNotFoundError``.
    """
    from braceexpand import braceexpand

    patterns = urls.split("::") if isinstance(urls, str) else list(urls)
    shards = [shard for pattern in patterns for shard in braceexpand(pattern.strip())]
    if not shards:
        raise ValueError(f"no shards in {urls!r}")
    missing = [path for path in map(_local_path, shards) if path is not None and not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"no such WebDataset shard: {missing[0]} ({len(missing)} of {len(shards)} shards missing)"
        )
    return shards


def _local_path(url: str) -> str | None:
    if url.startswith("pipe:"):
        return None
    parsed = urlparse(url)
    if parsed.scheme == "":
        return url
    if parsed.scheme == "file":
        return parsed.path
    return None


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


def _distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# --------------------------------------------------------------------------- reading


def _tar_groups(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` for each run of consecutive tar members sharing a key."""
    from webdataset.gopen import gopen

    try:
        stream = gopen(url, "rb")
    except (OSError, ValueError) as err:
        raise FormatError(f"{url}: cannot open the shard ({err})") from None
    try:
        yield from _members(url, stream)
        stream.close()  # a pipe: or http shard reports its command's exit status here
    except tarfile.TarError as err:
        # A pipe: or http shard whose command failed reads as an empty or torn tar: its exit status,
        # which closing the stream reports, is the better message.
        failure = _close_failure(stream)
        if failure is not None:
            raise FormatError(f"{url}: reading the shard failed ({failure})") from None
        raise FormatError(f"{url}: not a readable tar shard ({err})") from None
    except OSError as err:
        raise FormatError(f"{url}: reading the shard failed ({_describe_failure(err)})") from None
    finally:
        _close_failure(stream)


def _members(url: str, stream) -> Iterator[tuple[str, dict[str, bytes]]]:
    tar = tarfile.open(fileobj=stream, mode="r|*")
    key, files = None, {}
    for member in tar:
        if not member.isfile():
            continue
        folder, name = os.path.split(member.name)
        if "." not in name or name.startswith("."):
            continue
        stem, extension = name.split(".", 1)
        member_key = os.path.join(folder, stem)
        if member_key != key:
            if key is not None:
                yield key, files
            key, files = member_key, {}
        handle = tar.extractfile(member)
        files[extension.lower()] = handle.read() if handle is not None else b""
    if key is not None:
        yield key, files


def _describe_failure(err: OSError) -> str:
    """webdataset's pipes raise ``IOError((args, kwargs), "exit N", ...)``: say which command and status."""
    text = " ".join(str(a) for a in err.args if isinstance(a, str))
    status = re.search(r"exit (-?\d+)", text) or re.search(r"exit (-?\d+)", str(err))
    if status:
        return f"the command exited with status {status.group(1)}"
    return str(err) or type(err).__name__


def _close_failure(stream) -> str | None:
    """Close ``stream``; what went wrong if closing it reports a failure (a pipe's exit status)."""
    try:
        stream.close()
    except OSError as err:
        return _describe_failure(err)
    return None


def _captions(files: dict[str, bytes]) -> list[str]:
    """The ``captions`` list of the json when present, else the txt, else the json ``caption``."""
    meta = {}
    if "json" in files:
        try:
            meta = json.loads(files["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            meta = {}
    listed = meta.get("captions") if isinstance(meta, dict) else None
    if isinstance(listed, list):
        captions = [c.strip() for c in listed if isinstance(c, str) and c.strip()]
        if captions:
            return captions
    if "txt" in files:
        text = files["txt"].decode("utf-8", errors="replace").strip()
        if text:
            return [text]
    single = meta.get("caption") if isinstance(meta, dict) else None
    return [single.strip()] if isinstance(single, str) and single.strip() else []


def _image_bytes(files: dict[str, bytes]) -> bytes | None:
    for extension in IMAGE_EXTENSIONS:
        if extension in files:
            return files[extension]
    return None


class WebDatasetCaptions(IterableDataset):
    """Streams :class:`CaptionRecord` from tar shards; see :func:`iter_webdataset`."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        shuffle: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.shards = expand_shards(urls)
        if shuffle < 0:
            raise ValueError(f"shuffle must be >= 0 (a buffer size), got {shuffle}")
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skipped = 0  # samples without an image or a caption (counted in this process)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently for each epoch (when ``shuffle`` is on)."""
        self.epoch = epoch

    def _slot(self) -> tuple[int, int]:
        rank, world = _distributed_rank()
        rank = rank if self.rank is None else self.rank
        world = world if self.world_size is None else self.world_size
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside a world of size {world}")
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def __iter__(self) -> Iterator[CaptionRecord]:
        slot, num_slots = self._slot()
        order = list(range(len(self.shards)))
        if self.shuffle:
            # The same permutation on every slot, so the assignment still covers each shard once.
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        plan = [
            (order[index], stride, offset)
            for index, stride, offset in assign_shards(len(order), num_slots, slot)
        ]
        records = self._read(plan)
        if self.shuffle > 1:
            records = self._buffer_shuffle(records, random.Random(f"{self.seed}/{self.epoch}/{slot}"))
        yield from records

    def _read(self, plan: list[tuple[int, int, int]]) -> Iterator[CaptionRecord]:
        for shard_index, stride, offset in plan:
            url = self.shards[shard_index]
            skipped = 0
            for position, (key, files) in enumerate(_tar_groups(url)):
                if position % stride != offset:
                    continue
                image = _image_bytes(files)
                captions = _captions(files)
                if image is None or not captions:
                    skipped += 1
                    continue
                yield CaptionRecord(
                    image_id=key, image_path=f"{url}/{key}", captions=captions, image_bytes=image
                )
            if skipped:
                self.skipped += skipped
                logger.warning("%s: skipped %d sample(s) without an image or a caption", url, skipped)

    def _buffer_shuffle(
        self, records: Iterator[CaptionRecord], rng: random.Random
    ) -> Iterator[CaptionRecord]:
        buffer: list[CaptionRecord] = []
        for record in records:
            if len(buffer) < self.shuffle:
                buffer.append(record)
                continue
            index = rng.randrange(len(buffer))
            yield buffer[index]
            buffer[index] = record
        rng.shuffle(buffer)
        yield from buffer


def iter_webdataset(
    urls: str | list[str],
    *,
    shuffle: int = 0,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
) -> WebDatasetCaptions:
    """An ``IterableDataset`` of :class:`CaptionRecord` read from image-caption shards.

    Records carry ``image_id`` = the sample key, ``image_path`` = ``<shard>/<key>``, the image file's
    bytes in ``image_bytes``, and ``captions`` from the json ``captions`` list, else the txt. Samples
    without an image or caption are skipped, counted in ``.skipped`` and logged. ``shuffle`` > 0
    shuffles the shard order (same on all ranks, per ``seed`` and :meth:`~WebDatasetCaptions.set_epoch`)
    and, when > 1, samples through a buffer of that size. ``rank`` / ``world_size`` default to
    ``torch.distributed`` when initialised (else a single process); dataloader workers split further.
    Ranks may receive a few samples more or less than each other.
    """
    return WebDatasetCaptions(urls, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)


# --------------------------------------------------------------------------- writing


def _jpeg(data: bytes) -> tuple[bytes, int, int]:
    """The image as JPEG bytes (unchanged when already JPEG) and its width and height."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height = image.size
        if image.format == "JPEG":
            return data, width, height
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=95)
        return out.getvalue(), width, height


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # reproducible shards
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    records: list[CaptionRecord], out_dir: str | os.PathLike, samples_per_shard: int = 1000
) -> str:
    """Write ``records`` as ``out_dir/shard-000000.tar``, ... in img2dataset's layout; returns a summary line.

    One sample per record, keyed ``000000000``, ``000000001``, ...: ``KEY.jpg`` (the image file's bytes,
    re-encoded to JPEG when it is another format), ``KEY.txt`` (the first caption) and ``KEY.json``
    (``key``, ``caption``, ``captions`` (all), ``url`` (the source path), ``width``, ``height``,
    ``status``). Records whose image cannot be read or that have no caption are skipped and counted.
    """
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    written, shards = 0, 0
    unreadable, uncaptioned = 0, 0
    tar: tarfile.TarFile | None = None
    tmp_path = final_path = ""

    def close_shard() -> None:
        nonlocal tar
        if tar is not None:
            tar.close()
            os.replace(tmp_path, final_path)
            tar = None

    try:
        for record in records:
            captions = [caption.strip() for caption in record.captions if caption.strip()]
            if not captions:
                uncaptioned += 1
                continue
            try:
                data = record.image_bytes
                if data is None:
                    with open(record.image_path, "rb") as handle:
                        data = handle.read()
                data, width, height = _jpeg(data)
            except (OSError, UnidentifiedImageError, ValueError) as err:
                unreadable += 1
                logger.warning("skipping %s: unreadable image (%s)", record.image_path, err)
                continue
            if written % samples_per_shard == 0:
                close_shard()
                final_path = os.path.join(out_dir, f"shard-{shards:06d}.tar")
                tmp_path = final_path + ".tmp"
                tar = tarfile.open(tmp_path, "w", format=tarfile.USTAR_FORMAT)
                shards += 1
            key = f"{written:09d}"
            meta = {
                "key": key,
                "caption": captions[0],
                "captions": captions,
                "url": record.image_path,
                "width": width,
                "height": height,
                "status": "success",
            }
            _add(tar, f"{key}.jpg", data)
            _add(tar, f"{key}.txt", captions[0].encode("utf-8"))
            _add(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
            written += 1
        close_shard()
    finally:
        if tar is not None:
            tar.close()
            os.remove(tmp_path)

    summary = f"wrote {written} samples in {shards} shard(s) to {out_dir}"
    if shards:
        last = f"{shards - 1:06d}"
        summary += f" (read them as {os.path.join(out_dir, f'shard-{{000000..{last}}}.tar')})"
    if unreadable or uncaptioned:
        summary += f"; skipped {unreadable} unreadable image(s) and {uncaptioned} record(s) without a caption"
    return summary
