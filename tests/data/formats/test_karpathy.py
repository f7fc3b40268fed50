"""Karpathy split reader on small files in the exact dataset_coco.json / dataset_flickr30k.json layout."""

import json
import os

import pytest

from vlp.data.formats.karpathy import read_karpathy
from vlp.data.formats.reading import FormatError


def _coco_image(imgid, split, cocoid, folder, raws):
    filename = f"COCO_{folder}_{cocoid:012d}.jpg"
    sentences = [
        {"tokens": raw.lower().strip(" .").split(), "raw": raw, "imgid": imgid, "sentid": imgid * 10 + i}
        for i, raw in enumerate(raws)
    ]
    return {
        "filepath": folder,
        "sentids": [s["sentid"] for s in sentences],
        "filename": filename,
        "imgid": imgid,
        "split": split,
        "sentences": sentences,
        "cocoid": cocoid,
    }


@pytest.fixture
def coco_json(tmp_path):
    images = [
        _coco_image(0, "test", 391895, "val2014", ["A man riding a bike. ", "  A cyclist on a road."]),
        _coco_image(1, "restval", 522418, "val2014", ["A woman cutting cake."]),
        _coco_image(2, "train", 318556, "train2014", ["A bathroom sink.", "   "]),
        _coco_image(3, "val", 116100, "val2014", ["A kitchen."]),
        _coco_image(4, "train", 9, "train2014", [" "]),  # no usable caption
    ]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def test_coco_train_is_train_plus_restval(coco_json):
    records = read_karpathy(coco_json, "/data/coco", "train")
    assert [r.image_id for r in records] == ["522418", "318556"]
    assert [r.split for r in records] == ["restval", "train"]
    assert records[0].image_path == "/data/coco/val2014/COCO_val2014_000000522418.jpg"
    assert records[1].image_path == os.path.join("/data/coco", "train2014", "COCO_train2014_000000318556.jpg")
    assert records[1].captions == ["A bathroom sink."]  # blank caption dropped


def test_coco_other_splits(coco_json):
    test = read_karpathy(coco_json, "root", "test")
    assert len(test) == 1 and test[0].captions == ["A man riding a bike.", "A cyclist on a road."]
    assert [r.image_id for r in read_karpathy(coco_json, "root", "val")] == ["116100"]
    assert len(read_karpathy(coco_json, "root", "all")) == 4  # image 4 has no caption


def test_flickr_layout_has_no_filepath_or_cocoid(tmp_path):
    image = {
        "sentids": [0, 1],
        "imgid": 0,
        "sentences": [
            {"tokens": ["two", "dogs"], "raw": "Two dogs.", "imgid": 0, "sentid": 0},
            {"tokens": ["dogs"], "raw": "Dogs play.", "imgid": 0, "sentid": 1},
        ],
        "split": "train",
        "filename": "1000092795.jpg",
    }
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": [image], "dataset": "flickr30k"}))
    (record,) = read_karpathy(path, "flickr30k_images", "train")
    assert record.image_id == "1000092795"
    assert record.image_path == os.path.join("flickr30k_images", "1000092795.jpg")
    assert record.captions == ["Two dogs.", "Dogs play."]


def test_bad_input_errors(tmp_path, coco_json):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_karpathy(tmp_path / "missing.json", "root", "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        read_karpathy(coco_json, "root", "dev")
    data = json.loads(coco_json.read_text())
    del data["images"][2]["sentences"][0]["raw"]
    coco_json.write_text(json.dumps(data))
    with pytest.raises(
        FormatError, match=r"dataset_coco\.json: images\[2\] .*sentences\[0\] has no field 'raw'"
    ):
        read_karpathy(coco_json, "root", "train")
    bad = tmp_path / "dataset_bad.json"
    bad.write_text(json.dumps({"dataset": "coco", "annotations": []}))
    with pytest.raises(FormatError, match="dataset_bad.json: the top-level object has no field 'images'"):
        read_karpathy(bad, "root", "all")
