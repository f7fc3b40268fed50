"""NLVR2 reader on JSON-lines files in the release layout."""

import json
import os

import pytest

from vlp.data.formats.nlvr2 import read_nlvr2
from vlp.data.formats.reading import FormatError


def _line(identifier, label, sentence="There are two dogs.", directory=None):
    item = {
        "validation": {"t1": label},
        "sentence": sentence,
        "left_url": "http://x/l.jpg",
        "writer": "103",
        "label": label,
        "right_url": "http://x/r.jpg",
        "synset": "n02110341",
        "query": "dog",
        "identifier": identifier,
        "extra_validations": {},
    }
    if directory is not None:
        item["directory"] = directory
    if label is None:
        del item["label"], item["validation"]
    return json.dumps(item)


def test_train_and_dev_image_paths_and_labels(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(
        _line("train-10171-0-0", "True", directory=83)
        + "\n\n"
        + _line("train-10171-0-1", "False", directory="83")
        + "\n"
    )
    first, second = read_nlvr2(path, "nlvr2/images")
    assert first.left_image_path == os.path.join("nlvr2/images", "train", "83", "train-10171-0-img0.png")
    assert first.right_image_path == os.path.join("nlvr2/images", "train", "83", "train-10171-0-img1.png")
    assert (first.label, second.label) == (True, False)
    assert first.sentence == "There are two dogs."

    dev = tmp_path / "dev.json"
    dev.write_text(_line("dev-850-0-0", "False") + "\n")
    (record,) = read_nlvr2(dev, "root")
    assert record.identifier == "dev-850-0-0"
    assert record.left_image_path == os.path.join("root", "dev", "dev-850-0-img0.png")
    assert record.label is False


def test_unlabelled_lines_have_label_none(tmp_path):
    path = tmp_path / "test1.json"
    path.write_text(_line("test1-0-1-3", None) + "\n")
    (record,) = read_nlvr2(path, "root")
    assert record.label is None
    assert record.right_image_path == os.path.join("root", "test1", "test1-0-1-img1.png")


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="dev.json"):
        read_nlvr2(tmp_path / "dev.json", "root")
    path = tmp_path / "train.json"
    path.write_text(_line("train-1-0-0", "True", directory=1) + "\n" + _line("train-1-0-1", "True") + "\n")
    with pytest.raises(FormatError, match=r"train.json: line 2 \(train-1-0-1\) has no field 'directory'"):
        read_nlvr2(path, "root")
    path.write_text(_line("dev-1-0", "True") + "\n")
    with pytest.raises(FormatError, match=r"line 1 \(dev-1-0\) identifier 'dev-1-0' is not"):
        read_nlvr2(path, "root")
    path.write_text(_line("dev-1-0-0", "yes") + "\n")
    with pytest.raises(FormatError, match=r"line 1 \(dev-1-0-0\) field 'label' is 'yes'"):
        read_nlvr2(path, "root")
    path.write_text('{"identifier": "dev-1-0-0", "sentence": "x", "label": "True"}\n{not json\n')
    with pytest.raises(FormatError, match="train.json: line 2 is not valid JSON"):
        read_nlvr2(path, "root")
