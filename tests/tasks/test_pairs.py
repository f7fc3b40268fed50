"""NLVR2 and SNLI-VE on small inputs: readers by split, items and targets, the two-image batch, metrics
(accuracy, NLVR2 consistency, per-class accuracy), result files, the task model and its checkpoint."""

import json
from pathlib import Path

import pytest
import torch

from vlp.config import DataConfig, TaskConfig, load_config
from vlp.data.examples import ImageRegistry
from vlp.data.records import NLVR2Record, SNLIVERecord
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.tasks import TASKS, Prediction, TaskDataError
from vlp.tasks.base import pair_example
from vlp.tasks.data import TaskCollator
from vlp.tasks.model import TaskModel, load_task_model, save_task_model
from vlp.tasks.nlvr2 import NLVR2Task, sentence_key
from vlp.tasks.snli_ve import LABELS, SNLIVETask

DATA = DataConfig(image_size=32, max_text_len=24)


def nlvr2_dev(shapes):
    root = shapes / "nlvr2"
    return NLVR2Task.read(root, root / "images", "dev")


def snli_dev(shapes):
    root = shapes / "snli_ve"
    return SNLIVETask.read(root, root / "flickr30k_images", "dev")


def nlvr2_record(identifier, label):
    return NLVR2Record(
        identifier, f"statement {identifier}", f"{identifier}-img0.png", f"{identifier}-img1.png", label
    )


def snli_record(pair_id, label):
    return SNLIVERecord(pair_id, "1", "1.jpg", f"hypothesis {pair_id}", label)


def test_tasks_are_registered_and_presets_load():
    assert TASKS["nlvr2"] is NLVR2Task and TASKS["snli_ve"] is SNLIVETask
    for task in ("nlvr2", "snli_ve"):
        for arch in ("vilta", "semvlp"):
            for size in ("tiny", "base"):
                config = load_config(f"{task}-{arch}-{size}")
                two = arch == "semvlp" and size == "tiny"  # two-stream learns sooner (docs/decisions.md)
                assert config.task.name == task and config.task.fusion_mode == ("two" if two else "single")
                assert not config.data.hflip  # NLVR2: never flip one image of a pair on its own


def test_splits_are_found_and_a_missing_split_names_the_others(shapes):
    root = shapes / "nlvr2"
    assert NLVR2Task.splits(root) == ["dev", "train"]
    with pytest.raises(TaskDataError, match=r"'test1' not found .*test1\.json.*splits found: dev, train"):
        NLVR2Task.read(root, root / "images", "test1")
    records = NLVR2Task.read(root, root / "images", "train")  # ROOT/images fits what `vlp data synth` writes
    assert records and all(
        Path(r.left_image_path).is_file() and Path(r.right_image_path).is_file() for r in records
    )
    assert SNLIVETask.splits(shapes / "snli_ve") == ["dev", "test", "train"]
    with pytest.raises(
        TaskDataError, match=r"'val' not found .*snli_ve_val\.jsonl.*splits found: dev, test, train"
    ):
        SNLIVETask.read(shapes / "snli_ve", shapes / "snli_ve" / "images", "val")
    assert all(Path(r.image_path).is_file() for r in snli_dev(shapes))


def test_items_pair_the_statement_with_left_then_right_image_and_targets_follow_labels(shapes):
    records = nlvr2_dev(shapes)
    task = NLVR2Task.build(records, TaskConfig())
    items = task.items(records, ImageRegistry())
    assert [item.uid for item in items] == [r.identifier for r in records]
    for item, record in zip(items, records, strict=True):
        left, right = item.examples
        assert left.text == right.text == record.sentence
        assert (left.image_path, right.image_path) == (record.left_image_path, record.right_image_path)
    expected = [int(r.label) for r in records]
    assert task.targets(items, [True] * len(items)).tolist() == expected  # a flip does not change labels
    records = snli_dev(shapes)
    task = SNLIVETask.build(records, TaskConfig())
    items = task.items(records, ImageRegistry())
    assert [item.examples[0].text for item in items] == [r.hypothesis for r in records]
    assert task.targets(items, [True] * len(items)).tolist() == [LABELS.index(r.label) for r in records]
    assert LABELS == ("entailment", "neutral", "contradiction")


def test_nlvr2_batch_has_two_rows_per_item_and_drops_an_item_with_an_unreadable_image(shapes):
    records = nlvr2_dev(shapes)
    task = NLVR2Task({})
    tokenizer = load_tokenizer(shapes / "tokenizer")
    collator = TaskCollator(task, tokenizer, DATA, train=False)
    items = task.items(records, ImageRegistry())
    batch = collator.collate(items, seed=0).batch
    assert batch.size == len(items) and batch.batch.size == 2 * len(items)
    pixels, index = batch.batch.visual.pixel_values, batch.batch.image_index
    for i, record in enumerate(records):  # row 2i: the left image, row 2i + 1: the right image
        for row, path in ((2 * i, record.left_image_path), (2 * i + 1, record.right_image_path)):
            alone = collator.collator.collate([pair_example(ImageRegistry(), "x", path, "x")], seed=0).batch
            torch.testing.assert_close(pixels[index[row]], alone.visual.pixel_values[0])
    items[1].examples[1].image_path = str(shapes / "missing.png")
    items[1].examples[1].image_key = "path:missing"
    collated = collator.collate(items, seed=0)
    kept = [0] + list(range(2, len(items)))
    assert collated.batch.uids == [items[i].uid for i in kept] and collated.rows == kept
    assert collated.batch.batch.size == 2 * len(kept) and collated.stats.unreadable_image == 1
    assert collated.batch.targets.tolist() == [items[i].target for i in kept]


def test_nlvr2_accuracy_consistency_result_file_and_baseline():
    records = [
        nlvr2_record("dev-1-0-0", True),
        nlvr2_record("dev-1-1-0", False),  # same sentence as dev-1-0-0, another image pair
        nlvr2_record("dev-1-0-1", True),
        nlvr2_record("dev-2-0-0", False),  # no prediction (an unreadable image): wrong
    ]
    assert sentence_key("dev-1-1-0") == sentence_key("dev-1-0-0") == "dev-1--0"  # the official grouping
    predictions = {uid: Prediction(uid, "True", 0.8) for uid in ("dev-1-0-0", "dev-1-1-0", "dev-1-0-1")}
    task = NLVR2Task({})
    scores = task.score(predictions, records)
    # sentences: dev-1--0 (one of two wrong), dev-1--1 (right), dev-2--0 (unanswered)
    assert scores == {"accuracy": 50.0, "consistency": 33.33, "examples": 4, "unanswered": 1}
    assert task.result_file(predictions, records) == [
        {"identifier": "dev-1-0-0", "prediction": "True"},
        {"identifier": "dev-1-1-0", "prediction": "True"},
        {"identifier": "dev-1-0-1", "prediction": "True"},
        {"identifier": "dev-2-0-0", "prediction": ""},
    ]
    images, lines, right = task.describe(records[1], predictions["dev-1-1-0"])
    assert images == ["dev-1-1-0-img0.png", "dev-1-1-0-img1.png"] and right is False
    assert lines == ["S: statement dev-1-1-0", "pred: True (0.80)", "truth: False"]
    train = [nlvr2_record("train-0-0-0", False)] * 2 + [nlvr2_record("train-0-0-1", True)]
    assert task.baselines(train, records) == {"majority": 50.0}  # "False" everywhere
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    predicted = task.predict(logits, ["a", "b"])
    assert [p.answer for p in predicted] == ["False", "True"]
    assert predicted[1].score == pytest.approx(torch.softmax(logits[1], 0)[1].item())


def test_snli_ve_accuracy_per_class_result_file_and_baseline():
    records = [
        snli_record("e1", "entailment"),
        snli_record("e2", "entailment"),
        snli_record("n1", "neutral"),
        snli_record("c1", "contradiction"),  # no prediction: wrong
    ]
    predictions = {
        "e1": Prediction("e1", "entailment", 0.9),
        "e2": Prediction("e2", "neutral", 0.5),
        "n1": Prediction("n1", "neutral", 0.7),
    }
    task = SNLIVETask({})
    scores = task.score(predictions, records)
    assert scores == {
        "accuracy": 50.0,
        "perClass": {"entailment": 50.0, "neutral": 100.0, "contradiction": 0.0},
        "examples": 4,
        "unanswered": 1,
    }
    assert task.result_file(predictions, records) == [
        {"pairID": "e1", "prediction": "entailment"},
        {"pairID": "e2", "prediction": "neutral"},
        {"pairID": "n1", "prediction": "neutral"},
        {"pairID": "c1", "prediction": ""},
    ]
    assert task.describe(records[0], predictions["e1"]) == (
        ["1.jpg"],
        ["H: hypothesis e1", "pred: entailment (0.90)", "truth: entailment"],
        True,
    )
    assert task.baselines(records[:3] + records[2:3], records) == {"majority": 50.0}  # ties: first seen wins
    assert task.baselines(records[2:3], records) == {"majority": 25.0}  # "neutral" everywhere


def test_unlabelled_split_scores_nothing_and_writes_one_entry_per_example(shapes, tmp_path):
    lines = (shapes / "nlvr2" / "dev.json").read_text().splitlines()
    unlabelled = [{k: v for k, v in json.loads(line).items() if k != "label"} for line in lines]
    (tmp_path / "test1.json").write_text("".join(json.dumps(line) + "\n" for line in unlabelled))
    assert NLVR2Task.splits(tmp_path) == ["test1"]
    records = NLVR2Task.read(tmp_path, shapes / "nlvr2" / "images", "test1")
    assert len(records) == len(lines) and all(r.label is None for r in records)
    task = NLVR2Task({})
    items = task.items(records, ImageRegistry())
    assert len(items) == len(records) and all(item.target is None for item in items)
    assert task.targets(items, [False] * len(items)) is None
    assert task.items(records, ImageRegistry(), train=True) == []
    predictions = {r.identifier: Prediction(r.identifier, "True", 0.6) for r in records}
    assert task.score(predictions, records) == {}
    entries = task.result_file(predictions, records)
    assert entries == [{"identifier": r.identifier, "prediction": "True"} for r in records]
    assert task.describe(records[0], predictions[records[0].identifier])[2] is None
    snli = [snli_record("x", ""), snli_record("y", "")]
    assert SNLIVETask({}).score({}, snli) == {} and len(SNLIVETask({}).result_file({}, snli)) == 2


@pytest.mark.parametrize("arch", ["vilta", "semvlp"])
def test_task_models_read_both_images_save_load_and_predict_the_same(shapes, tmp_path, arch):
    tokenizer = load_tokenizer(shapes / "tokenizer")
    config = load_config(f"nlvr2-{arch}-tiny", ["data.image_size=32", "model.vision.image_size=32"])
    backbone = build_model(config.model, vocab_size=len(tokenizer))
    for task, records, classes in (
        (NLVR2Task({}), nlvr2_dev(shapes), 2),
        (SNLIVETask({}), snli_dev(shapes), 3),
    ):
        model = TaskModel(backbone, task).eval()
        batch = TaskCollator(task, tokenizer, DATA, train=False).collate(
            task.items(records, ImageRegistry()), 0
        )
        batch = batch.batch
        logits = model(batch)
        assert logits.shape == (len(records), classes)
        loss, _ = task.loss(logits, batch.targets)
        assert loss.ndim == 0 and torch.isfinite(loss)
        save_task_model(model, tmp_path / task.name, tokenizer, DATA)
        loaded, entry = load_task_model(tmp_path / task.name)
        assert entry["name"] == task.name and loaded.task.name == task.name
        torch.testing.assert_close(loaded(batch), logits)
        assert [p.answer for p in loaded.predict(batch)] == [p.answer for p in model.predict(batch)]
    # NLVR2: the head reads both pairs; changing only item 0's right image changes the items showing it
    task = NLVR2Task({})
    model = TaskModel(backbone, task).eval()
    batch = TaskCollator(task, tokenizer, DATA, train=False).collate(
        task.items(nlvr2_dev(shapes), ImageRegistry()), 0
    )
    batch = batch.batch
    with torch.no_grad():
        before = model(batch)
        right = int(batch.batch.image_index[1])
        shows = [right in batch.batch.image_index[2 * i : 2 * i + 2].tolist() for i in range(batch.size)]
        assert right not in batch.batch.image_index[0::2].tolist()  # a right image only
        pixels = batch.batch.visual.pixel_values.clone()
        pixels[right] = torch.rand_like(pixels[right])
        batch.batch.visual.pixel_values = pixels
        after = model(batch)
    changed = [not torch.allclose(b, a) for b, a in zip(before, after, strict=True)]
    assert changed == shows and changed[0]
