"""The task framework on small inputs: readers by split, targets, metrics, result files, the task model
and its checkpoint (VQA and GQA)."""

import json

import pytest
import torch

import vlp
from vlp.config import DataConfig, TaskConfig, load_config
from vlp.data.examples import ImageRegistry
from vlp.data.records import GQARecord, VQARecord
from vlp.data.tokenizer import load_tokenizer
from vlp.metrics import vqa_accuracy
from vlp.models import build_model
from vlp.models.checkpoint import save_pretrained
from vlp.tasks import TASKS, Prediction, TaskDataError
from vlp.tasks.data import TaskCollator
from vlp.tasks.gqa import GQATask
from vlp.tasks.model import TaskModel, load_task_model, read_task_entry, save_task_model
from vlp.tasks.vqa import VQATask


def vqa_record(qid, answers, answer_type="other", image="x.jpg"):
    return VQARecord(
        question_id=qid, image_id=qid, image_path=image, question=f"q{qid}?", answers=answers,
        multiple_choice_answer=answers[0] if answers else "", answer_type=answer_type,
    )  # fmt: skip


def test_vqa_finds_splits_as_released_and_names_a_missing_one(shapes):
    root = shapes / "vqa"
    assert VQATask.splits(root) == ["train2014", "val2014"]
    records = VQATask.read(root, shapes / "images", "val2014")
    assert records and all(r.answers for r in records)
    with pytest.raises(TaskDataError, match=r"'test-dev2015' not found .*splits found: train2014, val2014"):
        VQATask.read(root, shapes / "images", "test-dev2015")
    assert GQATask.splits(shapes / "gqa") == ["train", "val"]


def test_vqa_test_split_without_annotations_reads_every_question(shapes, tmp_path):
    source = json.loads((shapes / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    source["data_subtype"] = "test2015"
    (tmp_path / "v2_OpenEnded_mscoco_test2015_questions.json").write_text(json.dumps(source))
    records = VQATask.read(tmp_path, shapes / "images", "test2015")
    assert len(records) == len(source["questions"]) and not any(r.answers for r in records)
    task = VQATask({"answers": ["yes", "no"]})
    items = task.items(records, ImageRegistry())
    assert len(items) == len(records) and task.targets(items, [False] * len(items)) is None
    entries = task.result_file({}, records)
    assert [e["question_id"] for e in entries] == [r.question_id for r in records]
    assert task.score({}, records) == {}


def test_vqa_vocabulary_targets_and_training_items():
    records = [
        vqa_record(1, ["red"] * 10),
        vqa_record(2, ["red"] * 7 + ["blue"] * 3),
        vqa_record(3, ["blue"] * 10),
        vqa_record(4, ["teal"] * 10),  # chosen once only: outside a min-count-2 vocabulary
        vqa_record(5, ["blue"] * 10),
    ]
    task = VQATask.build(records, TaskConfig(min_answer_count=2))
    assert task.answers == ["blue", "red"]  # 2 questions each: ties in string order
    items = task.items(records, ImageRegistry(), train=True)
    assert [item.uid for item in items] == [1, 2, 3, 5]  # nothing to learn from question 4
    targets = task.targets(items, [False] * 4)
    red, blue = task.index["red"], task.index["blue"]
    assert targets[1, red] == 1.0 and targets[1, blue] == pytest.approx(0.9)
    assert len(task.items(records, ImageRegistry())) == 5  # evaluation keeps every question


def test_vqa_score_is_the_official_accuracy_and_counts_missing_and_unknown_as_zero():
    records = [
        vqa_record(1, ["2"] * 10, "number"),
        vqa_record(2, ["yes"] * 10, "yes/no"),
        vqa_record(3, ["red"] * 2 + ["blue"] * 8),
        vqa_record(4, ["teal"] * 10),
    ]
    task = VQATask({"answers": ["yes", "no", "2", "red", "blue"]})
    predictions = {1: Prediction(1, "2", 0.9), 2: Prediction(2, "no", 0.8), 3: Prediction(3, "red", 0.5)}
    scores = task.score(predictions, records)  # question 4: no prediction (e.g. unreadable image)
    expected = [1.0, 0.0, vqa_accuracy("red", records[2].answers), 0.0]
    assert scores["overall"] == round(100 * sum(expected) / 4, 2)
    other = round(100 * expected[2] / 2, 2)
    assert scores["perAnswerType"] == {"number": 100.0, "other": other, "yes/no": 0.0}
    assert scores["questions"] == 4 and scores["unanswered"] == 1
    # the result file, scored with the project's metric, gives the same overall accuracy
    entries = {e["question_id"]: e["answer"] for e in task.result_file(predictions, records)}
    rescored = [vqa_accuracy(entries[r.question_id] or "-", r.answers) for r in records]
    assert round(100 * sum(rescored) / 4, 2) == scores["overall"]
    assert task.baselines(records[:2] + records[1:2], records) == {"majority": 25.0}  # "yes" everywhere


def test_gqa_accuracy_per_structural_type_and_result_file():
    records = [
        GQARecord("a", "1", "1.jpg", "is it red?", "yes", structural_type="verify"),
        GQARecord("b", "1", "1.jpg", "what colour?", "red", structural_type="query"),
        GQARecord("c", "2", "2.jpg", "what shape?", "star", structural_type="query"),
    ]
    task = GQATask.build(records, TaskConfig(min_answer_count=1))
    predictions = {"a": Prediction("a", "yes", 0.9), "b": Prediction("b", "blue", 0.6)}
    scores = task.score(predictions, records)
    assert scores["accuracy"] == round(100 / 3, 2)
    assert scores["perStructuralType"] == {"query": 0.0, "verify": 100.0}
    assert task.result_file(predictions, records) == [
        {"questionId": "a", "prediction": "yes"},
        {"questionId": "b", "prediction": "blue"},
        {"questionId": "c", "prediction": ""},
    ]


def test_collator_keeps_items_in_order_skips_unreadable_images_and_flips_answers(shapes):
    records = VQATask.read(shapes / "vqa", shapes / "images", "train2014")[:6]
    task = VQATask.build(records, TaskConfig(min_answer_count=1))
    items = task.items(records, ImageRegistry())
    items[2].examples[0].image_path = str(shapes / "missing.jpg")
    items[2].examples[0].image_key = "path:missing"
    tokenizer = load_tokenizer(shapes / "tokenizer")
    collated = TaskCollator(task, tokenizer, DataConfig(image_size=32), train=False).collate(items, seed=0)
    batch = collated.batch
    assert batch.uids == [items[i].uid for i in (0, 1, 3, 4, 5)]
    assert collated.stats.unreadable_image == 1 and "missing.jpg" in collated.stats.samples[0]
    assert batch.targets.shape == (5, len(task.answers)) and batch.batch.visual.pixel_values.shape[-1] == 32
    # a mirrored image swaps the answer classes "left" <-> "right"
    task = VQATask({"answers": ["left", "right", "red"]})
    item = task.items([vqa_record(9, ["left"] * 10)], ImageRegistry())[0]
    assert task.targets([item], [True]).tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize("arch", ["vilta", "semvlp"])
def test_task_model_saves_loads_and_predicts_the_same(shapes, tmp_path, arch):
    tokenizer = load_tokenizer(shapes / "tokenizer")
    config = load_config(f"vqa-{arch}-tiny", ["data.image_size=32", "model.vision.image_size=32"])
    backbone = build_model(config.model, vocab_size=len(tokenizer))
    records = VQATask.read(shapes / "vqa", shapes / "images", "val2014")[:5]
    task = TASKS["vqa"].build(records, TaskConfig(min_answer_count=1))
    model = TaskModel(backbone, task, fusion_mode="two").eval()
    data = DataConfig(image_size=32, max_text_len=20)
    batch = TaskCollator(task, tokenizer, data, train=False).collate(task.items(records, ImageRegistry()), 0)
    logits = model(batch.batch)
    assert logits.shape == (5, len(task.answers))
    save_task_model(model, tmp_path / "ft", tokenizer, data)
    loaded, entry = load_task_model(tmp_path / "ft")
    assert entry["name"] == "vqa" and entry["max_text_len"] == 20
    assert entry["state"]["answers"] == task.answers
    assert loaded.fusion_mode == "two"
    torch.testing.assert_close(loaded(batch.batch), logits)
    assert vlp.load(tmp_path / "ft").arch == arch  # the backbone alone still loads


def test_pretrained_checkpoint_without_task_and_a_head_that_does_not_fit_are_clear_errors(shapes, tmp_path):
    tokenizer = load_tokenizer(shapes / "tokenizer")
    config = load_config("vilta-tiny", ["data.image_size=32", "model.vision.image_size=32"])
    backbone = build_model(config.model, vocab_size=len(tokenizer))
    save_pretrained(backbone, tmp_path / "pre", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="pre-trained checkpoint with no task"):
        read_task_entry(tmp_path / "pre")
    task = VQATask({"answers": ["a", "b", "c"]})
    save_task_model(TaskModel(backbone, task), tmp_path / "ft", tokenizer, DataConfig())
    config_path = tmp_path / "ft" / "config.json"
    tree = json.loads(config_path.read_text())
    tree["task"]["state"]["answers"] = ["a", "b"]
    config_path.write_text(json.dumps(tree))
    with pytest.raises(ValueError, match="task_head.safetensors does not fit the vqa head"):
        load_task_model(tmp_path / "ft")
