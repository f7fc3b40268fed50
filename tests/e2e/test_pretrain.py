"""`vlp pretrain` end to end on a small shapes world: the wiring of data, models, objectives and trainer."""

import math

import pytest
import torch
from safetensors.torch import load_file
from shapes_overrides import data_overrides, vqa_override

import vlp
from vlp.cli import main as vlp_main
from vlp.config import load_config
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.models.checkpoint import read_answer_vocab, save_pretrained
from vlp.objectives.pretraining import PretrainingObjectives
from vlp.pretrain import TEACHER_FILE, pretrain
from vlp.pretraining_setup import build_pretraining
from vlp.train.metrics_log import read_metrics
from vlp.train.state import list_checkpoints


def tiny_run(steps, **extra):
    options = {"log_every": 1, "val_every": 0, "ckpt_every": 0, "progress": "false", "warmup_steps": 1}
    options.update(extra)
    return [f"train.max_steps={steps}"] + [f"train.{key}={value}" for key, value in options.items()]


def losses_by_step(out, split="train"):
    return {event["step"]: event["losses"] for event in read_metrics(out, split)}


def test_text_stage_then_full_vilta_through_the_cli(shapes, tmp_path):
    text_out, vilta_out = tmp_path / "text", tmp_path / "vilta"
    code = vlp_main(
        ["pretrain", "--config", "vilta-tiny-text", "--out", str(text_out)]
        + data_overrides(shapes)
        + tiny_run(3)
    )
    assert code == 0
    assert set(losses_by_step(text_out)[3]) == {"mlm", "total"}

    stage = str(text_out / "final")
    code = vlp_main(
        [
            "pretrain",
            "--config",
            "vilta-tiny",
            "--out",
            str(vilta_out),
            f"model.init_from={stage}",
            f"objectives.soft_labels.teacher={stage}",
        ]
        + data_overrides(shapes)
        + tiny_run(3)
    )
    assert code == 0
    events = read_metrics(vilta_out, "train")
    assert set(events[-1]["losses"]) == {"mlm", "itm", "itc", "text_mlm", "total"}
    assert events[-1]["metrics"]["itm_acc_synthesized"] >= 0.0

    # the teacher is the text stage's language model, frozen: its weights are stored with the run
    teacher = load_file(str(vilta_out / TEACHER_FILE))
    stage_weights = load_file(str(text_out / "final" / "model.safetensors"))
    # the teacher is the stage's text encoder ("encoder.*") with its text MLM head ("head.*")
    prefixes = {"encoder": "text_encoder", "head": "heads.text_mlm_head"}
    for name, tensor in teacher.items():
        first, rest = name.split(".", 1)
        assert torch.equal(tensor, stage_weights[f"{prefixes[first]}.{rest}"]), name

    model = vlp.load(vilta_out / "final")
    assert model.arch == "vilta"


def test_semvlp_iterative_uses_both_modes_and_all_objectives(shapes, tmp_path):
    out = tmp_path / "semvlp"
    config = load_config("semvlp-tiny", data_overrides(shapes) + tiny_run(2) + [vqa_override(shapes)])
    seen_modes = []  # per training step: the modes the model's fusion ran in
    original = PretrainingObjectives.forward

    def spy(self, batch, step, mode=None):
        fuse, modes = self.model.fuse, set()

        def recording_fuse(*args, **kwargs):
            modes.add(kwargs.get("mode"))
            return fuse(*args, **kwargs)

        self.model.fuse = recording_fuse
        try:
            return original(self, batch, step, mode=mode)
        finally:
            del self.model.fuse
            seen_modes.append(sorted(modes))

    PretrainingObjectives.forward = spy
    try:
        pretrain(config, out)
    finally:
        PretrainingObjectives.forward = original
    assert seen_modes == [["single"], ["two"]]  # the iterative schedule: step 1 single, step 2 two
    losses = losses_by_step(out)
    assert {"mlm", "itm", "mvm", "qa"} <= set(losses[2])
    answers = read_answer_vocab(out / "final")  # the QA head's classes are saved with it
    assert answers and vlp.load(out / "final").config.num_answers == len(answers)


def test_build_pretraining_sizes_the_qa_head_from_the_answer_vocabulary(shapes, tmp_path):
    qa_data = vqa_override(shapes)
    run = build_pretraining(load_config("semvlp-tiny", data_overrides(shapes) + [qa_data]))
    assert run.answer_vocab and run.model.config.num_answers == len(run.answer_vocab)
    assert run.train_loader.collator.targets.answer_vocab == run.answer_vocab
    assert run.objectives.model is run.model and run.val_loader is not None
    unsized = build_pretraining(
        load_config("semvlp-tiny", data_overrides(shapes) + [qa_data, "objectives.weights.qa=0"])
    )
    assert unsized.answer_vocab is None  # QA examples, but no head trained on them

    save_pretrained(run.model, tmp_path / "new", answer_vocab=run.answer_vocab)
    assert read_answer_vocab(tmp_path / "new") == run.answer_vocab
    save_pretrained(run.model, tmp_path / "old", extra_config={"answer_vocab": run.answer_vocab})  # before
    assert read_answer_vocab(tmp_path / "old") == run.answer_vocab
    save_pretrained(unsized.model, tmp_path / "none")
    assert read_answer_vocab(tmp_path / "none") is None
    with pytest.raises(ValueError, match="answer_vocab lists"):
        save_pretrained(run.model, tmp_path / "bad", answer_vocab=run.answer_vocab[:-1])


def test_stopped_and_resumed_run_equals_uninterrupted_one(shapes, tmp_path):
    # soft labels from the model's own initial text path: the resumed run must read that teacher back
    overrides = data_overrides(shapes) + tiny_run(4, ckpt_every=2) + ["objectives.soft_labels.warmup_steps=0"]
    config = load_config("vilta-tiny", overrides)
    pretrain(config, tmp_path / "full")

    original = PretrainingObjectives.forward

    def crash_at_step_3(self, batch, step, mode=None):
        if step == 2:  # 0-based: the third step
            raise KeyboardInterrupt
        return original(self, batch, step, mode=mode)

    PretrainingObjectives.forward = crash_at_step_3
    try:
        with pytest.raises(KeyboardInterrupt):
            pretrain(config, tmp_path / "resumed")
    finally:
        PretrainingObjectives.forward = original
    pretrain(config, tmp_path / "resumed", resume=True)

    assert losses_by_step(tmp_path / "resumed") == losses_by_step(tmp_path / "full")
    assert sorted(losses_by_step(tmp_path / "full")) == [1, 2, 3, 4]

    # The learnable ITC temperature is checkpointed beside the model (extra.safetensors) and restored on
    # resume; the frozen teacher is not in the checkpoints (it is stored once, in teacher.safetensors).
    initial = torch.tensor(math.log(1 / config.objectives.itc.temperature))
    checkpoints = {}
    for run in ("full", "resumed"):
        for path in list_checkpoints(tmp_path / run):
            checkpoints[run, path.name] = path
            model_keys = load_file(str(path / "model.safetensors")).keys()
            assert not any(key.startswith(("teacher.", "temperature.")) for key in model_keys)
            assert load_file(str(path / "extra.safetensors")).keys() == {"temperature.log_scale"}
    assert sorted(checkpoints) == [(run, f"step-{s:08d}") for run in ("full", "resumed") for s in (2, 4)]
    temperatures = {
        key: load_file(str(path / "extra.safetensors"))["temperature.log_scale"]
        for key, path in checkpoints.items()
    }
    assert not torch.equal(temperatures["full", "step-00000002"], initial)  # it is trained
    assert not torch.equal(temperatures["full", "step-00000004"], temperatures["full", "step-00000002"])
    for step in ("step-00000002", "step-00000004"):  # written before the crash, and after the resume
        assert torch.equal(temperatures["resumed", step], temperatures["full", step])
    teacher = load_file(str(tmp_path / "full" / TEACHER_FILE))
    assert teacher and all(key.startswith(("encoder.", "head.")) for key in teacher)


def test_short_pretraining_lowers_mlm_and_lifts_itm_well_above_chance(tmp_path):
    # One shape per scene and 32x32 pixels keep this to ~45 s on one thread. From scratch, ITC is what
    # first aligns the two encoders; the fused ITM classifier then follows (model.init_std lets it).
    root = tmp_path / "shapes"
    write_shapes_world(SynthConfig(num_images=400, seed=0, image_size=32, max_objects=1), root)
    steps = 240  # at 180 balanced ITM accuracy ranged 0.66-0.75+ with the tokenizer's vocabulary; 240: 0.91
    overrides = data_overrides(root, batch_size=32) + [
        "data.image_size=32",
        "model.vision.image_size=32",
        "data.max_val_images=64",
        "objectives.itm.hard_negatives=0",  # random negatives only: balanced chance is 0.5
        f"train.max_steps={steps}",
        f"train.val_every={steps}",
        "train.log_every=20",
        "train.ckpt_every=0",
        "train.progress=false",
    ]
    pretrain(load_config("vilta-tiny-baseline", overrides), tmp_path / "run")

    first = read_metrics(tmp_path / "run", "train")[0]
    assert first["step"] == 20 and first["metrics"]["itm_acc_balanced"] < 0.6
    (val,) = read_metrics(tmp_path / "run", "val")
    assert val["step"] == steps
    assert val["losses"]["mlm"] < 0.6 * first["losses"]["mlm"]
    # chance: 0.5 balanced ITM accuracy, 1/32 ITC top-1
    assert val["metrics"]["itm_acc_balanced"] >= 0.75
    assert val["metrics"]["itm_acc_positive"] >= 0.6 and val["metrics"]["itm_acc_random"] >= 0.6
    assert val["metrics"]["itc_acc"] >= 0.3


def test_qa_without_question_answer_data_names_the_key_before_reading_data(shapes, tmp_path, capsys):
    # semvlp-base trains QA but ships no data.vqa (real VQAv2 files are the user's): the error says which
    # key to set instead of a missing model.num_answers.
    args = ["pretrain", "--config", "semvlp-tiny", "--out", str(tmp_path / "run"), *data_overrides(shapes)]
    assert vlp_main([*args, "data.vqa="]) == 2
    err = capsys.readouterr().err
    assert "objectives.weights.qa=1.0 needs question-answer data: set data.vqa=" in err
    assert not list_checkpoints(tmp_path / "run")
