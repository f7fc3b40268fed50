"""The ``vlp`` command. Handlers import their modules lazily so ``vlp --help`` stays fast."""

from __future__ import annotations

import argparse
import sys


def _cmd_data_synth(args: argparse.Namespace) -> None:
    from vlp.data.synthetic import SynthConfig, write_shapes_world

    summary = write_shapes_world(
        SynthConfig(num_images=args.images, seed=args.seed, image_size=args.image_size), args.out
    )
    print(summary)


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

    records = read_karpathy(args.captions, images_root=args.images_root, split=args.split)
    summary = write_shards(records, args.out, samples_per_shard=args.samples_per_shard)
    print(summary)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    from vlp.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"vlp: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        # a non-finite loss stops training with a message naming the step, the losses and the checkpoint
        loop = sys.modules.get("vlp.train.loop")
        if loop is None or not isinstance(err, loop.NonFiniteLossError):
            raise
        print(f"vlp: error: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
