"""experiments/run.py and experiments/report.py at a toy budget: one result per (variant, seed), a rerun
that skips what is done, and the report's tables (paired differences, noise stars) and plot."""

from __future__ import annotations

import json

import torch

from experiments import report, run

TOY = ["--world-images", "100", "--text-steps", "2", "--pretrain-steps", "2", "--task-steps", "2"]


def test_an_experiment_writes_one_result_per_variant_and_seed_and_the_report_tables_them(tmp_path, capsys):
    out = tmp_path / "runs"
    run.main(
        ["vilta-ablation", "--seeds", "0,1", "--variants", "baseline,both-vilta", "--out", str(out), *TOY]
    )
    results = sorted(out.glob("vilta-ablation/*/seed*/result.json"))
    assert [p.parent.parent.name + "/" + p.parent.name for p in results] == [
        "baseline/seed0", "baseline/seed1", "both-vilta/seed0", "both-vilta/seed1",
    ]  # fmt: skip
    first = json.loads(results[0].read_text())
    assert set(first["downstream"]) == {"vqa", "retrieval_image_r1", "retrieval_text_r1", "nlvr2"}
    assert {"mlm_synonym", "mlm_exact", "itm_one_word_pairwise"} <= set(first["probes"])
    assert any(row["split"] == "train" and "mlm_acc" in row for row in first["curves"])
    assert (out / "text-stages" / "vilta-tiny-text-seed0" / "final").is_dir()
    capsys.readouterr()
    run.main(["vilta-ablation", "--seeds", "0", "--variants", "baseline", "--out", str(out), *TOY])
    assert "done before" in capsys.readouterr().out

    results_md = tmp_path / "results.md"
    results_md.write_text("# r\n<!-- results:vilta-ablation -->\n<!-- /results:vilta-ablation -->\nafter\n")
    report.main(["--runs", str(out), "--results", str(results_md), "--figures", str(tmp_path / "figures")])
    text = results_md.read_text()
    assert "| baseline | 2 |" in text and "| both (ViLTA) | 2 |" in text and text.endswith("after\n")
    assert "Difference to baseline, seed by seed" in text
    assert (tmp_path / "figures" / "vilta-ablation-curves.png").stat().st_size > 1000


def test_paired_differences_are_starred_only_beyond_twice_their_standard_error():
    assert report.difference({0: 50.0, 1: 60.0, 2: 70.0}, {0: 52.0, 1: 62.1, 2: 71.9}) == "+2.0*"
    assert report.difference({0: 50.0, 1: 60.0, 2: 70.0}, {0: 55.0, 1: 57.0, 2: 74.0}) == "+2.0"
    assert report.difference({0: 50.0}, {0: 60.0}) == "-"


def test_convergence_fine_tunes_and_probes_each_snapshot_of_one_pretraining_run(tmp_path):
    out = tmp_path / "runs"
    run.main(["convergence", "--seeds", "0", "--variants", "both-vilta", "--out", str(out), *TOY])
    seed = out / "convergence" / "both-vilta" / "seed0"
    result = json.loads((seed / "result.json").read_text())
    assert [point["step"] for point in result["by_step"]] == [1, 2]  # a quarter (rounded), half, all of 2
    assert result["downstream"] == result["by_step"][-1]["downstream"]
    assert set(result["downstream"]) == {"vqa", "retrieval_image_r1", "retrieval_text_r1"}
    assert (seed / "step-1" / "vqa" / "metrics.jsonl").is_file()
    assert (seed / "vqa" / "metrics.jsonl").is_file()
    # A snapshot is the model of that step's training checkpoint, not the final one.
    from vlp.models import checkpoint
    from vlp.train.state import load_tensors

    snapshot = checkpoint.load(seed / "pretrain" / "snapshots" / "step-1").state_dict()
    trained = load_tensors(seed / "pretrain" / "checkpoints" / "step-00000001" / "model.safetensors")
    final = checkpoint.load(seed / "pretrain" / "final").state_dict()
    assert all(torch.equal(snapshot[name], value) for name, value in trained.items())
    assert any(not torch.equal(snapshot[name], final[name]) for name in trained)

    results_md = tmp_path / "results.md"
    results_md.write_text("<!-- results:convergence -->\n<!-- /results:convergence -->\n")
    report.main(["--runs", str(out), "--results", str(results_md), "--figures", str(tmp_path / "figures")])
    text = results_md.read_text()
    assert "| both (ViLTA) | 1 | 1 |" in text and "| both (ViLTA) | 2 | 1 |" in text
    assert (tmp_path / "figures" / "convergence-by-step.png").stat().st_size > 1000


def test_precision_variants_pretrain_and_fine_tune_in_their_precision(tmp_path, monkeypatch):
    seen = []

    def pretrain(config, out):
        seen.append(("pretrain", config.train.precision))
        return real_pretrain(config, out)

    def fine_tune_task(task, *args, **kwargs):
        seen.append((task, [a for a in args if str(a).startswith("train.precision=")]))
        return real_fine_tune(task, *args, **kwargs)

    real_pretrain, real_fine_tune = run.pretrain, run.fine_tune_task
    monkeypatch.setattr(run, "pretrain", pretrain)
    monkeypatch.setattr(run, "fine_tune_task", fine_tune_task)
    out = tmp_path / "runs"
    run.main(["precision", "--seeds", "0", "--variants", "bf16", "--out", str(out), *TOY])
    # the shared text stage in the preset's precision (auto), then the variant's pre-training and fine-tuning
    assert seen == [
        ("pretrain", "auto"), ("pretrain", "bf16"),
        ("vqa", ["train.precision=bf16"]), ("retrieval", ["train.precision=bf16"]),
    ]  # fmt: skip
    assert (out / "precision" / "bf16" / "seed0" / "result.json").is_file()
