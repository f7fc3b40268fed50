"""Image-caption WebDataset shards, as img2dataset writes them: parsed into records, and written.

A shard is a tar file whose members come in groups sharing a key: ``KEY.jpg`` (the image; ``.png`` and
``.webp`` are read too), ``KEY.txt`` (the caption) and optionally ``KEY.json`` (img2dataset metadata:
``key``, ``caption``, ``url``, ``width``, ``height``, ``status``, ...; ours adds ``captions``, the full
list). Shards are named by local paths, brace patterns (``shards/shard-{000000..000009}.tar``), URLs
(``http(s)://``, fetched with curl) or ``pipe:<command>``; opening goes through ``webdataset.gopen``.

Reading parses the shards it is given, in order; which process reads which shards (DDP ranks,
dataloader workers) and any shuffling is decided by the caller (:mod:`vlp.data.stream`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from urllib.parse import urlparse

from PIL import Image, UnidentifiedImageError

from vlp.data.formats.reading import FormatError
from vlp.data.records import CaptionRecord

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


# --------------------------------------------------------------------------- shard lists


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


class WebDatasetReader:
    """Parses image-caption shards into :class:`CaptionRecord` s; iterating reads every shard in order.

    Records carry ``image_id`` = the sample key, ``image_path`` = ``<shard>/<key>``, the image file's
    bytes in ``image_bytes``, and ``captions`` from the json ``captions`` list, else the txt. Samples
    without an image or caption are skipped, counted in ``.skipped`` (in this process) and logged.
    """

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.shards = expand_shards(urls)
        self.skipped = 0

    def __iter__(self) -> Iterator[CaptionRecord]:
        for url in self.shards:
            yield from self.read(url)

    def read(self, url: str, stride: int = 1, offset: int = 0) -> Iterator[CaptionRecord]:
        """The records of shard ``url`` at sample positions ``offset, offset + stride, ...`` (0-based,
        in tar order)."""
        skipped = 0
        for position, (key, files) in enumerate(_tar_groups(url)):
            if position % stride != offset:
                continue
            image = _image_bytes(files)
            captions = _captions(files)
            if image is None or not captions:
                skipped += 1
                continue
            yield CaptionRecord(image_id=key, image_path=f"{url}/{key}", captions=captions, image_bytes=image)
        if skipped:
            self.skipped += skipped
            logger.warning("%s: skipped %d sample(s) without an image or a caption", url, skipped)


def iter_webdataset(urls: str | Sequence[str]) -> WebDatasetReader:
    """The records of every sample of the shards ``urls`` names (see :class:`WebDatasetReader`)."""
    return WebDatasetReader(urls)


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
