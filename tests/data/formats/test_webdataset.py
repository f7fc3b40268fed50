"""WebDataset shards in img2dataset's layout: write, read back; streamed over ranks and workers."""

import io
import json
import os
import tarfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from vlp.data.formats.reading import FormatError
from vlp.data.formats.webdataset import iter_webdataset, write_shards
from vlp.data.records import CaptionRecord
from vlp.data.stream import StreamPairDataset, assign_shards


def _image_file(path, color, size=(8, 6), fmt="PNG"):
    Image.new("RGB", size, color).save(path, format=fmt)
    return str(path)


@pytest.fixture
def records(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    out = []
    for i in range(5):
        fmt = "JPEG" if i == 0 else "PNG"
        path = _image_file(images / f"img{i}.{fmt.lower()}", (40 * i, 10, 200), size=(8 + i, 6), fmt=fmt)
        out.append(
            CaptionRecord(image_id=f"img{i}", image_path=path, captions=[f"caption {i} a", f"caption {i} b"])
        )
    return out


def _members(shard):
    with tarfile.open(shard) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_write_shards_layout(tmp_path, records):
    out = tmp_path / "shards"
    summary = write_shards(records, out, samples_per_shard=2)
    assert summary.startswith(f"wrote 5 samples in 3 shard(s) to {out}")
    assert sorted(os.listdir(out)) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    members = _members(out / "shard-000001.tar")
    assert [name for name, _ in members] == [
        "000000002.jpg",
        "000000002.txt",
        "000000002.json",
        "000000003.jpg",
        "000000003.txt",
        "000000003.json",
    ]
    data = dict(members)
    assert data["000000002.txt"] == b"caption 2 a"
    meta = json.loads(data["000000002.json"])
    assert meta == {
        "key": "000000002",
        "caption": "caption 2 a",
        "captions": ["caption 2 a", "caption 2 b"],
        "url": records[2].image_path,
        "width": 10,
        "height": 6,
        "status": "success",
    }
    image = Image.open(io.BytesIO(data["000000002.jpg"]))
    assert image.format == "JPEG" and image.size == (10, 6)  # the PNG was re-encoded
    first = dict(_members(out / "shard-000000.tar"))
    with open(records[0].image_path, "rb") as handle:
        assert first["000000000.jpg"] == handle.read()  # a JPEG is stored byte for byte


def test_write_then_read_back_in_full(tmp_path, records):
    out = tmp_path / "shards"
    write_shards(records, out, samples_per_shard=2)
    read = list(iter_webdataset(str(out / "shard-{000000..000002}.tar")))
    assert [r.image_id for r in read] == [f"{i:09d}" for i in range(5)]
    for i, record in enumerate(read):
        assert record.captions == [f"caption {i} a", f"caption {i} b"]
        assert record.image_path == f"{out}/shard-{i // 2:06d}.tar/{i:09d}"
        pixels = np.asarray(Image.open(io.BytesIO(record.image_bytes)))
        assert pixels.shape == (6, 8 + i, 3)
        # JPEG is lossy, but a flat colour survives closely.
        assert np.abs(pixels.astype(int) - [40 * i, 10, 200]).max() <= 8


def test_write_skips_and_counts_bad_records(tmp_path, records):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    bad = [
        CaptionRecord("x", str(tmp_path / "broken.jpg"), ["c"]),
        CaptionRecord("y", records[0].image_path, [" "]),
        CaptionRecord("z", str(tmp_path / "missing.jpg"), ["c"]),
    ]
    summary = write_shards(records[:1] + bad, tmp_path / "out")
    assert "wrote 1 samples in 1 shard(s)" in summary
    assert "skipped 2 unreadable image(s) and 1 record(s) without a caption" in summary


def _read_slot(pattern, rank, world_size, num_workers):
    dataset = StreamPairDataset(pattern, rank=rank, world_size=world_size)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=lambda example: example)
    return [example.image_id for example in loader]


@pytest.mark.parametrize("samples_per_shard", [2, 5])  # 5 samples as 3 shards, or 1 shard for 4 slots
def test_two_ranks_two_workers_see_each_sample_once(tmp_path, records, samples_per_shard):
    out = tmp_path / "shards"
    write_shards(records, out, samples_per_shard=samples_per_shard)
    shards = sorted(str(out / name) for name in os.listdir(out))
    seen = Counter()
    for rank in range(2):
        ids = _read_slot(shards, rank, 2, num_workers=2)
        assert ids, f"rank {rank} got no sample"
        seen.update(ids)
    assert seen == Counter(f"{i:09d}" for i in range(5))


@pytest.mark.parametrize("num_shards", range(1, 8))
@pytest.mark.parametrize("num_slots", range(1, 9))
def test_assign_shards_covers_every_sample_exactly_once(num_shards, num_slots):
    sizes = [3 + (shard * 5) % 4 for shard in range(num_shards)]  # uneven shard sizes
    seen = Counter()
    for slot in range(num_slots):
        for shard, stride, offset in assign_shards(num_shards, num_slots, slot):
            seen.update((shard, position) for position in range(sizes[shard]) if position % stride == offset)
    assert seen == Counter((shard, p) for shard in range(num_shards) for p in range(sizes[shard]))


def test_shuffle_is_a_seeded_permutation(tmp_path, records):
    out = tmp_path / "shards"
    write_shards(records * 4, out, samples_per_shard=3)  # 20 samples, 7 shards
    pattern = str(out / "shard-{000000..000006}.tar")
    plain = [r.image_id for r in iter_webdataset(pattern)]
    assert [e.image_id for e in StreamPairDataset(pattern)] == plain
    first = [e.image_id for e in StreamPairDataset(pattern, shuffle=4, seed=1)]
    again = [e.image_id for e in StreamPairDataset(pattern, shuffle=4, seed=1)]
    dataset = StreamPairDataset(pattern, shuffle=4, seed=1)
    dataset.set_epoch(1)
    next_epoch = [e.image_id for e in dataset]
    assert sorted(first) == sorted(plain) == sorted(next_epoch)
    assert first == again
    assert first != plain and next_epoch != first


def _img2dataset_shard(path, samples):
    """A shard as img2dataset writes it: json without a "captions" list."""
    with tarfile.open(path, "w") as tar:
        for key, caption, image in samples:
            meta = {
                "url": f"http://x/{key}.jpg",
                "caption": caption,
                "key": key,
                "status": "success",
                "error_message": None,
                "width": 4,
                "height": 4,
                "original_width": 64,
                "original_height": 64,
                "exif": "{}",
                "sha256": "0" * 64,
            }
            files = [("txt", (caption or "").encode()), ("json", json.dumps(meta).encode())]
            if image is not None:
                files.insert(0, ("jpg", image))
            for extension, data in files:
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_reads_img2dataset_shards_via_pipe_and_skips_incomplete_samples(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="JPEG")
    shard = tmp_path / "00000.tar"
    _img2dataset_shard(
        shard,
        [
            ("000000000", "a red square", buffer.getvalue()),
            ("000000001", "", buffer.getvalue()),
            ("000000002", "no image", None),
            ("000000003", "another", buffer.getvalue()),
        ],
    )
    dataset = iter_webdataset(f"pipe:cat {shard}")
    read = list(dataset)
    assert [(r.image_id, r.captions) for r in read] == [
        ("000000000", ["a red square"]),
        ("000000003", ["another"]),
    ]
    assert read[0].image_bytes == buffer.getvalue()
    assert dataset.skipped == 2


def test_bad_input(tmp_path):
    junk = tmp_path / "shard-000000.tar"
    junk.write_bytes(b"this is not a tar file" * 40)
    with pytest.raises(FileNotFoundError, match=r"shard-000001.tar \(1 of 3 shards missing\)"):
        iter_webdataset([str(junk), str(tmp_path / "shard-000001.tar"), str(junk)])
    with pytest.raises(FormatError, match="shard-000000.tar: not a readable tar shard"):
        list(iter_webdataset(str(junk)))
    with pytest.raises(ValueError, match="rank 2 is not valid for a world of size 2"):
        list(StreamPairDataset(str(junk), rank=2, world_size=2))
