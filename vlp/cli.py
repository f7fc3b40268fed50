"""The ``vlp`` command. Handlers import their modules lazily so ``vlp --help`` stays fast."""

from __future__ import annotations

import argparse
import sys


def _cmd_data_synth(args: argparse.Namespace) -> None:
    from vlp.data.synthetic import SynthConfig, write_shapes_world
    from vlp.train.state import prepare_out_dir

    config = SynthConfig(num_images=args.images, seed=args.seed, image_size=args.image_size)
    config.validate()
    summary = write_shapes_world(config, prepare_out_dir(args.out), overwrite=args.overwrite)
    print(format_synth_summary(summary))


def format_synth_summary(summary) -> str:
    """One line per part of a :class:`vlp.data.synthetic.WorldSummary`: what was written, how much, where."""
    images, vqa, gqa, nlvr2, snli = summary.images, summary.vqa, summary.gqa, summary.nlvr2, summary.snli_ve
    regions, tokenizer = summary.regions, summary.tokenizer
    splits = ", ".join(f"{name} {count}" for name, count in images.splits.items())
    return "\n".join(
        (
            f"images: {images.count} ({splits}) -> {images.folder}",
            f"captions: {summary.captions.captions} for {summary.captions.images} images "
            f"-> {summary.captions.path}",
            f"vqa: {vqa.questions['train2014']} train2014 + {vqa.questions['val2014']} val2014 questions, "
            f"{vqa.answers_per_question} answers each -> {vqa.folder}",
            f"gqa: {gqa.questions['train']} train + {gqa.questions['val']} val questions, "
            f"{gqa.images} images linked -> {gqa.folder}",
            f"nlvr2: {nlvr2.pairs['train']} train pairs / {nlvr2.sentences['train']} sentences, "
            f"{nlvr2.pairs['dev']} dev pairs / {nlvr2.sentences['dev']} sentences -> {nlvr2.folder}",
            f"snli-ve: {snli.pairs['train']} train + {snli.pairs['dev']} dev + {snli.pairs['test']} test "
            f"pairs, {snli.images} images linked -> {snli.folder}",
            f"regions: {regions.images} images, {regions.boxes} boxes, {regions.feature_dim}-d features "
            f"-> {regions.path}",
            f"tokenizer: WordPiece, {tokenizer.vocab_size} tokens from {tokenizer.texts} texts "
            f"-> {tokenizer.folder}",
            f"readme: what each part holds -> {summary.readme}",
        )
    )


def _cmd_data_tokenizer(args: argparse.Namespace) -> None:
    from vlp.data.formats.karpathy import read_karpathy
    from vlp.data.tokenizer import train_wordpiece

    records = read_karpathy(args.captions, images_root=args.images_root or ".", split="all")
    texts = [caption for record in records for caption in record.captions]
    tokenizer = train_wordpiece(texts, args.out, vocab_size=args.vocab_size)
    print(f"trained a WordPiece tokenizer of {len(tokenizer)} tokens on {len(texts)} captions -> {args.out}")


def _cmd_data_pack(args: argparse.Namespace) -> None:
    from vlp.data.formats.karpathy import read_karpathy
    from vlp.data.formats.webdataset import write_shards
    from vlp.train.state import prepare_out_dir

    records = read_karpathy(args.captions, images_root=args.images_root, split=args.split)
    records = _packable(records, args)
    summary = write_shards(records, prepare_out_dir(args.out), samples_per_shard=args.samples_per_shard)
    print(summary)


def _packable(records: list, args: argparse.Namespace) -> list:
    """The records whose image can be packed as it is, or re-encoded (high bit depth) so that it can; the
    others are skipped with a warning naming the first few. None left is an error naming --images-root."""
    from vlp.data.images import check_image

    kept, problems = [], []
    for record in records:
        check = check_image(record.image_path)
        if check.problem:
            problems.append(check.problem)
            continue
        if check.reencoded is not None:
            record.image_bytes = check.reencoded
        kept.append(record)
    if not kept:
        first = f" (first: {problems[0]})" if problems else ""
        raise ValueError(
            f"--images-root {args.images_root}: none of the {len(records)} images of split {args.split!r} in "
            f"{args.captions} can be read there{first}; check --images-root"
        )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        print(f"warning: skipping {len(problems)} unreadable image(s): {shown}", file=sys.stderr)
    return kept


def _cmd_model_info(args: argparse.Namespace) -> None:
    from vlp.config import load_config
    from vlp.models import build_model, parameter_table

    config = load_config(args.preset, args.overrides)
    model = build_model(config.model, vocab_size=args.vocab_size, meta_only=True)
    print(parameter_table(model))


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from vlp.config import load_config
    from vlp.pretrain import pretrain

    config = load_config(args.config, args.overrides)
    result = pretrain(config, args.out, resume=args.resume)
    print(f"done: {args.out}/final after step {result.get('step')}")
    for key in sorted(k for k in result if k != "step"):
        print(f"  {key:<28} {result[key]:.4f}")


def _format_metrics(metrics: dict, indent: str = "  ") -> list[str]:
    lines = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.extend(_format_metrics(value, indent + "  "))
        elif isinstance(value, float):
            lines.append(f"{indent}{key:<26} {value:.2f}")
        else:
            lines.append(f"{indent}{key:<26} {value}")
    return lines


def _cmd_finetune(args: argparse.Namespace) -> None:
    from vlp.runs.finetune import FinetuneRequest, finetune

    request = FinetuneRequest(
        task=args.task, init=args.init, out=args.out, data=args.data, images=args.images or "",
        train_split=args.train_split or "", val_split=args.val_split or "", preset=args.config or "",
        overrides=tuple(args.overrides) + ((f"task.captions={args.captions}",) if args.captions else ()),
        resume=args.resume,
    )  # fmt: skip
    result = finetune(request)
    print(f"done: {args.out}/best (best on val) and {args.out}/final after step {result.get('step')}")
    for key in sorted(k for k in result if k != "step" and not k.startswith("train/")):
        print(f"  {key:<34} {result[key]:.4f}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from vlp.runs.evaluate import EvaluateRequest, run_evaluation

    request = EvaluateRequest(
        checkpoint=args.checkpoint, data=args.data, split=args.split, images=args.images or "",
        task=args.task or "", predictions=args.predictions or "", metrics=args.metrics or "",
        examples=args.examples or "", batch_size=args.batch_size, device=args.device or "",
        captions=args.captions or "", k=args.k,
    )  # fmt: skip
    outcome = run_evaluation(request)
    result = outcome.evaluation
    if outcome.task == "retrieval":
        print(
            f"retrieval {outcome.split}: {len(result.paths)} images x {len(result.captions)} captions ranked "
            f"both ways in {result.seconds:.1f} s"
        )
    else:
        print(
            f"{outcome.task} {outcome.split}: {outcome.records} examples, {len(result.predictions)} "
            f"predicted in {result.seconds:.1f} s ({result.items_per_s:.0f}/s)"
        )
    if result.metrics:
        print("\n".join(_format_metrics(result.metrics)))
    else:
        print("  (the split has no answers: no metrics; the result file has one entry per example)")
    for path in outcome.written:
        print(f"wrote {path}")


def _cmd_predict(args: argparse.Namespace) -> None:
    from vlp.inference import load_predictor

    predictor = load_predictor(args.checkpoint, device=args.device or "cpu")
    images, texts = args.image or [], args.text or []
    if args.question is not None:
        if len(images) != 1:
            raise ValueError("vlp predict --question: give exactly one --image")
        print(f"Q: {args.question}")
        for answer, score in predictor.answer(images[0], args.question, top_k=args.top_k):
            print(f"  {score:7.4f}  {answer}")
    elif args.texts or args.images:
        _predict_retrieval(predictor, args)
    elif texts and images:
        if predictor.task in ("nlvr2", "snli_ve"):
            group = tuple(images) if predictor.task == "nlvr2" else images[0]
            for text, labels in zip(texts, predictor.classify([group] * len(texts), texts), strict=True):
                print(f"{text}\n" + "\n".join(f"  {score:7.4f}  {label}" for label, score in labels))
        else:
            if len(images) != 1:
                raise ValueError("vlp predict --text: give exactly one --image to match the texts against")
            for text, probability in zip(texts, predictor.match(images[0], texts), strict=True):
                print(f"  {probability:7.4f}  {text}")
    else:
        raise ValueError(
            "vlp predict: give --image with --question, --text (match) or --texts FILE (rank captions), "
            "or --text with --images DIR (rank images)"
        )


def _cmd_demo(args: argparse.Namespace) -> None:
    from vlp.runs.demo import DemoRequest, format_paths, format_table, run_demo

    request = DemoRequest(
        out=args.out, family=args.family, scale=args.scale, images=args.images, seed=args.seed,
        tasks=tuple(t for t in args.tasks.split(",") if t), pretrain_steps=args.pretrain_steps,
        finetune_steps=args.finetune_steps, question_only=not args.no_question_only, progress=not args.quiet,
    )  # fmt: skip
    result = run_demo(request)
    print(format_table(result.rows))
    print(f"\nfiles (the table also in {args.out}/demo.md and demo.json):")
    print(format_paths(result.paths))
    print(f"done in {result.seconds / 60:.1f} min")


def _predict_retrieval(predictor, args: argparse.Namespace) -> None:
    """Rank the captions of --texts FILE for one --image, or the images in --images DIR for one --text."""
    from pathlib import Path

    from vlp.inference import IMAGE_SUFFIXES
    from vlp.tasks.retrieval import Gallery

    if args.texts:
        if len(args.image or []) != 1:
            raise ValueError("vlp predict --texts: give exactly one --image (the query)")
        query = args.image[0]
        path = Path(args.texts)
        if not path.is_file():
            raise FileNotFoundError(f"--texts {path}: no such file (one caption per line expected)")
        candidates = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        if len(args.text or []) != 1:
            raise ValueError("vlp predict --images: give exactly one --text (the query)")
        query = args.text[0]
        folder = Path(args.images)
        if not folder.is_dir():
            raise FileNotFoundError(f"--images {folder}: not a directory")
        candidates = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not candidates:
        raise ValueError(f"no candidates in {args.texts or args.images}")
    if args.index and Path(args.index).is_file():
        gallery = Gallery.load(args.index)
        print(f"index: {len(gallery)} {gallery.kind}s from {args.index}")
    else:
        gallery = predictor.index(candidates)
        if args.index:
            gallery.save(args.index)
            print(f"index: {len(gallery)} {gallery.kind}s encoded -> {args.index}")
    print(f"query: {query}")
    for rank, (key, score) in enumerate(predictor.retrieve(query, gallery, k=args.top_k), start=1):
        print(f"  {rank:2d}. {score:8.4f}  {key}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlp", description="Vision-language pre-training: ViLTA and SemVLP."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="datasets: synthesize, pack, train a tokenizer")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    synth = data_commands.add_parser("synth", help="write the built-in shapes world in the public formats")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--images", type=int, default=2000, help="number of images (default 2000)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=64, help="side of the square images in pixels")
    synth.add_argument("--overwrite", action="store_true", help="write into a directory that is not empty")
    synth.set_defaults(handler=_cmd_data_synth)

    tok = data_commands.add_parser("tokenizer", help="train a WordPiece tokenizer on a Karpathy caption file")
    tok.add_argument("--captions", required=True, help="a Karpathy dataset_*.json")
    tok.add_argument("--images-root", default="", help="unused for training; kept for symmetry")
    tok.add_argument("--out", required=True, help="tokenizer directory to write")
    tok.add_argument("--vocab-size", type=int, default=1000)
    tok.set_defaults(handler=_cmd_data_tokenizer)

    pack = data_commands.add_parser("pack", help="write WebDataset tar shards (img2dataset layout)")
    pack.add_argument("--captions", required=True, help="a Karpathy dataset_*.json")
    pack.add_argument("--images-root", required=True)
    pack.add_argument("--split", default="train", help="train | val | test | all (default train)")
    pack.add_argument("--out", required=True, help="directory for shard-NNNNNN.tar files")
    pack.add_argument("--samples-per-shard", type=int, default=1000)
    pack.set_defaults(handler=_cmd_data_pack)

    model = commands.add_parser("model", help="models: inspect presets")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    info = model_commands.add_parser("info", help="parameters per component of a preset")
    info.add_argument("preset", help="preset name or YAML path")
    info.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    info.add_argument("--vocab-size", type=int, default=0, help="vocabulary size (0 = from the config)")
    info.set_defaults(handler=_cmd_model_info)

    pre = commands.add_parser("pretrain", help="pre-train a model")
    pre.add_argument("--config", required=True, help="preset name or YAML path")
    pre.add_argument("--out", required=True, help="run directory (checkpoints, logs)")
    pre.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    pre.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=1e-4")
    pre.set_defaults(handler=_cmd_pretrain)

    fine = commands.add_parser("finetune", help="fine-tune on a downstream task")
    fine.add_argument("task", help="vqa | gqa | nlvr2 | snli_ve | retrieval")
    fine.add_argument("--init", required=True, help="a pre-trained vlp checkpoint directory, or 'none'")
    fine.add_argument("--out", required=True, help="run directory (checkpoints, logs, best/, final/)")
    fine.add_argument("--data", required=True, help="the task's directory, laid out as released")
    fine.add_argument("--images", help="image directory (default DATA/images)")
    fine.add_argument("--train-split", help="default: the task's (vqa train2014, nlvr2/gqa/... train)")
    fine.add_argument("--val-split", help="selects the best checkpoint (default vqa val2014, nlvr2 dev, ...)")
    fine.add_argument("--captions", help="retrieval: the Karpathy file (default: the dataset_*.json in DATA)")
    fine.add_argument("--config", help="task preset (default TASK-ARCH-tiny/base from the checkpoint)")
    fine.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    fine.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=1e-4")
    fine.set_defaults(handler=_cmd_finetune)

    ev = commands.add_parser("evaluate", help="official metrics and result files of a fine-tuned model")
    ev.add_argument("--checkpoint", required=True, help="a fine-tuned checkpoint (RUN/best or RUN/final)")
    ev.add_argument("--data", required=True, help="the task's directory, laid out as released")
    ev.add_argument("--images", help="image directory (default DATA/images)")
    ev.add_argument("--split", required=True, help="e.g. val2014, test-dev2015 (vqa); val, testdev (gqa)")
    ev.add_argument("--task", help="check that the checkpoint is fine-tuned for this task")
    ev.add_argument("--predictions", help="write the official result file (JSON) here")
    ev.add_argument("--metrics", help="write the metrics (JSON) here")
    ev.add_argument("--examples", help="draw a PNG contact sheet of examples here")
    ev.add_argument("--captions", help="retrieval: the Karpathy file (default: the dataset_*.json in DATA)")
    ev.add_argument("--k", type=int, default=-1, help="retrieval: ITM re-ranks the top k (0 = all)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    ev.set_defaults(handler=_cmd_evaluate)

    pr = commands.add_parser("predict", help="answer, classify, match or retrieve with a checkpoint")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--image", action="append", help="an image file (NLVR2: give two, left then right)")
    pr.add_argument("--question", help="a question (needs a VQA/GQA checkpoint)")
    pr.add_argument("--text", action="append", help="a caption / statement / hypothesis (repeatable)")
    pr.add_argument("--texts", help="rank the captions of this file (one per line) for --image")
    pr.add_argument("--images", help="rank the images of this directory for --text")
    pr.add_argument("--index", help="retrieval: reuse the candidates encoded in this file (or write it)")
    pr.add_argument("--top-k", type=int, default=5)
    pr.add_argument("--device", help="cpu (default), cuda, ...")
    pr.set_defaults(handler=_cmd_predict)

    demo = commands.add_parser("demo", help="the whole job on the built-in shapes world, ending in a table")
    demo.add_argument("--out", default="runs/demo", help="run folder, cleared first (default runs/demo)")
    demo.add_argument("--family", default="vilta", help="vilta | semvlp (default vilta)")
    demo.add_argument("--scale", default="tiny", help="tiny | base (default tiny; base wants a GPU)")
    demo.add_argument("--images", type=int, default=2000, help="shapes world size (default 2000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--tasks", default="vqa,retrieval,nlvr2,snli_ve,gqa", help="comma-separated")
    demo.add_argument("--pretrain-steps", type=int, default=0, help="0: the presets' (text stage 150)")
    demo.add_argument("--finetune-steps", type=int, default=0, help="0: per task (VQA, NLVR2 300, else 150)")
    demo.add_argument("--no-question-only", action="store_true", help="skip the image-blanked baseline runs")
    demo.add_argument("--quiet", action="store_true", help="no progress bars, only the stage lines")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vlp.config import ConfigError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`vlp finetune vqa --init D ... train.lr=1e-4`)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        args.handler(args)
    except (ConfigError, FileNotFoundError, ValueError, OSError) as err:
        print(f"vlp: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        # a non-finite loss stops training with a message naming the step, the losses and the checkpoint;
        # a checkpoint that cannot be written or read names the file
        loop, state = sys.modules.get("vlp.train.loop"), sys.modules.get("vlp.train.state")
        if loop is not None and isinstance(err, loop.NonFiniteLossError):
            print(f"vlp: error: {err}", file=sys.stderr)
            return 3
        if state is not None and isinstance(err, state.CheckpointError):
            print(f"vlp: error: {err}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
