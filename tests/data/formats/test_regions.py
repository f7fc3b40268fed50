"""LXMERT-style region-feature tsv: layout, round trip, big lines, errors."""

import base64
import struct

import numpy as np
import pytest

from vlp.data.formats.reading import FormatError
from vlp.data.formats.regions import load_region_features, read_region_tsv, write_region_tsv
from vlp.data.records import RegionFeatureRecord


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _hand_line(img_id="COCO_val2014_000000000042", num_boxes=2, boxes=None):
    """A line built from raw little-endian bytes, independent of the writer."""
    boxes = boxes if boxes is not None else [0.0, 1.0, 10.5, 20.0, 5.0, 5.0, 7.0, 9.0]
    fields = [
        img_id,
        "480",
        "640",
        _b64(struct.pack("<2q", 3, 1599)),
        _b64(struct.pack("<2f", 0.5, 0.25)),
        _b64(struct.pack("<2q", 7, 0)),
        _b64(struct.pack("<2f", 0.75, 0.0)),
        str(num_boxes),
        _b64(struct.pack(f"<{len(boxes)}f", *boxes)),
        _b64(struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
    ]
    return "\t".join(fields) + "\n"


def test_reads_the_published_layout(tmp_path):
    path = tmp_path / "val2014_obj36.tsv"
    path.write_text(_hand_line())
    (record,) = read_region_tsv(path)
    assert (record.image_id, record.image_h, record.image_w) == ("COCO_val2014_000000000042", 480, 640)
    assert record.object_ids.dtype == np.int64 and record.object_ids.tolist() == [3, 1599]
    assert record.object_confs.tolist() == [0.5, 0.25]
    assert record.attr_ids.tolist() == [7, 0] and record.attr_confs.tolist() == [0.75, 0.0]
    assert record.boxes.shape == (2, 4) and record.boxes[0].tolist() == [0.0, 1.0, 10.5, 20.0]
    assert record.features.dtype == np.float32 and record.features.tolist() == [[1, 2, 3], [4, 5, 6]]


def _random_record(rng, image_id, num_boxes, dim):
    return RegionFeatureRecord(
        image_id=image_id,
        image_h=int(rng.integers(100, 800)),
        image_w=int(rng.integers(100, 800)),
        boxes=rng.random((num_boxes, 4), dtype=np.float32) * 100,
        features=rng.standard_normal((num_boxes, dim)).astype(np.float32),
        object_ids=rng.integers(0, 1600, num_boxes),
        object_confs=rng.random(num_boxes, dtype=np.float32),
        attr_ids=rng.integers(0, 400, num_boxes),
        attr_confs=rng.random(num_boxes, dtype=np.float32),
    )


def test_round_trip_including_lines_beyond_the_csv_default_limit(tmp_path):
    rng = np.random.default_rng(0)
    # 36 x 2048 float32 is ~390k base64 characters, past csv's default 131072-character field limit.
    records = [_random_record(rng, "1", 36, 2048), _random_record(rng, "n2", 3, 8)]
    path = tmp_path / "regions.tsv"
    assert write_region_tsv(records, path) == 2
    loaded = load_region_features(path)
    assert list(loaded) == ["1", "n2"]
    for original in records:
        back = loaded[original.image_id]
        assert (back.image_h, back.image_w) == (original.image_h, original.image_w)
        for name in ("boxes", "features", "object_ids", "object_confs", "attr_ids", "attr_confs"):
            np.testing.assert_array_equal(getattr(back, name), getattr(original, name))
            assert getattr(back, name).dtype == getattr(original, name).dtype


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.tsv"):
        list(read_region_tsv(tmp_path / "absent.tsv"))
    path = tmp_path / "bad.tsv"
    path.write_text(_hand_line("ok") + _hand_line("img9", boxes=[1.0, 2.0, 3.0]))
    with pytest.raises(
        FormatError, match=r"bad.tsv: line 2 \(img_id img9\) field 'boxes' has 3 values, expected 8"
    ):
        list(read_region_tsv(path))
    path.write_text("img1\t480\t640\n")
    with pytest.raises(FormatError, match="line 1 has 3 tab-separated fields, expected 10: img_id img_h"):
        list(read_region_tsv(path))
    path.write_text(_hand_line("dup") + _hand_line("dup"))
    with pytest.raises(FormatError, match="img_id 'dup' appears more than once"):
        load_region_features(path)
    path.write_text(_hand_line().replace("\t480\t", "\tabc\t"))
    with pytest.raises(FormatError, match="field 'img_h' is 'abc', expected an integer"):
        list(read_region_tsv(path))


def test_writer_rejects_inconsistent_arrays(tmp_path):
    record = _random_record(np.random.default_rng(1), "x", 2, 4)
    record.object_ids = record.object_ids[:1]
    with pytest.raises(ValueError, match="image 'x' has arrays of shapes"):
        write_region_tsv([record], tmp_path / "out.tsv")
