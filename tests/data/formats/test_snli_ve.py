"""SNLI-VE reader on JSON-lines files in the release layout."""

import json
import os

import pytest

from vlp.data.formats.reading import FormatError
from vlp.data.formats.snli_ve import read_snli_ve


def _line(label, pair_id="3416050480.jpg#4r1e", flickr_id="3416050480"):
    return json.dumps(
        {
            "Flickr30K_ID": flickr_id,
            "annotator_labels": [label],
            "captionID": "3416050480.jpg#4",
            "gold_label": label,
            "pairID": pair_id,
            "sentence1": "A person on a horse jumps over a plane.",
            "sentence1_binary_parse": "",
            "sentence1_parse": "",
            "sentence2": "A person is outdoors, on a horse.",
            "sentence2_binary_parse": "",
            "sentence2_parse": "",
        }
    )


def test_read_snli_ve(tmp_path):
    path = tmp_path / "snli_ve_dev.jsonl"
    path.write_text(_line("entailment") + "\n" + _line("contradiction", "3416050480.jpg#4r1c") + "\n")
    first, second = read_snli_ve(path, "flickr30k_images")
    assert first.image_id == "3416050480"
    assert first.image_path == os.path.join("flickr30k_images", "3416050480.jpg")
    assert first.premise == "A person on a horse jumps over a plane."
    assert first.hypothesis == "A person is outdoors, on a horse."
    assert (first.label, second.label, second.pair_id) == (
        "entailment",
        "contradiction",
        "3416050480.jpg#4r1c",
    )


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="snli_ve_test.jsonl"):
        read_snli_ve(tmp_path / "snli_ve_test.jsonl", "images")
    path = tmp_path / "snli_ve_train.jsonl"
    path.write_text(_line("neutral") + "\n" + _line("-", "p2") + "\n")
    with pytest.raises(
        FormatError, match=r"snli_ve_train.jsonl: line 2 \(pairID p2\) field 'gold_label' is '-'"
    ):
        read_snli_ve(path, "images")
    item = json.loads(_line("neutral", "p3"))
    del item["sentence2"]
    path.write_text(json.dumps(item) + "\n")
    with pytest.raises(FormatError, match=r"line 1 \(pairID p3\) has no field 'sentence2'"):
        read_snli_ve(path, "images")
