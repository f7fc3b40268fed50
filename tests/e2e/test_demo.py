"""`vlp demo`: the whole pipeline on a small shapes world with a few steps per stage (the real budget is
timed in the README): every stage's files, one table, the same table again on a second run."""

from __future__ import annotations

import json

import pytest

from vlp.cli import main
from vlp.runs.demo import MARKER

TINY = ["--images", "200", "--pretrain-steps", "4", "--finetune-steps", "4", "--quiet"]


def _demo(out, *extra) -> int:
    return main(["demo", "--out", str(out), "--tasks", "vqa,retrieval,nlvr2", *TINY, *extra])


def test_demo_runs_every_stage_and_a_second_run_gives_the_same_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert _demo(out) == 0
    printed = capsys.readouterr().out
    first = json.loads((out / "demo.json").read_text())
    assert [row["task"] for row in first["rows"]] == ["vqa", "retrieval", "nlvr2"]
    vqa, retrieval, nlvr2 = first["rows"]
    assert vqa["question_only"] is not None and vqa["majority"] is not None
    assert retrieval["question_only"] is None and retrieval["chance"] > 0
    assert nlvr2["chance"] == 50.0 and "consistency" in nlvr2["extra"]
    for folder in ("text/final", "pretrain/final", "vqa/best", "vqa-question-only", "retrieval/best"):
        assert (out / folder).is_dir(), folder
    for name in ("val2014_results.json", "val2014_metrics.json", "val2014_examples.png"):
        assert (out / "vqa" / name).is_file(), name
    assert (out / "nlvr2" / "dev_results.json").is_file()
    # vlp predict ran on one question and printed its answers; the table closes the output
    assert "$ vlp predict --checkpoint" in printed and "(the truth: " in printed
    assert (out / "demo.md").read_text().strip() in printed
    (out / "text" / "stale.txt").write_text("from an earlier run")
    assert _demo(out) == 0
    second = json.loads((out / "demo.json").read_text())
    assert second["rows"] == first["rows"]
    assert not (out / "text" / "stale.txt").exists()


def test_demo_runs_semvlp_too(tmp_path):
    out = tmp_path / "semvlp"
    assert (
        main(["demo", "--out", str(out), "--family", "semvlp", "--tasks", "vqa", "--no-question-only", *TINY])
        == 0
    )
    rows = json.loads((out / "demo.json").read_text())["rows"]
    assert [row["task"] for row in rows] == ["vqa"] and not (out / "text").exists()
    assert (out / "pretrain" / "final").is_dir() and (out / "vqa" / "val2014_results.json").is_file()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert _demo(out) == 2
    assert "holds files the demo did not write" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me" and not (out / MARKER).exists()


@pytest.mark.parametrize(
    "option, message",
    [(["--family", "clip"], "--family 'clip'"), (["--tasks", "vqa,coco"], "--tasks vqa,coco")],
)
def test_demo_names_a_bad_option(tmp_path, capsys, option, message):
    assert main(["demo", "--out", str(tmp_path / "d"), *option]) == 2
    assert message in capsys.readouterr().err
