"""``sau``: the command line of SAU Lab.

    sau attack   --dataset digits --attack badnets --model small_cnn --out runs/badnets
    sau evaluate --checkpoint runs/badnets
    sau purify   --checkpoint runs/badnets --out runs/badnets-sau [--rounds 20 ...]
    sau demo     (attack then purify on the embedded digits, under a minute on a laptop CPU;
                  --preset blended | sig | wanet | blended_small | blended_resnet for the others)
    sau list     (registered data sets, models and attacks)

Bad flags and missing files give one clear message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path

__all__ = ["main"]

EXIT_USAGE = 2
MAX_INT = 2**63 - 1  # integer flags beyond this cannot be seeds or counts


class CLIError(Exception):
    pass


# --------------------------------------------------------------------------- flag helpers
def finite_float(text: str) -> float:
    """argparse type: a finite float (``nan``, ``inf`` and ``1e999`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def bounded_int(text: str) -> int:
    """argparse type: an int that fits in 64 bits (seeds and counts; bounds are checked later)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if abs(value) > MAX_INT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_INT} in size, got {text[:40]}")
    return value


def _check_out(out: str | Path) -> None:
    """Refuse an --out that is an existing file before any work is done."""
    path = Path(out)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise CLIError(f"--out {out}: {p} is a file, not a directory")
            break


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, prefix: str = "", skip=()) -> None:
    """One ``--flag`` per dataclass field, help and bounds from the field's metadata."""
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        meta = dict(f.metadata)
        default = f.default if f.default is not MISSING else None
        helptext = meta.get("help", "")
        if "min" in meta or "max" in meta:
            helptext += f" [{meta.get('min', '')}..{meta.get('max', '')}]"
        helptext += f" (default: {default})"
        kwargs = {"dest": prefix + f.name, "default": None, "help": helptext}
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        typ = {"int": bounded_int, "float": finite_float, "str": str}.get(str(f.type), str)
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        parser.add_argument(
            flag, type=typ, metavar=f.name.upper() if "choices" not in meta else None, **kwargs
        )


def _dataclass_overrides(args: argparse.Namespace, cls, prefix: str = "") -> dict:
    out = {}
    for f in fields(cls):
        value = getattr(args, prefix + f.name, None)
        if value is not None:
            out[f.name] = value
    return out


def _parse_params(items: list[str] | None) -> dict:
    """``--param size=4 --param location=top-left`` -> {"size": 4, "location": "top-left"}."""
    params = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--param expects NAME=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip().replace("-", "_")] = value
    return params


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset", default="digits", help="registered data set (see `sau list`; default: digits)"
    )
    g.add_argument(
        "--data-root",
        default=None,
        help="folder holding the data set's files (not needed for digits)",
    )
    g.add_argument(
        "--download", action="store_true", help="download the data set when missing and online"
    )
    g.add_argument(
        "--resolution",
        type=bounded_int,
        default=None,
        help="image size: digits 8/16/32 (default 16), others resize",
    )
    g.add_argument(
        "--split-seed",
        type=bounded_int,
        default=0,
        help="seed of the digits train/test split (default: 0)",
    )


def _add_attack_flags(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("attack")
    g.add_argument(
        "--attack",
        default="badnets" if required else None,
        help="badnets, blended, sig or wanet (see `sau list`)"
        + ("" if required else "; omit for an unknown trigger"),
    )
    g.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="attack parameter, repeatable: e.g. --param size=4 --param alpha=0.1",
    )
    g.add_argument(
        "--target",
        type=bounded_int,
        default=None,
        help="target class (default: 0, or the checkpoint's)",
    )
    g.add_argument(
        "--label-rule",
        choices=["all2one", "all2all"],
        default=None,
        help="all2one (default) or all2all: y -> (y+1) mod K",
    )
    g.add_argument(
        "--poison-ratio",
        type=finite_float,
        default=None,
        help="share of training images poisoned (default: 0.1)",
    )
    g.add_argument("--attack-seed", type=bounded_int, default=None, help="seed of the poisoned indices and trigger (default: 0)")  # fmt: skip


def _data_spec(args):
    from .pipeline import DataSpec

    kwargs = {}
    if args.dataset == "digits":
        kwargs["resolution"] = args.resolution or 16
        kwargs["seed"] = args.split_seed
    elif args.resolution is not None:
        kwargs["resolution"] = args.resolution
    return DataSpec(args.dataset, args.data_root, kwargs)


def _attack_spec(args, base: dict | None = None):
    from .attacks import AttackSpec

    d = dict(base or {})
    if args.attack is not None:
        if base and args.attack != base.get("name"):
            d = {}
        d["name"] = args.attack
    if not d:
        return None
    params = _parse_params(args.param)
    if params:
        d["params"] = {**d.get("params", {}), **params}
    for key, value in (("target", args.target), ("label_rule", args.label_rule),
                       ("poison_ratio", args.poison_ratio), ("seed", args.attack_seed)):  # fmt: skip
        if value is not None:
            d[key] = value
    return AttackSpec.from_dict(d)


class _Progress:
    """Progress lines on stderr (the library never prints; the CLI does)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, event) -> None:
        if self.quiet:
            return
        name = type(event).__name__
        if name == "Started":
            print(f"[{event.job}] {event.total_steps} steps on {event.device}", file=sys.stderr)
        elif name == "TrainEpoch":
            extra = "" if event.acc is None else f" acc {event.acc:.3f}"
            extra += "" if event.asr is None else f" asr {event.asr:.3f}"
            print(f"[train] epoch {event.epoch}/{event.epochs} loss {event.loss:.4f}{extra} "
                  f"eta {event.eta:.0f}s", file=sys.stderr)  # fmt: skip
        elif name == "SAURound":
            extra = "" if event.asr is None else f" asr {event.asr:.3f} ra {event.ra:.3f}"
            print(f"[sau] round {event.round}/{event.rounds} acc {event.acc:.3f}{extra} "
                  f"shared {event.shared}/{event.n} eta {event.eta:.0f}s", file=sys.stderr)  # fmt: skip


def _fmt(v) -> str:
    return "  -  " if v is None else f"{v:.4f}"


# ------------------------------------------------------------------------------ commands
def cmd_list(args) -> int:
    from .attacks import ATTACKS
    from .data import DATASETS
    from .models import MODELS

    print("data sets: " + ", ".join(DATASETS))
    print("models:")
    for name, entry in MODELS.items():
        print(f"  {name:16s} {entry.help}")
    print("attacks:")
    for name, entry in ATTACKS.items():
        print(f"  {name:16s} {entry.help}")
    return 0


def cmd_attack(args) -> int:
    from .pipeline import plant_backdoor, write_attack_outputs
    from .train import TrainConfig, default_train_config

    _check_out(args.out)
    data = _data_spec(args)
    spec = _attack_spec(args)
    config = default_train_config(args.dataset, **_dataclass_overrides(args, TrainConfig))
    split = data.load(download=args.download)
    run = plant_backdoor(
        split, spec, args.model, config, device=args.device, callback=_Progress(args.quiet)
    )
    metrics = write_attack_outputs(args.out, run, data, config)
    print(f"backdoored {args.model} on {args.dataset} with {spec.name}: "
          f"ACC {metrics['acc']:.4f}  ASR {metrics['asr']:.4f}  RA {metrics['ra']:.4f}  "
          f"({metrics['train_seconds']:.1f} s) -> {args.out}")  # fmt: skip
    return 0


def _load(args):
    from .checkpoint import load_checkpoint
    from .pipeline import DataSpec

    ckpt = load_checkpoint(args.checkpoint, device="cpu")
    if "data" in ckpt.meta:
        data = DataSpec.from_dict(ckpt.meta["data"])
    else:
        data = DataSpec(ckpt.info.name, None, dict(ckpt.info.params))
    if args.data_root is not None:
        data = DataSpec(data.name, args.data_root, data.kwargs)
    split = data.load(download=args.download)
    if split.info.shape != ckpt.info.shape or split.info.num_classes != ckpt.info.num_classes:
        raise CLIError(f"the checkpoint expects {ckpt.info.shape} images and {ckpt.info.num_classes} "
                       f"classes, the data set gives {split.info.shape} and {split.info.num_classes}")  # fmt: skip
    return ckpt, split


def cmd_evaluate(args) -> int:
    from .metrics import evaluate
    from .pipeline import backdoor_for

    ckpt, split = _load(args)
    spec = _attack_spec(args, ckpt.meta.get("attack"))
    ev = evaluate(ckpt.model, split.test.x, split.test.y, backdoor_for(split, spec),
                  num_classes=split.info.num_classes)  # fmt: skip
    d = ev.to_dict()
    out = {"acc": ev.acc, "asr": ev.asr, "ra": ev.ra, "per_class_asr": d["per_class_asr"],
           "off_target": d["off_target"], "attack": None if spec is None else spec.to_dict()}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{ckpt.meta['arch']} on {split.info.name}: ACC {_fmt(ev.acc)}  ASR {_fmt(ev.asr)}  RA {_fmt(ev.ra)}"
        )
    return 0


def cmd_purify(args) -> int:
    from .pipeline import purify_checkpoint, write_purify_outputs
    from .sau import SAUConfig, default_sau_config

    _check_out(args.out)
    ckpt, split = _load(args)
    spec = None if args.unknown_trigger else _attack_spec(args, ckpt.meta.get("attack"))
    config = default_sau_config(split.info.name, **_dataclass_overrides(args, SAUConfig))
    result = purify_checkpoint(ckpt, split, config, clean_ratio=args.clean_ratio, clean_seed=args.clean_seed,
                               balanced=args.clean_balanced, spec=spec, device=args.device,
                               callback=_Progress(args.quiet))  # fmt: skip
    metrics = write_purify_outputs(args.out, result, ckpt, clean_ratio=args.clean_ratio,
                                   clean_seed=args.clean_seed, spec=spec)  # fmt: skip
    _print_table(metrics)
    _print_caveats(result.history, metrics)
    print(
        f"purified in {result.elapsed:.1f} s ({result.rounds_done} rounds on {result.device}) -> {args.out}"
    )
    return 0


def _print_table(metrics: dict) -> None:
    b, a = metrics["before"], metrics["after"]
    print("            ACC     ASR     RA")
    print(f"  before  {_fmt(b['acc'])}  {_fmt(b['asr'])}  {_fmt(b['ra'])}")
    print(f"  after   {_fmt(a['acc'])}  {_fmt(a['asr'])}  {_fmt(a['ra'])}")
    if metrics.get("der") is not None:
        print(
            f"  DER     {metrics['der']:.4f}   (0.5 = no change, 1 = backdoor gone at no ACC cost)"
        )


def _print_caveats(history, metrics: dict) -> None:
    from .pipeline import landing_summary, run_caveats, trigger_caveats

    landing = landing_summary(history)
    if landing is not None:
        print(f"  {landing}")
    for note in run_caveats(history) + trigger_caveats(metrics.get("after")):
        print(f"note: {note}", file=sys.stderr)


def cmd_demo(args) -> int:
    from .checkpoint import load_checkpoint
    from .pipeline import (
        TEACHING_PRESETS,
        plant_backdoor,
        purify_checkpoint,
        write_attack_outputs,
        write_purify_outputs,
    )
    from .sau import SAUConfig

    preset = TEACHING_PRESETS[args.preset]
    setup = preset.setup
    out = Path(args.out)
    t0 = time.perf_counter()
    progress = _Progress(args.quiet)
    split = setup.data.load()
    sau_config = (
        setup.sau
        if args.rounds is None
        else SAUConfig(**{**setup.sau.to_dict(), "rounds": args.rounds})
    ).validate()
    _check_out(out)  # both before the training: a bad setting or --out costs nothing
    res = setup.data.kwargs["resolution"]
    print(f"SAU Lab demo ({preset.title}): {setup.attack.name} on digits {res}x{res}, "
          f"{setup.arch}, then SAU with {sau_config.rounds} rounds on {setup.clean_ratio:.0%} "
          "clean data", file=sys.stderr)  # fmt: skip
    run = plant_backdoor(
        split, setup.attack, setup.arch, setup.train, device=args.device, callback=progress
    )
    write_attack_outputs(out / "attack", run, setup.data, setup.train)
    ckpt = load_checkpoint(out / "attack")
    result = purify_checkpoint(ckpt, split, sau_config, clean_ratio=setup.clean_ratio,
                               spec=setup.attack, device=args.device, callback=progress)  # fmt: skip
    metrics = write_purify_outputs(out / "purified", result, ckpt, clean_ratio=setup.clean_ratio,
                                   clean_seed=0, spec=setup.attack)  # fmt: skip
    _print_table(metrics)
    _print_caveats(result.history, metrics)
    print(f"done in {time.perf_counter() - t0:.1f} s; outputs in {out}/attack and {out}/purified")
    return 0


# -------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .pipeline import TEACHING_PRESETS
    from .sau import SAUConfig
    from .train import TrainConfig

    parser = argparse.ArgumentParser(prog="sau", description="SAU Lab: plant backdoors in image "
                                     "classifiers and remove them with Shared Adversarial Unlearning.")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p):
        p.add_argument(
            "--device",
            default=None,
            help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N, mps",
        )
        p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    p = sub.add_parser("list", help="list data sets, models and attacks")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("attack", help="train a backdoored model and write its checkpoint and metrics.json",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    _add_data_flags(p)
    _add_attack_flags(p, required=True)
    p.add_argument("--model", default="small_cnn", help="architecture (see `sau list`)")
    p.add_argument("--out", required=True, help="output directory (created)")
    _add_dataclass_flags(
        p.add_argument_group("training (defaults depend on the data set)"), TrainConfig
    )
    common(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser(
        "evaluate", help="measure ACC (and ASR/RA when the trigger is known) of a checkpoint"
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or .safetensors file")
    p.add_argument(
        "--data-root", default=None, help="override the data root stored in the checkpoint"
    )
    p.add_argument("--download", action="store_true", help="download the data set when missing")
    _add_attack_flags(p, required=False)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("purify", help="run SAU on a checkpoint; write the purified checkpoint, "
                       "metrics.json and history.jsonl")  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or .safetensors file")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument(
        "--data-root", default=None, help="override the data root stored in the checkpoint"
    )
    p.add_argument("--download", action="store_true", help="download the data set when missing")
    p.add_argument(
        "--clean-ratio",
        type=finite_float,
        default=0.05,
        help="share of the training set the defender holds (default: 0.05)",
    )
    p.add_argument(
        "--clean-seed", type=bounded_int, default=0, help="seed of the clean subset (default: 0)"
    )
    p.add_argument(
        "--clean-balanced", action="store_true", help="draw the clean subset evenly over classes"
    )
    p.add_argument(
        "--unknown-trigger",
        action="store_true",
        help="ignore the stored attack: measure ACC and SAE counts only",
    )
    _add_attack_flags(p, required=False)
    _add_dataclass_flags(
        p.add_argument_group("SAU settings (defaults: the reference's)"), SAUConfig
    )
    common(p)
    p.set_defaults(func=cmd_purify)

    p = sub.add_parser(
        "demo", help="attack then purify on the embedded digits, with a before/after table"
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument(
        "--rounds", type=bounded_int, default=None, help="SAU rounds (default: the preset's)"
    )
    p.add_argument(
        "--preset",
        default="badnets",
        choices=list(TEACHING_PRESETS),
        help="a teaching preset: badnets (the demo, under a minute on a laptop CPU), blended, "
        "sig, wanet, blended_small (Blended on the small CNN, where SAU is weak), "
        "blended_resnet (Blended on PreAct-ResNet10: a few minutes); default badnets",
    )
    common(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .data import DataUnavailable

    try:
        return args.func(args)
    except (CLIError, ValueError, DataUnavailable, CheckpointError, OSError) as err:
        message = " ".join(str(err).split())  # one line, bounded
        if len(message) > 500:
            message = message[:500] + " ..."
        print(f"sau {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"sau {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
