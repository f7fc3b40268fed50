"""Issue 12, reliability: no run loses or mixes data, resume refuses what it cannot honour, strict presets,
and a clear one-line error for every environment fault. One section per case of the issue."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import io
import json
import logging
import math
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from shapes_overrides import data_overrides, vqa_override
from toy_trainer import make_cfg, make_trainer

from vlp.cli import main as vlp_main
from vlp.config import ConfigError, config_to_dict, load_config, preset_names
from vlp.data.build import build_pretrain_loaders
from vlp.data.collate import Collator
from vlp.data.examples import PairDataset
from vlp.data.formats.reading import FormatError, iter_jsonl, load_json
from vlp.data.formats.vqa import read_vqa
from vlp.data.formats.webdataset import iter_webdataset
from vlp.data.images import load_image
from vlp.data.loader import PretrainLoader
from vlp.data.records import CaptionRecord
from vlp.data.synthetic import SynthConfig
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.pretrain import TEACHER_FILE, pretrain
from vlp.pretraining_setup import build_objectives, sized_model_config
from vlp.train import NonFiniteLossError, find_latest
from vlp.train import state as ckpt
from vlp.train.metrics_log import METRICS_FILE, MetricsLogger, read_metrics
from vlp.train.state import CheckpointError, RunDirectoryError, list_checkpoints, load_tensors


@pytest.fixture(scope="module")
def shapes_config() -> SynthConfig:
    """``shapes`` (tests/conftest.py): 12 images; region features at the base presets' 2048 dimensions."""
    return SynthConfig(num_images=12, seed=0, region_feature_dim=2048)


# Two pairs per batch, 16-token texts, two validation images.
SMALL_DATA = dict(batch_size=2, max_val_images=2, max_text_len=16)


TINY_RUN = ["train.log_every=1", "train.val_every=0", "train.progress=false", "train.warmup_steps=1"]


def run_cli(argv, capsys) -> tuple[int, str]:
    code = vlp_main([str(a) for a in argv])
    return code, capsys.readouterr().err


def write_karpathy(root, names, split="train"):
    """A Karpathy file naming ``names`` under ``root/images``."""
    images = [
        {"filepath": "", "filename": name, "split": split, "sentences": [{"raw": f"picture {i}"}]}
        for i, name in enumerate(names)
    ]
    path = root / "captions.json"
    path.write_text(json.dumps({"images": images}), encoding="utf-8")
    return path


def png16(path, size=16):
    """A 16-bit grayscale PNG: a ramp from 0 to 65535 over the rows (mid-gray on average)."""
    ramp = np.linspace(0, 65535, size * size).reshape(size, size).astype(np.uint16)
    Image.fromarray(ramp).save(path, format="PNG")
    return ramp


# --------------------------------------------------------------------------- 1. a refused run writes nothing


def test_1_a_refused_run_leaves_the_run_it_refuses_untouched(shapes, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-00000005").mkdir(parents=True)
    (out / "checkpoints" / "step-00000005" / "meta.json").write_text('{"files": []}')
    (out / TEACHER_FILE).write_bytes(b"the run's own teacher")
    config = load_config("vilta-tiny-soft", data_overrides(shapes, **SMALL_DATA) + ["train.max_steps=1"])
    assert config.objectives.soft_labels.enabled
    with pytest.raises(ValueError, match="already holds checkpoints .*--resume"):
        pretrain(config, out, resume=False)
    assert (out / TEACHER_FILE).read_bytes() == b"the run's own teacher"
    assert not (out / METRICS_FILE).exists()


# --------------------------------------------------------------------------- 2. one process per run directory


def hold_lock(out, holder="pid 4242 on elsewhere since 2026-01-01 00:00:00: vlp pretrain"):
    """Lock ``out`` as another process would (a separate open file description)."""
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / ckpt.LOCK_FILE, "w", encoding="utf-8")
    handle.write(holder + "\n")
    handle.flush()
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_2_a_second_process_on_one_run_directory_is_refused_naming_the_holder(tmp_path):
    handle = hold_lock(tmp_path)
    try:
        with pytest.raises(RunDirectoryError, match="in use by pid 4242 on elsewhere"):
            make_trainer(tmp_path, make_cfg(max_steps=2)).fit()
        assert not (tmp_path / "checkpoints").exists() and not (tmp_path / METRICS_FILE).exists()
    finally:
        handle.close()  # the other process ends: the lock is free
    assert make_trainer(tmp_path, make_cfg(max_steps=2)).fit()["step"] == 2
    # Within one process the lock is re-entrant (pretrain holds it around the trainer's own).
    with ckpt.run_lock(tmp_path), ckpt.run_lock(tmp_path):
        assert "pid" in (tmp_path / ckpt.LOCK_FILE).read_text()


def test_2_pretrain_is_refused_while_another_process_holds_the_run(shapes, tmp_path, capsys):
    handle = hold_lock(tmp_path / "run")
    try:
        argv = ["pretrain", "--config", "vilta-tiny-baseline", "--out", tmp_path / "run"]
        code, err = run_cli(argv + data_overrides(shapes, **SMALL_DATA), capsys)
    finally:
        handle.close()
    assert code == 2 and "in use by pid 4242" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- 3. synth into a dataset


def test_3_synth_refuses_a_directory_that_is_not_empty_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "shapes"
    (out / "images").mkdir(parents=True)
    (out / "images" / "mine.jpg").write_bytes(b"an image of the old dataset")
    code, err = run_cli(["data", "synth", "--out", out, "--images", 10], capsys)
    assert code == 2 and "not empty" in err and "--overwrite" in err
    assert sorted(p.name for p in out.rglob("*")) == ["images", "mine.jpg"]
    code, _ = run_cli(["data", "synth", "--out", out, "--images", 10, "--overwrite"], capsys)
    assert code == 0 and (out / "dataset_shapes.json").is_file()
    assert not (out / "images" / "mine.jpg").exists()  # nothing of the old world is left behind


# --------------------------------------------------------------------------- 4. a NaN gradient


def test_4_a_nan_gradient_norm_stops_before_the_update_and_no_checkpoint_holds_nan(tmp_path):
    trainer = make_trainer(tmp_path, make_cfg(ckpt_every=2, max_steps=8))
    # The fifth update's loss is finite, its gradient is not.
    trainer.model.head_a.weight.register_hook(lambda grad: grad * math.nan if trainer.step == 4 else grad)
    with pytest.raises(NonFiniteLossError, match="non-finite gradient norm .*at step 5") as err:
        trainer.fit()
    assert "step-00000004" in str(err.value)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]
    for path in list_checkpoints(tmp_path):
        assert all(torch.isfinite(t).all() for t in load_tensors(path / ckpt.MODEL_FILE).values())


def test_4_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    model = torch.nn.Linear(2, 2)
    ckpt.save_checkpoint(tmp_path, 1, model_state=model.state_dict(), trainer_state={"step": 1})
    with torch.no_grad():
        model.weight[0, 0] = math.nan
    with pytest.raises(CheckpointError, match="refusing to write checkpoint step 2: NaN .* in weight"):
        ckpt.save_checkpoint(tmp_path, 2, model_state=model.state_dict(), trainer_state={"step": 2})
    assert find_latest(tmp_path).name == "step-00000001"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


# --------------------------------------------------------------------------- 5. what resume honours


def toy_config(cfg, batch_size=4, hidden=8):
    return {"train": dataclasses.asdict(cfg), "data": {"batch_size": batch_size}, "model": {"hidden": hidden}}


def config_trainer(out, cfg, **config):
    trainer = make_trainer(out, cfg)
    trainer.config_dict = toy_config(cfg, **config)
    return trainer


def test_5_resume_applies_a_new_lr_and_schedule_length(tmp_path, caplog):
    first = make_cfg(max_steps=4, ckpt_every=4, lr=1e-2, warmup_steps=0, log_every=1)
    config_trainer(tmp_path, first).fit()
    later = make_cfg(max_steps=8, ckpt_every=4, lr=1e-3, warmup_steps=0, log_every=1)
    trainer = config_trainer(tmp_path, later)
    used = []
    trainer.optimizer.register_step_pre_hook(lambda opt, *_: used.append(opt.param_groups[0]["lr"]))
    with caplog.at_level(logging.WARNING):
        trainer.fit(resume=True)
    assert "train.lr: 0.01 -> 0.001 (applied)" in caplog.text
    assert "train.max_steps: 4 -> 8 (applied)" in caplog.text
    # Updates 5..8 ran at the new lr, decaying linearly towards the new max_steps; the log says the same.
    expected = [1e-3 * (8 - index) / 8 for index in range(4, 8)]
    assert used == pytest.approx(expected)
    logged = [e["lr"] for e in read_metrics(tmp_path, "train") if e["step"] > 4]
    assert logged == pytest.approx(expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 8}, "data.batch_size: 4 -> 8"),
        ({"hidden": 16}, "model.hidden: 8 -> 16"),
    ],
)
def test_5_resume_refuses_changes_it_cannot_honour_naming_each_key(tmp_path, change, message):
    cfg = make_cfg(max_steps=2, ckpt_every=2)
    config_trainer(tmp_path, cfg).fit()
    again = make_cfg(max_steps=4, ckpt_every=2, seed=3)
    with pytest.raises(ConfigError, match="cannot change on resume") as err:
        config_trainer(tmp_path, again, **change).fit(resume=True)
    assert message in str(err.value) and "train.seed: 0 -> 3" in str(err.value)
    assert "train.max_steps" not in str(err.value)  # changeable: not among the refused


def test_5_a_model_that_does_not_match_the_checkpoint_is_one_line(tmp_path):
    make_trainer(tmp_path, make_cfg(max_steps=2, ckpt_every=2)).fit()
    trainer = make_trainer(tmp_path, make_cfg(max_steps=4))
    trainer.model.head_a = torch.nn.Linear(8, 2)  # another architecture, same parameter names
    with pytest.raises(CheckpointError, match=r"does not match the model: shape mismatch \['head_a.weight"):
        trainer.fit(resume=True)


# --------------------------------------------------------------------------- 6. silently wrong data


def test_6_a_16_bit_grayscale_png_keeps_its_values(tmp_path):
    ramp = png16(tmp_path / "deep.png")
    image = np.asarray(load_image(tmp_path / "deep.png"))
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image[..., 0], ramp / 257, atol=1)  # not clipped to white
    assert 120 < image.mean() < 135


def test_6_pack_keeps_16_bit_images_and_refuses_a_wrong_images_root(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    png16(tmp_path / "images" / "deep.png", size=32)
    captions = write_karpathy(tmp_path, ["deep.png"])
    shards = tmp_path / "shards"
    pack = ["data", "pack", "--captions", captions, "--out", shards, "--images-root"]
    code, err = run_cli([*pack, tmp_path / "elsewhere"], capsys)
    assert code == 2 and "--images-root" in err and "elsewhere" in err and "deep.png" in err
    assert not shards.exists()
    code, _ = run_cli([*pack, tmp_path / "images"], capsys)
    assert code == 0
    with tarfile.open(shards / "shard-000000.tar") as tar:
        jpeg = tar.extractfile("000000000.jpg").read()
    assert 110 < np.asarray(Image.open(io.BytesIO(jpeg))).mean() < 145


def pair_loader(shapes, records, **options) -> PretrainLoader:
    tokenizer = load_tokenizer(shapes / "tokenizer")
    config = load_config(None, ["model.vision.image_size=32", "data.max_text_len=16"]).data
    return PretrainLoader(
        PairDataset(records), Collator(tokenizer, config, train=False), batch_size=2, max_bad_fraction=1.0,
        shuffle=False, drop_last=False, advance_epoch=False, name="val", **options,
    )  # fmt: skip


def shapes_records(shapes, n=4):
    data = json.loads((shapes / "dataset_shapes.json").read_text())["images"][:n]
    paths = [str(shapes / "images" / d["filepath"] / d["filename"]) for d in data]
    return [
        CaptionRecord(str(i), path, [d["sentences"][0]["raw"]])
        for i, (d, path) in enumerate(zip(data, paths, strict=True))
    ]


def test_6_unreadable_validation_images_are_warned_about_even_in_a_partial_pass(shapes, tmp_path, caplog):
    records = shapes_records(shapes)
    records[1].image_path = str(tmp_path / "gone.jpg")
    loader = pair_loader(shapes, records)
    with caplog.at_level(logging.WARNING):
        batches = [batch for _, batch in zip(range(1), loader, strict=False)]  # as Trainer.validate reads
    assert len(batches) == 1
    assert "val data" in caplog.text and "skipped 1 of 2 examples" in caplog.text
    assert "gone.jpg" in caplog.text


def test_6_duplicate_vqa_question_ids_are_an_error_naming_both(tmp_path):
    questions = {
        "data_subtype": "train2014",
        "questions": [{"image_id": 1, "question": q, "question_id": 7} for q in ("what?", "which?")],
    }
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(questions))
    with pytest.raises(FormatError, match=r"questions\[1\] repeats question_id 7 \(first at questions\[0\]"):
        read_vqa(path, None, tmp_path)
    answers = [{"answer": "yes", "answer_confidence": "yes", "answer_id": 1}]
    annotation = {"question_id": 7, "image_id": 1, "answers": answers, "multiple_choice_answer": "yes",
                  "answer_type": "yes/no", "question_type": "is"}  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps({"annotations": [annotation, annotation]}))
    questions["questions"] = questions["questions"][:1]
    path.write_text(json.dumps(questions))
    with pytest.raises(FormatError, match=r"annotations\[1\] repeats question_id 7"):
        read_vqa(path, tmp_path / "annotations.json", tmp_path)


# --------------------------------------------------------------------------- 7. strict configuration


def test_7_a_key_given_twice_in_a_yaml_file_is_an_error(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("data:\n  image_size: 288\nmodel:\n  arch: vilta\ndata:\n  batch_size: 64\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: key 'data' appears twice .*lines 1 and 5"):
        load_config(str(path))


def test_7_data_image_size_follows_the_vision_tower():
    config = load_config("vilta-tiny", ["model.vision.image_size=32"])
    assert config.data.image_size == 32
    with pytest.raises(ConfigError, match="data.image_size=48 but model.vision.image_size=64"):
        load_config("vilta-tiny", ["data.image_size=48"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "data.batch_size: expected an integer >= 1, got 0"),
        ("data.mlm_probability=1.5", "data.mlm_probability: expected a value in [0, 1], got 1.5"),
        ("model.num_heads=3", "model.num_heads: expected an integer >= 1 that divides hidden_size (128)"),
        ("model.vision.patch_size=7", "model.vision.image_size: expected a positive multiple of patch_size"),
        ("model.cross_attention_layers=[9]", "cross_attention_layers: expected layer indices in [0, 4)"),
        ("train.lr=0", "train.lr: expected a positive learning rate"),
        ("task.fusion_mode=three", "task.fusion_mode: expected one of single | two"),
    ],
)
def test_7_every_range_is_checked_when_the_config_loads(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("semvlp-tiny", [override])
    assert message in str(err.value)


def test_7_no_preset_has_two_blocks_of_one_key_and_images_match_the_vision_tower():
    for name in preset_names():
        config = load_config(name)  # duplicate keys and ranges are errors here
        assert config.data.image_size == config.model.vision.image_size, name


def _small(name, shapes) -> list[str]:
    """Overrides that shrink a preset's inputs, not its architecture: random weights instead of the local
    pretrained directories, 32-px images, 16-token texts, two pairs per batch, no loader workers, the shapes
    world's files (its VQA questions wherever the QA loss is on, its 2048-d regions for region models)."""
    config = load_config(name)
    extra = ["model.text.pretrained=", "model.vision.pretrained=", "model.vision.image_size=32"]
    extra.append("data.num_workers=0")
    if config.data.vqa or config.objectives.weights.get("qa", 0) > 0:
        extra.append(vqa_override(shapes))
    if config.model.visual_input == "regions":
        extra.append(f"data.region_features={shapes / 'regions' / 'shapes_regions.tsv'}")
    return data_overrides(shapes, **SMALL_DATA) + extra


def _forward_backward(config, model, tokenizer, batch) -> float:
    objectives = build_objectives(config, model, tokenizer)
    total = objectives(batch, 0).total
    total.backward()
    model.zero_grad(set_to_none=True)
    return float(total.detach())


def test_7_every_preset_builds_and_runs_a_forward_and_backward_step(shapes):
    """Each distinct architecture is built once (random weights); each distinct set of objectives runs a
    step on it."""
    by_model: dict[str, dict[str, tuple]] = {}
    for name in preset_names():
        config = load_config(name, _small(name, shapes))
        model_key = json.dumps(config_to_dict(config.model), sort_keys=True)
        objectives_key = json.dumps(config_to_dict(config.objectives), sort_keys=True)
        by_model.setdefault(model_key, {}).setdefault(objectives_key, (name, config))
    tokenizer = load_tokenizer(shapes / "tokenizer")
    for runs in by_model.values():
        model = None
        for name, config in runs.values():
            data = build_pretrain_loaders(config.data, tokenizer, seed=0, answer_min_count=1)
            if model is None:
                torch.manual_seed(0)
                model = build_model(sized_model_config(config, data), vocab_size=len(tokenizer))
            try:
                loss = _forward_backward(config, model, tokenizer, next(iter(data.train)))
            except Exception as err:
                raise AssertionError(f"preset {name}: {type(err).__name__}: {err}") from err
            assert math.isfinite(loss), name


# --------------------------------------------------------------------------- 8. disk full


def test_8_disk_full_names_the_device_and_frees_the_partial_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    first = ckpt.save_checkpoint(tmp_path, 1, model_state=model.state_dict(), trainer_state={"step": 1})
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if str(path).endswith(ckpt.MODEL_FILE) and "w" in mode:
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return handle

    monkeypatch.setattr(ckpt, "open", full_disk, raising=False)
    with pytest.raises(CheckpointError) as err:
        ckpt.save_checkpoint(tmp_path, 2, model_state=model.state_dict(), trainer_state={"step": 2})
    message = str(err.value)
    assert message.startswith("no space left on /") and "writing " in message and ckpt.MODEL_FILE in message
    assert "step-00000001 is kept" in message
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # the space it took is free again
    assert find_latest(tmp_path) == first


# --------------------------------------------------------------------------- 9. a corrupt latest checkpoint


def _truncate_model(path):
    data = (path / ckpt.MODEL_FILE).read_bytes()
    (path / ckpt.MODEL_FILE).write_bytes(data[: len(data) // 2])
    return ckpt.MODEL_FILE


def _garbage_meta(path):
    (path / ckpt.META).write_text("{not json")
    return ckpt.META


def _no_rank_file(path):
    (path / "rank-00000.pt").unlink()
    return "rank-00000.pt"


@pytest.mark.parametrize("damage", [_truncate_model, _garbage_meta, _no_rank_file])
def test_9_a_broken_latest_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, caplog, damage):
    reference = make_trainer(tmp_path / "reference", make_cfg(max_steps=8, ckpt_every=2, keep_checkpoints=3))
    reference.fit()
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # stopped after checkpoint step 6
        make_trainer(out, make_cfg(max_steps=8, ckpt_every=2, keep_checkpoints=3), crash_at=6).fit()
    broken = damage(out / "checkpoints" / "step-00000006")
    trainer = make_trainer(out, make_cfg(max_steps=8, ckpt_every=2, keep_checkpoints=3))
    with caplog.at_level(logging.WARNING):
        assert trainer.fit(resume=True)["step"] == 8
    assert broken in caplog.text and "step-00000006" in caplog.text
    assert "resumed from" in caplog.text and "step-00000004" in caplog.text
    for name, value in reference.model.state_dict().items():  # the same as a run that never broke
        assert torch.equal(trainer.model.state_dict()[name], value), name


# --------------------------------------------------------------------------- 10. environment faults


def test_10_an_out_that_is_a_file_is_one_line_naming_the_option(shapes, tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("not a directory")
    captions = write_karpathy(tmp_path, ["x.png"])
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    commands = [
        ["pretrain", "--config", "vilta-tiny-baseline", "--out", file, *data_overrides(shapes, **SMALL_DATA)],
        ["data", "synth", "--out", file, "--images", 10],
        ["data", "pack", "--captions", captions, "--images-root", tmp_path, "--out", file],
    ]
    for argv in commands:
        code, err = run_cli(argv, capsys)
        assert code == 2 and f"--out {file}: exists and is not a directory" in err, argv


def test_10_a_decompression_bomb_in_pack_is_skipped_naming_it(tmp_path, capsys, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "bomb.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "fine.png")
    captions = write_karpathy(tmp_path, ["bomb.png", "fine.png"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 is past twice the limit
    code, err = run_cli(["data", "pack", "--captions", captions, "--images-root", tmp_path,
                         "--out", tmp_path / "shards"], capsys)  # fmt: skip
    assert code == 0 and "bomb.png" in err and "DecompressionBombError" in err
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar") as tar:
        assert json.loads(tar.extractfile("000000000.json").read())["url"].endswith("fine.png")


@pytest.mark.parametrize(
    "url, expected",
    [("pipe:exit 3", "reading the shard failed (the command exited with status 3)"),
     ("pipe:echo not a tar", "not a readable tar shard")],
)  # fmt: skip
def test_10_a_shard_that_cannot_be_read_is_one_line_naming_it(url, expected):
    with pytest.raises(FormatError) as err:
        list(iter_webdataset(url))
    assert str(err.value).startswith(f"{url}: {expected}")


def test_10_json_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"caption": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(FormatError, match=r"latin1.json: not UTF-8 text"):
        load_json(path)
    lines = tmp_path / "latin1.jsonl"
    lines.write_bytes(b'{"a": 1}\n' + '{"b": "\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(FormatError, match=r"latin1.jsonl: line 2 is not UTF-8 text"):
        list(iter_jsonl(lines))


def test_10_a_torn_last_line_of_the_metrics_is_dropped_on_resume(tmp_path, caplog):
    events = [{"step": s, "split": "train", "losses": {"total": 1.0}} for s in (1, 2)]
    text = "".join(json.dumps(e) + "\n" for e in events) + '{"step": 3, "spl'
    (tmp_path / METRICS_FILE).write_text(text)
    with caplog.at_level(logging.WARNING):
        MetricsLogger(tmp_path, tensorboard=False, resume_step=2).close()
    assert "torn last line" in caplog.text and f"{METRICS_FILE}:3" in caplog.text
    assert [e["step"] for e in read_metrics(tmp_path)] == [1, 2]
    (tmp_path / METRICS_FILE).write_text('{"step": 1}\n{torn in the middle\n{"step": 2}\n')
    with pytest.raises(ValueError, match=f"{METRICS_FILE}:2: not a JSON object"):
        read_metrics(tmp_path)  # only a torn *last* line is a crash's leftover


def test_10_a_loader_position_past_the_data_says_the_data_changed(shapes):
    loader = pair_loader(shapes, shapes_records(shapes))
    with pytest.raises(ValueError, match="val data changed since the checkpoint: .*after batch 5 of epoch 0"):
        loader.load_state_dict({"epoch": 0, "batches_done": 5})


def test_10_overrides_after_resume_that_cannot_be_honoured_are_refused_in_one_line(shapes, tmp_path, capsys):
    out = tmp_path / "run"
    data = data_overrides(shapes, **SMALL_DATA)
    base = ["pretrain", "--config", "vilta-tiny-baseline", "--out", out, *data, *TINY_RUN]
    code, _ = run_cli([*base, "train.max_steps=1"], capsys)
    assert code == 0
    code, err = run_cli([*base, "--resume", "train.max_steps=2", "data.batch_size=3"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "data.batch_size: 2 -> 3" in err and "cannot change on resume" in err and "max_steps" not in err


# --------------------------------------------------------------------------- 11. the skip warning names files


def test_11_the_skip_warning_names_the_first_bad_files(shapes, tmp_path, caplog):
    records = shapes_records(shapes)
    records[0].image_path = str(tmp_path / "first-missing.jpg")
    records[3].image_path = str(tmp_path / "second-missing.jpg")
    loader = pair_loader(shapes, records)
    with caplog.at_level(logging.WARNING):
        assert len(list(loader)) == 2
    assert "skipped 2 of 4 examples (2 unreadable images)" in caplog.text
    assert "first-missing.jpg" in caplog.text and "second-missing.jpg" in caplog.text
