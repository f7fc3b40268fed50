"""`vlp finetune` / `vlp evaluate` / `vlp predict` and the inference API end to end on a small shapes world.

A tiny pre-trained ViLTA (and SemVLP) checkpoint is fine-tuned for a few steps; the tests check the run
directory (best by the val metric, final, checkpoints, logs), exact stop-and-resume, that evaluation,
prediction and the API agree question by question, retrieval zero-shot and fine-tuned, evaluation under
2 torchrun processes, and the command line's error messages.

Also run as a script by torchrun (see ``test_two_process_evaluation_equals_one_process``): ``__main__``
below evaluates the VQA checkpoint and zero-shot retrieval under 2 processes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import sys
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from two_processes import run_two_processes

from vlp.cli import main as vlp_main
from vlp.config import TaskConfig
from vlp.data.synthetic import SynthConfig
from vlp.inference import load_predictor
from vlp.metrics import vqa_accuracy
from vlp.runs.evaluate import EvaluateRequest, run_evaluation
from vlp.runs.finetune import FinetuneRequest, finetune
from vlp.tasks.model import TASK_HEAD_FILE, TaskStep
from vlp.tasks.snli_ve import SNLIVETask
from vlp.tasks.vqa import VQATask
from vlp.train.metrics_log import read_metrics
from vlp.train.state import find_latest, list_checkpoints, load_tensors, read_trainer_state

VQA_STEPS, VQA_VAL_EVERY = 6, 2
VQA_LR = "2e-3"  # on this world: the best val accuracy comes before the last evaluation
QUESTIONS = "v2_OpenEnded_mscoco_{split}_questions.json"
ANNOTATIONS = "v2_mscoco_{split}_annotations.json"

# --------------------------------------------------------------------------- helpers


def run_cli(args) -> tuple[int, str, str]:
    """``vlp ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = vlp_main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def pretrain_args(root: Path, preset: str, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "pretrain", "--config", preset, "--out", out,
        f"data.train={root / 'dataset_shapes.json'}", f"data.images_root={root / 'images'}",
        f"data.tokenizer={root / 'tokenizer'}", "data.batch_size=8", "data.max_val_images=8",
        "data.image_size=32", "model.vision.image_size=32", f"train.max_steps={steps}", "train.val_every=0",
        "train.ckpt_every=0", "train.progress=false", "train.log_every=1", "train.warmup_steps=1", *extra,
    ]  # fmt: skip


def tiny_finetune(steps: int, val_every: int, ckpt_every: int = 0, **extra) -> list[str]:
    options = {
        "max_steps": steps, "val_every": val_every, "ckpt_every": ckpt_every, "keep_checkpoints": 0,
        "progress": "false", "log_every": 1, "warmup_steps": 1,
    }  # fmt: skip
    return (
        ["data.batch_size=8"]
        + [f"train.{k}={v}" for k, v in options.items()]
        + [f"{k}={v}" for k, v in extra.items()]
    )


def vqa_overrides() -> list[str]:
    return tiny_finetune(VQA_STEPS, VQA_VAL_EVERY, ckpt_every=VQA_VAL_EVERY, **{"train.lr": VQA_LR})


def printed_values(stdout: str) -> dict[str, str]:
    """``  key   1.2345`` lines of a command's output -> {key: "1.2345"}."""
    return dict(re.findall(r"^\s+(\S+)\s+(-?\d+\.\d+)\s*$", stdout, flags=re.MULTILINE))


def losses_by_step(out: Path, split: str = "train") -> dict[int, dict]:
    return {e["step"]: {"losses": e["losses"], "metrics": e["metrics"]} for e in read_metrics(out, split)}


def eval_metrics(out: Path) -> dict[int, dict]:
    """The logged task metrics per evaluation step, without the timing."""
    return {
        e["step"]: {k: v for k, v in e["metrics"].items() if k not in ("items_per_s", "seconds")}
        for e in read_metrics(out, "eval")
    }


def checkpoint_weights(directory: Path) -> dict[str, torch.Tensor]:
    """A fine-tuned checkpoint's weights under the task model's names (``backbone.*``, ``head.*``)."""
    weights = {f"backbone.{k}": v for k, v in load_tensors(directory / "model.safetensors").items()}
    if (directory / TASK_HEAD_FILE).is_file():
        weights.update({f"head.{k}": v for k, v in load_tensors(directory / TASK_HEAD_FILE).items()})
    return weights


def assert_same_tensors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(got[name], value), name


def assert_exported_from(directory: Path, checkpoint: Path) -> None:
    """``directory`` (RUN/best or RUN/final) holds exactly the weights of the trainer checkpoint."""
    trained = load_tensors(checkpoint / "model.safetensors")
    exported = checkpoint_weights(directory)
    assert any(k.startswith("head.") for k in exported)
    for name, value in exported.items():  # save_pretrained leaves out tied aliases
        assert torch.equal(value, trained[name]), name


def vqa_request(shapes: Path, init: Path, out: Path, resume: bool = False) -> FinetuneRequest:
    return FinetuneRequest(
        task="vqa", init=str(init), out=str(out), data=str(shapes / "vqa"), images=str(shapes / "images"),
        overrides=tuple(vqa_overrides()), resume=resume,
    )  # fmt: skip


def vqa_records(shapes: Path, split: str = "val2014"):
    return VQATask.read(shapes / "vqa", shapes / "images", split)


# --------------------------------------------------------------------------- module fixtures


@pytest.fixture(scope="module")
def shapes_config() -> SynthConfig:
    """``shapes`` (tests/conftest.py): 48 images of 32 pixels."""
    return SynthConfig(num_images=48, seed=0, image_size=32)


@pytest.fixture(scope="module")
def pretrained(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "vilta"
    code, _, err = run_cli(pretrain_args(shapes, "vilta-tiny-baseline", out, 3))
    assert code == 0, err
    return out / "final"


@pytest.fixture(scope="module")
def pretrained_semvlp(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "semvlp"
    vqa = shapes / "vqa"
    qa = f"data.vqa={vqa / QUESTIONS.format(split='train2014')},{vqa / ANNOTATIONS.format(split='train2014')}"
    code, _, err = run_cli(pretrain_args(shapes, "semvlp-tiny", out, 2, qa))
    assert code == 0, err
    return out / "final"


@pytest.fixture(scope="module")
def vqa_run(shapes, pretrained, tmp_path_factory):
    """`vlp finetune vqa` through the command line: 6 steps, evaluated and checkpointed every 2."""
    out = tmp_path_factory.mktemp("vqa") / "run"
    args = [
        "finetune", "vqa", "--init", pretrained, "--out", out, "--data", shapes / "vqa",
        "--images", shapes / "images", *vqa_overrides(),
    ]  # fmt: skip
    code, stdout, stderr = run_cli(args)
    return SimpleNamespace(out=out, code=code, stdout=stdout, stderr=stderr)


@pytest.fixture(scope="module")
def vqa_best(vqa_run) -> Path:
    assert vqa_run.code == 0, vqa_run.stderr
    return vqa_run.out / "best"


@pytest.fixture(scope="module")
def vqa_eval(shapes, vqa_best, tmp_path_factory):
    """`vlp evaluate` of RUN/best on val2014 (metrics, result file, contact sheet) and the same through
    :func:`run_evaluation`."""
    files = tmp_path_factory.mktemp("vqa_eval")
    args = [
        "evaluate", "--checkpoint", vqa_best, "--data", shapes / "vqa", "--images", shapes / "images",
        "--split", "val2014", "--metrics", files / "metrics.json", "--predictions", files / "results.json",
        "--examples", files / "examples.png", "--device", "cpu",
    ]  # fmt: skip
    code, stdout, stderr = run_cli(args)
    request = EvaluateRequest(
        checkpoint=str(vqa_best), data=str(shapes / "vqa"), images=str(shapes / "images"),
        split="val2014", device="cpu",
    )  # fmt: skip
    outcome = run_evaluation(request)
    return SimpleNamespace(files=files, code=code, stdout=stdout, stderr=stderr, outcome=outcome)


@pytest.fixture(scope="module")
def zero_shot_retrieval(shapes, pretrained):
    request = EvaluateRequest(
        checkpoint=str(pretrained), data=str(shapes), split="test", task="retrieval", device="cpu"
    )
    return run_evaluation(request)


# --------------------------------------------------------------------------- 1. the run directory


def test_vqa_finetune_writes_best_final_checkpoints_and_logs(shapes, vqa_run):
    out = vqa_run.out
    assert vqa_run.code == 0, vqa_run.stderr
    for name in ("best", "final"):
        assert (out / name / "config.json").is_file() and (out / name / TASK_HEAD_FILE).is_file()
    assert [p.name for p in list_checkpoints(out)] == [f"step-{s:08d}" for s in (2, 4, 6)]

    evals = read_metrics(out, "eval")
    assert [e["step"] for e in evals] == [2, 4, 6]
    val_questions = len(vqa_records(shapes))
    assert all(e["metrics"]["questions"] == val_questions for e in evals)
    overall = {e["step"]: e["metrics"]["overall"] for e in evals}
    best_value = max(overall.values())
    best_step = min(step for step, value in overall.items() if value == best_value)  # the first of a tie
    assert len(set(overall.values())) > 1  # the choice is not trivial on this run

    # the best is recorded in the checkpoints, reported by the command, and exported to OUT/best
    best = {"step": best_step, "metric": "overall", "value": best_value}
    assert read_trainer_state(find_latest(out))["best"] == best
    printed = printed_values(vqa_run.stdout)
    assert float(printed["best/step"]) == best_step
    assert printed["best/overall"] == f"{best_value:.4f}"
    assert printed["eval/overall"] == f"{overall[VQA_STEPS]:.4f}"
    assert_exported_from(out / "best", out / "checkpoints" / f"step-{best_step:08d}")
    assert_exported_from(out / "final", out / "checkpoints" / f"step-{VQA_STEPS:08d}")
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            checkpoint_weights(out / "best").values(), checkpoint_weights(out / "final").values(), strict=True
        )
    )

    # the task entry carries the answer vocabulary learned from the training questions
    entry = json.loads((out / "best" / "config.json").read_text())["task"]
    train = vqa_records(shapes, "train2014")
    expected = VQATask.build(train, TaskConfig(min_answer_count=3)).state["answers"]
    assert entry["name"] == "vqa" and entry["state"]["answers"] == expected
    assert {"yes", "no"} <= set(expected) and entry["max_text_len"] > 0
    chosen = Counter(r.multiple_choice_answer for r in train)
    assert set(expected) == {answer for answer, count in chosen.items() if count >= 3}

    # baselines.json: the majority training answer, scored with the official accuracy on val
    baselines = json.loads((out / "baselines.json").read_text())
    majority = chosen.most_common(1)[0][0]
    val = vqa_records(shapes)
    accuracy = round(100 * sum(vqa_accuracy(majority, r.answers) for r in val) / len(val), 2)
    assert baselines == {"split": "val2014", "metric": "overall", "majority": accuracy}


# --------------------------------------------------------------------------- 2. stop and resume


def test_stopped_and_resumed_finetuning_equals_uninterrupted_run(shapes, pretrained, vqa_run, tmp_path):
    assert vqa_run.code == 0, vqa_run.stderr
    full, resumed = vqa_run.out, tmp_path / "resumed"
    original = TaskStep.forward

    def crash_in_step_5(self, batch, step):
        if step == 4:  # 0-based: after the checkpoint and evaluation of step 4
            raise KeyboardInterrupt
        return original(self, batch, step)

    TaskStep.forward = crash_in_step_5
    try:
        with pytest.raises(KeyboardInterrupt):
            finetune(vqa_request(shapes, pretrained, resumed))
    finally:
        TaskStep.forward = original
    assert [p.name for p in list_checkpoints(resumed)] == ["step-00000002", "step-00000004"]
    assert sorted(eval_metrics(resumed)) == [2, 4] and not (resumed / "final").exists()
    best_before = read_trainer_state(resumed / "checkpoints" / "step-00000004")["best"]
    assert best_before is not None

    result = finetune(vqa_request(shapes, pretrained, resumed, resume=True))

    assert losses_by_step(resumed) == losses_by_step(full)
    assert sorted(losses_by_step(full)) == list(range(1, VQA_STEPS + 1))
    assert eval_metrics(resumed) == eval_metrics(full)
    for name in ("final", "best"):
        assert_same_tensors(checkpoint_weights(resumed / name), checkpoint_weights(full / name))
    # the best record survives the resume: the same step and value, reported and checkpointed
    best = read_trainer_state(find_latest(full))["best"]
    assert read_trainer_state(find_latest(resumed))["best"] == best
    printed = printed_values(vqa_run.stdout)
    assert result["best/step"] == best["step"] == float(printed["best/step"])
    assert result["best/overall"] == best["value"]
    assert f"{result['best/overall']:.4f}" == printed["best/overall"]
    assert result["step"] == VQA_STEPS


# --------------------------------------------------------------------------- 3. vlp evaluate


def test_evaluate_prints_and_writes_metrics_results_and_examples(shapes, vqa_run, vqa_eval):
    assert vqa_eval.code == 0, vqa_eval.stderr
    records = vqa_records(shapes)
    metrics = json.loads((vqa_eval.files / "metrics.json").read_text())
    assert metrics == vqa_eval.outcome.evaluation.metrics
    assert set(metrics) >= {"overall", "perAnswerType", "questions"} and metrics["questions"] == len(records)
    first = vqa_eval.stdout.splitlines()[0]
    assert first.startswith(f"vqa val2014: {len(records)} examples, {len(records)} predicted")
    assert re.search(rf"^\s+overall\s+{metrics['overall']:.2f}$", vqa_eval.stdout, flags=re.MULTILINE)
    for kind, value in metrics["perAnswerType"].items():
        assert re.search(rf"^\s+{re.escape(kind)}\s+{value:.2f}$", vqa_eval.stdout, flags=re.MULTILINE)

    # the result file: one entry per question in file order, scored again with the official accuracy
    results = json.loads((vqa_eval.files / "results.json").read_text())
    questions = json.loads((shapes / "vqa" / QUESTIONS.format(split="val2014")).read_text())["questions"]
    assert [e["question_id"] for e in results] == [q["question_id"] for q in questions]
    annotations = json.loads((shapes / "vqa" / ANNOTATIONS.format(split="val2014")).read_text())
    gold = {a["question_id"]: [x["answer"] for x in a["answers"]] for a in annotations["annotations"]}
    scores = [vqa_accuracy(e["answer"], gold[e["question_id"]]) for e in results]
    assert round(100 * sum(scores) / len(scores), 2) == metrics["overall"]
    # RUN/best evaluated again reproduces the best value the run logged on this split
    assert metrics["overall"] == read_trainer_state(find_latest(vqa_run.out))["best"]["value"]

    with Image.open(vqa_eval.files / "examples.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 64 and sheet.height > 64
    assert f"wrote {vqa_eval.files / 'examples.png'}" in vqa_eval.stdout


def test_evaluate_on_a_test_split_without_answers_writes_every_question_and_no_metrics(
    shapes, vqa_best, vqa_eval, tmp_path
):
    root = tmp_path / "vqa_test"
    (root / "images" / "test2015").mkdir(parents=True)
    source = json.loads((shapes / "vqa" / QUESTIONS.format(split="val2014")).read_text())
    source["data_subtype"] = "test2015"
    (root / QUESTIONS.format(split="test2015")).write_text(json.dumps(source))
    for image_id in {q["image_id"] for q in source["questions"]}:
        original = shapes / "images" / "val2014" / f"COCO_val2014_{image_id:012d}.jpg"
        os.symlink(original, root / "images" / "test2015" / f"COCO_test2015_{image_id:012d}.jpg")

    results = tmp_path / "test_results.json"
    args = ["evaluate", "--checkpoint", vqa_best, "--data", root, "--split", "test2015"]
    code, stdout, stderr = run_cli(args + ["--predictions", results])
    assert code == 0, stderr
    n = len(source["questions"])
    assert stdout.splitlines()[0].startswith(f"vqa test2015: {n} examples, {n} predicted")
    assert "no metrics" in stdout and "overall" not in stdout
    entries = json.loads(results.read_text())
    assert [e["question_id"] for e in entries] == [q["question_id"] for q in source["questions"]]
    # the same questions about the same pixels: the answers of the val evaluation
    val_answers = json.loads((vqa_eval.files / "results.json").read_text())
    assert entries == val_answers and all(e["answer"] for e in entries)


# --------------------------------------------------------------------------- 4. and 5. agreement


def test_predict_api_and_evaluate_give_the_same_answers(shapes, vqa_best, vqa_eval):
    records = vqa_records(shapes)[::7][:5]
    assert len(records) == 5 and len({r.answer_type for r in records}) > 1
    entries = json.loads((vqa_eval.files / "results.json").read_text())
    results = {e["question_id"]: e["answer"] for e in entries}
    evaluated = vqa_eval.outcome.evaluation.predictions
    predictor = load_predictor(vqa_best)
    assert predictor.task == "vqa"
    for record in records:
        code, stdout, stderr = run_cli(
            ["predict", "--checkpoint", vqa_best, "--image", record.image_path, "--question", record.question]
        )
        assert code == 0, stderr
        lines = stdout.splitlines()
        assert lines[0] == f"Q: {record.question}"
        printed = [re.fullmatch(r"\s+(\d+\.\d{4})\s+(.+)", line).groups() for line in lines[1:]]
        top = predictor.answer(record.image_path, record.question)
        assert len(top) == len(printed) == 5
        assert [(f"{p:.4f}", a) for a, p in top] == printed
        assert all(a >= b for (_, a), (_, b) in zip(top, top[1:], strict=False))
        assert top[0][0] == results[record.question_id] == evaluated[record.question_id].answer
        assert top[0][1] == pytest.approx(evaluated[record.question_id].score, abs=1e-5)
    # the API in one batch answers as one question at a time
    batched = predictor.answer([r.image_path for r in records], [r.question for r in records], top_k=1)
    assert [b[0][0] for b in batched] == [results[r.question_id] for r in records]


@pytest.mark.parametrize("arch", ["vilta", "semvlp"])
def test_classify_and_evaluate_give_the_same_labels(shapes, arch, request, tmp_path):
    init = request.getfixturevalue("pretrained" if arch == "vilta" else "pretrained_semvlp")
    data, images = shapes / "snli_ve", shapes / "snli_ve" / "flickr30k_images"
    overrides = tiny_finetune(2, 1) + (["task.fusion_mode=two"] if arch == "semvlp" else [])
    code, _, stderr = run_cli(
        ["finetune", "snli_ve", "--init", init, "--out", tmp_path / "run", "--data", data, "--images", images]
        + overrides
    )
    assert code == 0, stderr
    best = tmp_path / "run" / "best"
    entry = json.loads((best / "config.json").read_text())["task"]
    assert entry["name"] == "snli_ve" and entry["fusion_mode"] == ("two" if arch == "semvlp" else "single")

    outcome = run_evaluation(
        EvaluateRequest(checkpoint=str(best), data=str(data), images=str(images), split="dev", device="cpu")
    )
    records = SNLIVETask.read(data, images, "dev")
    predictions = outcome.evaluation.predictions
    assert outcome.task == "snli_ve" and set(predictions) == {r.pair_id for r in records}
    predictor = load_predictor(best)
    assert predictor.task == "snli_ve" and predictor.fusion_mode == entry["fusion_mode"]
    for record in records[:5]:
        labels = predictor.classify(record.image_path, record.hypothesis)
        assert sorted(label for label, _ in labels) == ["contradiction", "entailment", "neutral"]
        assert sum(p for _, p in labels) == pytest.approx(1.0, abs=1e-5)
        expected = predictions[record.pair_id]
        assert labels[0][0] == expected.answer
        assert dict(labels) == pytest.approx(dict(expected.top), abs=1e-5)
    with pytest.raises(ValueError, match="answer\\(\\) needs a checkpoint fine-tuned for vqa or gqa"):
        predictor.answer(records[0].image_path, "what is it?")


def test_nlvr2_head_warmup_runs_before_fine_tuning_and_not_again_on_resume(shapes, pretrained, tmp_path):
    data = shapes / "nlvr2"
    warmup = {"task.head_warmup_epochs": 4, "task.head_warmup_batch_size": 4}
    request = FinetuneRequest(
        task="nlvr2", init=str(pretrained), out=str(tmp_path / "run"), data=str(data),
        images=str(data / "images"), overrides=tuple(tiny_finetune(2, 2, ckpt_every=1, **warmup)),
    )  # fmt: skip
    result = finetune(request)
    assert result["head_warmup/last_loss"] < result["head_warmup/first_loss"]
    assert 0 <= result["head_warmup/last_nlvr2_acc"] <= 1 and result["step"] == 2
    (tmp_path / "run" / "final").rename(tmp_path / "first-final")
    resumed = finetune(dataclasses.replace(request, resume=True))  # the head comes from the checkpoint
    assert not any(name.startswith("head_warmup/") for name in resumed)


# --------------------------------------------------------------------------- 6. retrieval


def test_zero_shot_retrieval_evaluation_of_a_pretrained_checkpoint(
    shapes, pretrained, zero_shot_retrieval, tmp_path
):
    metrics = zero_shot_retrieval.evaluation.metrics
    assert zero_shot_retrieval.task == "retrieval" and zero_shot_retrieval.records == 5
    assert metrics["images"] == 5 and metrics["captions"] == 25
    for direction in ("text_retrieval", "image_retrieval"):
        recall = metrics[direction]
        assert set(recall) == {"r1", "r5", "r10"}
        assert 0.0 <= recall["r1"] <= recall["r5"] <= recall["r10"] <= 100.0
    recalls = [metrics[d][r] for d in ("text_retrieval", "image_retrieval") for r in ("r1", "r5", "r10")]
    assert metrics["rsum"] == pytest.approx(sum(recalls), abs=0.01)

    path = tmp_path / "metrics.json"
    code, stdout, stderr = run_cli(
        ["evaluate", "--task", "retrieval", "--checkpoint", pretrained, "--data", shapes, "--split", "test",
         "--metrics", path]
    )  # fmt: skip
    assert code == 0, stderr
    assert json.loads(path.read_text()) == metrics
    assert re.search(rf"^\s+rsum\s+{metrics['rsum']:.2f}$", stdout, flags=re.MULTILINE)


def test_retrieval_finetune_writes_a_retrieval_checkpoint(shapes, pretrained, tmp_path):
    out = tmp_path / "retrieval"
    code, stdout, stderr = run_cli(
        ["finetune", "retrieval", "--init", pretrained, "--out", out, "--data", shapes] + tiny_finetune(2, 1)
    )
    assert code == 0, stderr
    entry = json.loads((out / "best" / "config.json").read_text())["task"]
    assert entry["name"] == "retrieval" and entry["state"] == {"rerank_k": 16, "itc_weight": 5.0}  # preset
    assert (out / "final" / "config.json").is_file()
    assert json.loads((out / "baselines.json").read_text())["metric"] == "rsum"
    logged = eval_metrics(out)
    assert sorted(logged) == [1, 2]
    best = read_trainer_state(find_latest(out))["best"]
    assert best["metric"] == "rsum" and best["value"] == max(m["rsum"] for m in logged.values())
    assert f"{best['value']:.4f}" == printed_values(stdout)["best/rsum"]
    # RUN/best evaluated on the val split (at its own re-ranking depth) reproduces its logged metrics
    request = EvaluateRequest(checkpoint=str(out / "best"), data=str(shapes), split="val", device="cpu")
    outcome = run_evaluation(request)
    assert outcome.task == "retrieval"
    assert outcome.evaluation.metrics["rsum"] == best["value"]
    assert outcome.evaluation.metrics["k"] == logged[best["step"]]["k"] == 16


# --------------------------------------------------------------------------- 7. two processes


def test_two_process_evaluation_equals_one_process(
    shapes, pretrained, vqa_best, vqa_eval, zero_shot_retrieval, tmp_path
):
    report = tmp_path / "report.json"
    done = run_two_processes(__file__, vqa_best, shapes, pretrained, report, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got = json.loads(report.read_text())
    assert got["world_size"] == 2
    assert got["vqa"] == vqa_eval.outcome.evaluation.metrics
    one = {str(uid): p.answer for uid, p in vqa_eval.outcome.evaluation.predictions.items()}
    assert got["vqa_answers"] == one
    expected = zero_shot_retrieval.evaluation.metrics
    assert got["retrieval"].keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert got["retrieval"][key] == pytest.approx(value, abs=1e-6), key
        elif isinstance(value, int | float):
            assert got["retrieval"][key] == pytest.approx(value, abs=1e-6), key
        else:
            assert got["retrieval"][key] == value, key


def _distributed_main(vqa_best: str, shapes: str, pretrained: str, report: str) -> None:
    from vlp.train import cleanup, init_distributed

    torch.set_num_threads(1)
    info = init_distributed("cpu")
    root = Path(shapes)
    request = EvaluateRequest(
        checkpoint=vqa_best, data=str(root / "vqa"), images=str(root / "images"), split="val2014",
        batch_size=8, device="cpu",
    )  # fmt: skip
    vqa = run_evaluation(request)
    retrieval = run_evaluation(
        EvaluateRequest(checkpoint=pretrained, data=shapes, split="test", task="retrieval", device="cpu")
    )
    if info.is_main:
        answers = {str(uid): p.answer for uid, p in vqa.evaluation.predictions.items()}
        Path(report).write_text(
            json.dumps(
                {
                    "world_size": info.world_size,
                    "vqa": vqa.evaluation.metrics,
                    "vqa_answers": answers,
                    "retrieval": retrieval.evaluation.metrics,
                }
            )
        )
    cleanup()


# --------------------------------------------------------------------------- 8. clear errors


def test_command_line_errors_are_one_clear_line(shapes, pretrained, vqa_best, tmp_path):
    def fails(args) -> str:
        code, _, stderr = run_cli(args)
        assert code == 2, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vlp: error: "), stderr
        return lines[0]

    vqa = ["--data", shapes / "vqa", "--images", shapes / "images"]
    message = fails(["evaluate", "--checkpoint", pretrained, *vqa, "--split", "val2014"])
    assert "no task" in message and str(pretrained) in message

    message = fails(["evaluate", "--checkpoint", vqa_best, *vqa, "--split", "test-dev2015"])
    assert "'test-dev2015' not found" in message and "splits found: train2014, val2014" in message

    out = tmp_path / "scratch"
    message = fails(["finetune", "vqa", "--init", "none", "--out", out, *vqa])
    assert "--config" in message and not out.exists()

    message = fails(
        ["finetune", "retrieval", "--init", pretrained, "--out", tmp_path / "r", "--data", shapes,
         "task.head_warmup_epochs=2"]
    )  # fmt: skip
    assert "task.head_warmup_epochs" in message and "retrieval" in message

    missing = tmp_path / "no_such_image.jpg"
    message = fails(["predict", "--checkpoint", vqa_best, "--image", missing, "--question", "what shape?"])
    assert str(missing) in message


if __name__ == "__main__":
    _distributed_main(*sys.argv[1:5])
