"""``sau``: the command line of SAU Lab.

    sau attack   --dataset digits --attack badnets --out runs/badnets
    sau purify   --checkpoint runs/badnets --out runs/badnets-sau
    sau evaluate --checkpoint runs/badnets [--json]
    sau import   --weights model.pt --model wide_cnn --dataset digits --out runs/mine
    sau demo     (attack then purify on the embedded digits; --preset for the other lessons)
    sau list     (registered data sets, models and attacks)

Every default depends on the data set (:mod:`sau_core.lab.recipes`) and ``--help`` prints the ones
used. Bad flags and missing files give one clear message and exit status 2, never a traceback.
Only the command that runs imports torch, so ``sau --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import MISSING, fields, replace
from pathlib import Path

from .lab import recipes as defaults

__all__ = ["main"]

EXIT_USAGE = 2
MAX_INT = 2**63 - 1  # integer flags beyond this cannot be seeds or counts
# files that make a directory a SAU Lab output: writing over them needs --overwrite
_OUTPUT_FILES = ("model.safetensors", "checkpoint.json", "metrics.json")


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


def _check_out(out: str | Path, overwrite: bool = False, parts: tuple[str, ...] = ("",)) -> None:
    """Refuse, before any work, an ``--out`` that is a file or already holds a run (in ``out``
    itself or in its sub-folders ``parts``) unless ``overwrite``: a second command never
    silently replaces the first one's results."""
    path = Path(out)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise CLIError(f"--out {out}: {p} is a file, not a directory")
            break
    if overwrite:
        return
    for part in parts:
        folder = path / part if part else path
        taken = [f for f in _OUTPUT_FILES if (folder / f).exists()]
        if taken:
            raise CLIError(
                f"--out {out} already holds results ({folder / taken[0]}); choose another "
                "--out, or add --overwrite to replace them"
            )


def _fresh_dir(base: Path) -> Path:
    """``base`` when it does not exist yet, else ``base-2``, ``base-3``, ..."""
    if not base.exists():
        return base
    n = 2
    while base.with_name(f"{base.name}-{n}").exists():
        n += 1
    return base.with_name(f"{base.name}-{n}")


def _add_dataclass_flags(parser, cls, part: str, skip=()) -> None:
    """One ``--flag`` per dataclass field: help and bounds from the field's metadata, and the
    default the data set's recipe uses (:func:`sau_core.lab.recipes.default_value`)."""
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        own = f.default if f.default is not MISSING else None
        helptext = meta.get("help", "")
        if "min" in meta or "max" in meta:
            helptext += f" [{meta.get('min', '')}..{meta.get('max', '')}]"
        helptext += f" (default: {defaults.default_value(part, f.name, own)})"
        kwargs = {"dest": f.name, "default": None, "help": helptext.replace("%", "%%")}
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        typ = {"int": bounded_int, "float": finite_float, "str": str}.get(str(f.type), str)
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        parser.add_argument(
            flag, type=typ, metavar=f.name.upper() if "choices" not in meta else None, **kwargs
        )


def _dataclass_overrides(args: argparse.Namespace, cls) -> dict:
    out = {}
    for f in fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            out[f.name] = value
    return out


def _parse_params(items: list[str] | None, flag: str = "--param") -> dict:
    """``--param size=4 --param location=top-left`` -> {"size": 4, "location": "top-left"}."""
    params = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"{flag} expects NAME=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip().replace("-", "_")] = value
    return params


def _floats(text: str) -> tuple[float, ...]:
    """argparse type: one finite float per channel, comma-separated (``0.5`` or ``0.49,0.48,0.45``)."""
    return tuple(finite_float(part) for part in text.split(","))


def _add_data_flags(p: argparse.ArgumentParser, *, checkpoint: bool) -> None:
    """The data set flags; for a checkpoint they override what its sidecar says."""
    g = p.add_argument_group(
        "data" + (" (default: what the checkpoint's checkpoint.json says)" if checkpoint else "")
    )
    g.add_argument(
        "--dataset",
        default=None,
        help="registered data set, see `sau list`"
        + (" (needed for bare weights)" if checkpoint else " (default: digits)"),
    )
    g.add_argument(
        "--data-root",
        default=None,
        help="folder holding the data set's files (default: data/; not needed for digits)",
    )
    g.add_argument(
        "--download", action="store_true", help="download the data set when missing and online"
    )
    g.add_argument(
        "--resolution",
        type=bounded_int,
        default=None,
        help="image size in pixels: digits 8, 16 or 32 (default: 16); others are resized",
    )
    g.add_argument(
        "--split-seed",
        type=bounded_int,
        default=None,
        help="seed of the digits train/test split (default: 0)",
    )


def _add_attack_flags(p: argparse.ArgumentParser, *, known: bool) -> None:
    """The trigger flags: a registered attack with its parameters, or your own image and mask."""
    g = p.add_argument_group(
        "trigger" + ("" if known else " (default: the checkpoint's; omit for an unknown trigger)")
    )
    g.add_argument(
        "--attack",
        default=None,
        help="registered attack, see `sau list`" + (" (default: badnets)" if known else ""),
    )
    g.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="attack parameter, repeatable: e.g. --param size=3 --param location=top-left "
        "--param pattern=checker",
    )
    g.add_argument(
        "--trigger-image",
        metavar="PNG",
        default=None,
        help="your own trigger's pixels (a PNG at the data's image size; transparency = the mask)",
    )
    g.add_argument(
        "--trigger-mask",
        metavar="PNG",
        default=None,
        help="where your trigger goes: a grey PNG, white = the trigger, black = the image",
    )
    g.add_argument(
        "--trigger-alpha",
        type=finite_float,
        default=None,
        help="strength of your trigger: 1 stamps it (default), below 1 blends it in",
    )
    g.add_argument(
        "--target",
        type=bounded_int,
        default=None,
        help="target class (default: 0" + ("" if known else ", or the checkpoint's") + ")",
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
    g.add_argument("--attack-seed", type=bounded_int, default=None,
                   help="seed of the poisoned indices and trigger (default: 0)")  # fmt: skip


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default=None,
        help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N, mps",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _data_spec(args, base=None):
    """The data set: the flags over ``base`` (a checkpoint's DataSpec), over the recipe."""
    from .data import DataSpec

    name = args.dataset or (base.name if base is not None else "digits")
    same = base is not None and base.name == name
    kwargs = dict(base.kwargs) if same else dict(defaults.recipe(name).data)
    if name == "digits":
        if args.resolution is not None:
            kwargs["resolution"] = args.resolution
        if args.split_seed is not None:
            kwargs["seed"] = args.split_seed
    else:
        if args.split_seed is not None:
            raise CLIError("--split-seed applies to digits only (the others have fixed splits)")
        if args.resolution is not None:
            kwargs["resolution"] = args.resolution
    root = args.data_root if args.data_root is not None else (base.root if same else None)
    return DataSpec(name, root, kwargs)


def _read_trigger(path: str, flag: str) -> str:
    from .attacks import trigger_uri

    p = Path(path).expanduser()
    if not p.is_file():
        raise CLIError(f"{flag} {path}: no such file")
    return trigger_uri(p.read_bytes(), f"{flag} {p.name}")


def _attack_spec(args, base: dict | None = None, info=None):
    """The trigger the flags describe, over ``base`` (a checkpoint's attack block); None when
    neither names one (an unknown trigger). With ``info`` (the data set's geometry) it is also
    checked against the data."""
    from .attacks import AttackSpec

    custom = args.trigger_image is not None or args.trigger_mask is not None
    if custom and args.attack not in (None, "custom"):
        raise CLIError(f"--trigger-image/--trigger-mask give your own trigger; drop --attack {args.attack}")  # fmt: skip
    if args.trigger_mask is not None and args.trigger_image is None:
        raise CLIError("--trigger-mask needs --trigger-image (the trigger's pixels)")
    name = "custom" if custom else args.attack
    d = dict(base or {})
    if name is not None:
        if base and name != base.get("name"):
            d = {k: v for k, v in d.items() if k == "target"}  # a new trigger, the same target
        d["name"] = name
        if name != (base or {}).get("name"):
            d["params"] = {}
    if not d:
        given = [flag for flag, value in (("--param", args.param),
                 ("--trigger-alpha", args.trigger_alpha), ("--target", args.target),
                 ("--label-rule", args.label_rule), ("--poison-ratio", args.poison_ratio),
                 ("--attack-seed", args.attack_seed)) if value is not None]  # fmt: skip
        if given:
            raise CLIError(f"{', '.join(given)} describe a trigger: name it with --attack "
                           "(or --trigger-image)")  # fmt: skip
        return None
    params = _parse_params(args.param)
    if custom:
        params["image"] = _read_trigger(args.trigger_image, "--trigger-image")
        if args.trigger_mask is not None:
            params["mask"] = _read_trigger(args.trigger_mask, "--trigger-mask")
    if args.trigger_alpha is not None:
        params["alpha"] = args.trigger_alpha
    if d.get("name") == "custom":  # file paths given as --param become part of the spec
        for key in ("image", "mask"):
            value = params.get(key)
            if isinstance(value, str) and value and not value.startswith("data:"):
                params[key] = _read_trigger(value, f"--param {key}")
    if params:
        d["params"] = {**d.get("params", {}), **params}
    for key, value in (("target", args.target), ("label_rule", args.label_rule),
                       ("poison_ratio", args.poison_ratio), ("seed", args.attack_seed)):  # fmt: skip
        if value is not None:
            d[key] = value
    spec = AttackSpec.from_dict(d)
    if info is not None:
        spec.validate(info)
    return spec


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
        elif name == "DefenseRound":
            extra = "" if event.asr is None else f" asr {event.asr:.3f} ra {event.ra:.3f}"
            losses = " ".join(f"{k} {v:.3f}" for k, v in event.losses.items())
            print(f"[{event.defense}] round {event.round}/{event.rounds} acc {event.acc:.3f}{extra} "
                  f"{losses} eta {event.eta:.0f}s", file=sys.stderr)  # fmt: skip


class _ProbeWriter:
    """Passes events on, and keeps SAU's probe snapshots (its shared adversarial examples, every
    round) as a dashboard run does, for the Gallery and ``sau probe``'s trigger recovery. They
    are written aside and only replace ``OUT/probes/`` (and drop an earlier ``OUT/probe/``
    verdict, which was about the model replaced) once the defence's outputs are written."""

    def __init__(self, out: Path, then) -> None:
        import shutil

        self.out, self.then = out, then
        self.folder = out / ".probes.partial"
        shutil.rmtree(self.folder, ignore_errors=True)  # what a failed run left

    def __call__(self, event) -> None:
        if type(event).__name__ == "ProbeSnapshot":
            from .serving.runs import save_probe

            save_probe(self.folder / f"round_{event.round:04d}.safetensors", event)
        self.then(event)

    def commit(self) -> None:
        import shutil

        from .probe import PROBE_DIR

        shutil.rmtree(self.out / PROBE_DIR, ignore_errors=True)
        shutil.rmtree(self.out / "probes", ignore_errors=True)
        if self.folder.is_dir():
            self.folder.rename(self.out / "probes")


def _fmt(v) -> str:
    return "  -  " if v is None else f"{v:.4f}"


def _warn(notes: list[str]) -> None:
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)


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
    from .defenses import DEFENSES

    print("defences (`sau purify --defense NAME`, settings with --set KEY=VALUE):")
    for name, entry in DEFENSES.items():
        settings = ", ".join(f.name for f in fields(entry.config))
        print(f"  {name:16s} {entry.title} ({entry.paper.venue}). Settings: {settings}")
    return 0


def cmd_attack(args) -> int:
    from .defenses.sau import default_sau_config
    from .lab.caveats import sau_caveats, train_caveats
    from .models import MODELS
    from .pipeline import plant_backdoor, write_attack_outputs
    from .train import TrainConfig, default_train_config

    _check_out(args.out, args.overwrite)
    data = _data_spec(args)
    spec = _attack_spec(args, {"name": "badnets"})
    arch = args.model or defaults.recipe(data.name).arch
    if arch not in MODELS:
        raise CLIError(f"unknown model {arch!r}; choose from {', '.join(MODELS)}")
    config = default_train_config(data.name, **_dataclass_overrides(args, TrainConfig))
    split = data.load(download=args.download)
    spec.validate(split.info)
    clean_n = round(defaults.recipe(data.name).clean_ratio * len(split.train))
    _warn(train_caveats(data, config) + sau_caveats(data, clean_n, default_sau_config(data.name),
                                                    spec.name, arch))  # fmt: skip
    run = plant_backdoor(
        split, spec, arch, config, device=args.device, callback=_Progress(args.quiet)
    )
    metrics = write_attack_outputs(args.out, run, data, config)
    print(f"backdoored {arch} on {data.name} with {spec.name}: "
          f"ACC {metrics['acc']:.4f}  ASR {metrics['asr']:.4f}  RA {metrics['ra']:.4f}  "
          f"({metrics['train_seconds']:.1f} s) -> {args.out}")  # fmt: skip
    return 0


def _load(args):
    """The checkpoint and its data set. The flags (--model, --dataset, ...) win over the
    sidecar; bare weights need --model and --dataset."""
    from .io.checkpoint import load_checkpoint, sidecar_of

    path = Path(args.checkpoint)
    side = sidecar_of(path)
    base = None if side is None else side.data_spec()
    missing = [f for f, v in (("--model", args.model or (side and side.arch)),
                              ("--dataset", args.dataset or base)) if not v]  # fmt: skip
    if missing:
        raise CLIError(
            f"{path.name} has no checkpoint.json beside it: name its {' and '.join(missing)} "
            "(`sau list` shows them), e.g. --model wide_cnn --dataset digits --resolution 16; "
            "`sau import` writes a checkpoint that needs no flags"
        )
    data = _data_spec(args, base)
    split = data.load(download=args.download)
    saved = None if side is None else side.dataset
    same = saved is not None and (args.dataset is None or args.dataset == base.name)
    if same and (tuple(saved.shape) != tuple(split.info.shape)
                 or saved.num_classes != split.info.num_classes):  # fmt: skip
        raise CLIError(
            f"the checkpoint expects {saved.num_classes} classes of {tuple(saved.shape)} "
            f"images, the data set gives {split.info.num_classes} of {tuple(split.info.shape)}"
        )
    ckpt = load_checkpoint(path, arch=args.model, info=split.info, device="cpu",
                           mean=args.mean, std=args.std, label="--mean and --std")  # fmt: skip
    info = ckpt.info
    if (
        ckpt.normalization == "data set"
        and args.mean is None
        and args.std is None
        and not getattr(args, "quiet", False)
    ):
        print(f"note: {path.name} holds the bare network, so SAU Lab normalises its inputs with "
              f"the data set's mean {_short(info.mean)} and std {_short(info.std)}. If your model "
              "was trained with others, give them with --mean and --std (a wrong pair shows as a "
              "low ACC).", file=sys.stderr)  # fmt: skip
    ckpt.sidecar = replace(ckpt.sidecar, data=data.to_dict())
    return ckpt, split, data


def _short(values) -> str:
    return ",".join(f"{v:.4g}" for v in values)


def cmd_evaluate(args) -> int:
    from .metrics import evaluate
    from .pipeline import backdoor_for

    ckpt, split, _ = _load(args)
    spec = _attack_spec(args, ckpt.sidecar.attack, split.info)
    ev = evaluate(ckpt.model, split.test.x, split.test.y, backdoor_for(split, spec),
                  num_classes=split.info.num_classes)  # fmt: skip
    d = ev.to_dict()
    out = {"acc": ev.acc, "asr": ev.asr, "ra": ev.ra, "per_class_asr": d["per_class_asr"],
           "off_target": d["off_target"], "attack": None if spec is None else spec.to_dict()}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        line = f"{ckpt.sidecar.arch} on {split.info.name}: ACC {_fmt(ev.acc)}"
        if spec is None:
            line += ("  (ASR and RA not measured: the trigger is unknown; name it with --attack "
                     "and --param, or --trigger-image)")  # fmt: skip
        else:
            line += f"  ASR {_fmt(ev.asr)}  RA {_fmt(ev.ra)}  ({spec.name}, target {spec.target})"
        print(line)
    return 0


def cmd_import(args) -> int:
    from .metrics import evaluate
    from .pipeline import backdoor_for, write_import_outputs

    _check_out(args.out, args.overwrite)
    args.checkpoint = args.weights
    ckpt, split, data = _load(args)
    spec = _attack_spec(args, ckpt.sidecar.attack, split.info)
    ev = evaluate(ckpt.model, split.test.x, split.test.y, backdoor_for(split, spec),
                  num_classes=split.info.num_classes, confusion=False)  # fmt: skip
    write_import_outputs(args.out, ckpt.model, data, spec, ev, Path(args.weights).name)
    line = f"imported {ckpt.sidecar.arch} on {data.name}: ACC {_fmt(ev.acc)}"
    if spec is None:
        line += "  (trigger unknown: ASR not measured)"
    else:
        line += f"  ASR {_fmt(ev.asr)}  RA {_fmt(ev.ra)}"
    print(f"{line} -> {args.out} (`sau purify --checkpoint {args.out}` needs no other flag)")
    return 0


def cmd_probe(args) -> int:
    """Is the backdoor gone? ACC/ASR/RA/pull, the re-tuning test, trigger recovery, verdict."""
    from .probe import (
        FIGURE_NAMES,
        PROBE_DIR,
        ReactivationConfig,
        describe_recovery,
        probe_checkpoint,
        write_probe,
    )

    ckpt, split, _ = _load(args)
    spec = _attack_spec(args, ckpt.sidecar.attack, split.info)
    try:
        config = ReactivationConfig(**_parse_params(args.set, "--set"))
    except TypeError as err:  # an unknown name
        known = ", ".join(f.name for f in fields(ReactivationConfig))
        raise CLIError(f"--set: {err}; the re-tuning settings are {known}") from None
    except ValueError as err:
        raise CLIError(f"--set: {err}") from None
    run = Path(args.checkpoint)
    run = run.parent if run.is_file() else run  # a weights file: its folder is the run
    out = Path(args.out) if args.out else run / PROBE_DIR
    baseline = Path(args.baseline) if args.baseline else out / "baseline"
    for flag, path in (("--out", out), ("--baseline", baseline)):
        if path.exists() and not path.is_dir():
            raise CLIError(f"{flag} {path}: a file, not a folder")
    result = probe_checkpoint(ckpt, split, spec, config, run=run, baseline_dir=baseline,
                              reactivation=not args.no_retune, device=args.device)  # fmt: skip
    path = write_probe(out, result)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    v = result["verdict"]
    print(f"verdict: {v['headline']}")
    for r in v["readings"]:
        print(f"  {FIGURE_NAMES.get(r['key'], r['key'])}: {r['value']}\n      {r['reading']}")
    if result["recovery"]["available"]:
        print(f"  trigger recovery: {describe_recovery(result['recovery'])}")
    for note in result["unmeasured"]:
        print(f"  not measured: {note}")
    print(f"  thresholds: {v['thresholds_text']}")
    print(f"probe done in {result['seconds']:.1f} s -> {path}")
    return 0


def cmd_sweep(args) -> int:
    """A grid of attack x defence x seed cells on Ray; the leaderboard."""
    import os
    import warnings

    from .sweep import QUICK, SweepWarning, grid_from_dict, grid_from_toml, run_sweep
    from .sweep.grid import settings_from_items

    if args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    if args.gpus_per_task < 0:
        raise CLIError(f"--gpus-per-task must be 0 or more, got {args.gpus_per_task}")
    keys = ("dataset", "models", "attacks", "defenses", "seeds", "resolution", "epochs", "rounds")
    flags = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.set:
        try:
            flags["settings"] = settings_from_items(args.set)
        except ValueError as err:
            raise CLIError(str(err)) from None
    if args.paper:
        flags["paper"] = True
    try:
        if args.grid:
            if flags or args.quick:
                names = {"settings": "set"}
                given = ", ".join("--" + names.get(k, k) for k in flags) + (
                    " --quick" if args.quick else ""
                )
                raise CLIError(f"{given.strip(', ')}: give the grid either in --grid or as "
                               "flags, not both")  # fmt: skip
            grid = grid_from_toml(args.grid)
        else:
            d = {**(QUICK if args.quick else {}), **flags}  # the flags win over --quick's sizes
            d.setdefault("data_root", args.data_root)
            grid = grid_from_dict({k: v for k, v in d.items() if v is not None})
    except ValueError as err:
        raise CLIError(str(err).replace("\n", " ")) from None
    if args.markdown:  # found now, not after hours of cells
        md = Path(args.markdown)
        if md.is_dir() or (md.parent.exists() and not md.parent.is_dir()):
            raise CLIError(f"--markdown {args.markdown}: not a file path (a folder is in the "
                           "way); give a file such as results.md")  # fmt: skip
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    bar = _SweepBar(args.quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SweepWarning)
        rows = run_sweep(grid, args.out, workers=args.workers, address=address,
                         use_ray=not args.no_ray, gpus_per_task=args.gpus_per_task,
                         runs=args.runs, progress=bar)  # fmt: skip
    bar.close()
    for w in caught:
        if issubclass(w.category, SweepWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    failed = [r for r in rows if r.get("status") != "finished"]
    print(f"{len(rows) - len(failed)} of {len(rows)} cells finished "
          f"({bar.skipped} already done, skipped) -> {Path(args.out) / 'leaderboard.csv'}")  # fmt: skip
    for r in failed:
        print(f"  failed: {r['attack']} / {r['defense']} / seed {r['seed']}: "
              f"{r.get('message', '')[:200]}")  # fmt: skip
    if args.markdown:
        from .sweep import run_lines, to_markdown

        text = (f"{to_markdown(rows)}\nEvery cell, with the 1-minute load where it ran:\n\n"
                f"```\n{run_lines(rows)}```\n")  # fmt: skip
        try:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(text, encoding="utf-8")
        except OSError as err:
            raise CLIError(f"--markdown {args.markdown}: cannot write it ({err}); the "
                           "leaderboard is in the sweep's folder") from None  # fmt: skip
        print(f"markdown table -> {args.markdown}")
    return 0


class _SweepBar:
    """``[sweep] ######---- 3/8 done, 2 running, 3 left, 1 failed`` on stderr, as cells move."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.skipped, self.last = quiet, 0, ""

    def __call__(self, s: dict) -> None:
        self.skipped = s.get("skipped", self.skipped)
        if self.quiet:
            return
        width = 20
        filled = round(width * s["done"] / max(1, s["total"]))
        line = (f"[sweep] {'#' * filled}{'-' * (width - filled)} {s['done']}/{s['total']} done, "
                f"{s['running']} running, {s['left']} left, {s['failed']} failed")  # fmt: skip
        if line != self.last:
            print(line, file=sys.stderr, flush=True)
            self.last = line

    def close(self) -> None:
        pass


# the SAU flags every defence takes (its other settings go through --set)
SHARED_FLAGS = ("rounds", "batch_size", "seed", "eval_size")


def _defense_config(args, data_name: str):
    """The chosen defence's entry and config: the data set's defaults, the SAU flags that the
    defence also has (``--rounds``, ``--batch-size``, ...), then ``--set KEY=VALUE``."""
    from .defenses import get_defense
    from .defenses.sau import SAUConfig

    try:
        entry = get_defense(args.defense)
    except ValueError as err:
        raise CLIError(f"--defense: {err}") from None
    flags = _dataclass_overrides(args, SAUConfig)
    known = {f.name for f in fields(entry.config)}
    shared = known if entry.name == "sau" else set(SHARED_FLAGS) & known
    foreign = sorted(k for k in flags if k not in shared)
    if foreign:
        shown = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise CLIError(f"{shown}: a SAU flag; {entry.name}'s settings are "
                       f"{', '.join(sorted(known))} (give them as --set KEY=VALUE)")  # fmt: skip
    extra = _parse_params(args.set, "--set")
    unknown = sorted(k for k in extra if k not in known)
    if unknown:
        raise CLIError(f"--set {unknown[0]}: {entry.name} has no such setting; it takes "
                       f"{', '.join(sorted(known))}")  # fmt: skip
    try:
        config = entry.default_config(data_name, **{**flags, **extra})
    except (TypeError, ValueError) as err:
        raise CLIError(f"{entry.name} settings: {err}") from None
    return entry, config


def _clean_ratio(args, data_name: str) -> float:
    """``--clean-ratio``, else the data set's; CLIError outside (0, 1]."""
    ratio = args.clean_ratio if args.clean_ratio is not None else defaults.recipe(data_name).clean_ratio  # fmt: skip
    if not 0 < ratio <= 1:
        raise CLIError(f"--clean-ratio must be in (0, 1], got {ratio}")
    return ratio


def cmd_purify(args) -> int:
    from .lab.caveats import sau_caveats, stored_train_caveats
    from .pipeline import purify_checkpoint, write_purify_outputs

    _check_out(args.out, args.overwrite)
    ckpt, split, data = _load(args)
    spec = None if args.unknown_trigger else _attack_spec(args, ckpt.sidecar.attack, split.info)
    entry, config = _defense_config(args, data.name)
    if entry.check_model is not None:
        try:
            entry.check_model(ckpt.model)
        except ValueError as err:
            raise CLIError(f"--defense {entry.name}: {err}") from None
    ratio = _clean_ratio(args, data.name)
    clean_n = round(ratio * len(split.train))
    stored = (ckpt.sidecar.attack or {}).get("name")  # what the model was made with
    notes = []
    if entry.name == "sau":
        notes = sau_caveats(data, clean_n, config, spec.name if spec else stored,
                            ckpt.sidecar.arch, clean_ratio=ratio)  # fmt: skip
    _warn(stored_train_caveats(ckpt.sidecar, data) + notes)
    if spec is None and not args.quiet:
        print(f"note: the trigger is unknown, so ASR and RA cannot be measured; {entry.name} runs "
              "all the same (it never needs the trigger)", file=sys.stderr)  # fmt: skip
    probes = _ProbeWriter(Path(args.out), _Progress(args.quiet))
    result = purify_checkpoint(ckpt, split, config, defense=entry.name, clean_ratio=ratio,
                               clean_seed=args.clean_seed, balanced=args.clean_balanced,
                               spec=spec, device=args.device,
                               callback=probes)  # fmt: skip
    metrics = write_purify_outputs(args.out, result, ckpt, clean_ratio=ratio,
                                   clean_seed=args.clean_seed, spec=spec)  # fmt: skip
    probes.commit()
    _print_table(metrics)
    _print_caveats(result.history, metrics, _target(spec))
    print(f"{entry.name} done in {result.elapsed:.1f} s ({result.rounds_done} rounds on "
          f"{result.device}) -> {args.out}")  # fmt: skip
    return 0


def cmd_compare(args) -> int:
    """Run defences in turn on one checkpoint; print and write the comparison table."""
    from .defenses import get_defense
    from .defenses.compare import before_row, comparison_row, table_text, write_table
    from .pipeline import purify_checkpoint, write_purify_outputs

    names = list(dict.fromkeys(args.defenses))
    for name in names:
        try:
            get_defense(name)
        except ValueError as err:
            raise CLIError(f"--defenses: {err}") from None
    _check_out(args.out, args.overwrite, tuple(names))
    ckpt, split, data = _load(args)
    spec = _attack_spec(args, ckpt.sidecar.attack, split.info)
    ratio = _clean_ratio(args, data.name)
    configs = {}
    for name in names:  # every defence's settings and model check before any work
        entry = get_defense(name)
        try:
            configs[name] = entry.default_config(data.name)
            if entry.check_model is not None:
                entry.check_model(ckpt.model)
        except ValueError as err:
            raise CLIError(f"--defenses {name}: {err}") from None
    rows, first = [], None
    for name in names:
        if not args.quiet:
            print(f"[{name}] {get_defense(name).title}", file=sys.stderr)
        result = purify_checkpoint(ckpt, split, configs[name], defense=name, clean_ratio=ratio,
                                   clean_seed=args.clean_seed, spec=spec, device=args.device,
                                   callback=_Progress(args.quiet))  # fmt: skip
        metrics = write_purify_outputs(Path(args.out) / name, result, ckpt, clean_ratio=ratio,
                                       clean_seed=args.clean_seed, spec=spec)  # fmt: skip
        first = first or metrics
        rows.append(comparison_row(metrics, name))
    rows.insert(0, before_row(first))
    csv_path, json_path = write_table(rows, args.out)
    print(table_text(rows))
    print(
        "pull: the largest share of triggered images sent to one class that is neither their "
        "own nor the target ('to'); ASR misses it, RA shows it"
    )
    print(f"-> {csv_path}, {json_path} and one folder per defence in {args.out}")
    return 0


def _target(spec) -> int | None:
    """The all-to-one target of a trigger spec (None: unknown trigger or all-to-all)."""
    return spec.target if spec is not None and spec.label_rule == "all2one" else None


def _print_table(metrics: dict) -> None:
    b, a = metrics["before"], metrics["after"]
    if b.get("asr") is None and a.get("asr") is None:
        print("            ACC")
        print(f"  before  {_fmt(b['acc'])}")
        print(f"  after   {_fmt(a['acc'])}")
        print("  ASR and RA: not measured (the trigger is unknown)")
        return
    print("            ACC     ASR     RA")
    print(f"  before  {_fmt(b['acc'])}  {_fmt(b['asr'])}  {_fmt(b['ra'])}")
    print(f"  after   {_fmt(a['acc'])}  {_fmt(a['asr'])}  {_fmt(a['ra'])}")
    if metrics.get("der") is not None:
        print(
            f"  DER     {metrics['der']:.4f}   (0.5 = no change, 1 = backdoor gone at no ACC cost)"
        )


def _print_caveats(history, metrics: dict, target: int | None = None) -> None:
    from .lab.caveats import landing_summary, run_caveats, trigger_caveats, unknown_trigger_report

    after, before = metrics.get("after") or {}, metrics.get("before") or {}
    if after.get("asr") is None and before.get("asr") is None:
        for line in unknown_trigger_report(history):
            print(f"  {line}")
    else:
        landing = landing_summary(history)
        if landing is not None:
            print(f"  {landing}")
    for note in run_caveats(history, target) + trigger_caveats(metrics.get("after")):
        print(f"note: {note}", file=sys.stderr)


def cmd_demo(args) -> int:
    from .defenses.sau import SAUConfig
    from .io.checkpoint import load_checkpoint
    from .lab.presets import TEACHING_PRESETS
    from .pipeline import (
        plant_backdoor,
        purify_checkpoint,
        write_attack_outputs,
        write_purify_outputs,
    )
    from .serving.runs import default_root

    preset = TEACHING_PRESETS[args.preset]
    setup = preset.setup
    base = default_root() / "demo"
    out = Path(args.out) if args.out else (base if args.overwrite else _fresh_dir(base))
    t0 = time.perf_counter()
    progress = _Progress(args.quiet)
    split = setup.data.load()
    sau_config = (
        setup.sau
        if args.rounds is None
        else SAUConfig(**{**setup.sau.to_dict(), "rounds": args.rounds})
    ).validate()
    _check_out(out, args.overwrite, ("attack", "purified"))  # before the training
    res = setup.data.kwargs["resolution"]
    print(f"SAU Lab demo ({preset.title}): {setup.attack.name} on digits {res}x{res}, "
          f"{setup.arch}, then SAU with {sau_config.rounds} rounds on {setup.clean_ratio:.0%} "
          f"clean data -> {out}", file=sys.stderr)  # fmt: skip
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
    _print_caveats(result.history, metrics, _target(setup.attack))
    print(f"done in {time.perf_counter() - t0:.1f} s; outputs in {out}/attack and {out}/purified")
    return 0


# -------------------------------------------------------------------------------- parser
def _p_attack(p: argparse.ArgumentParser) -> None:
    from .train import TrainConfig

    _add_data_flags(p, checkpoint=False)
    _add_attack_flags(p, known=True)
    p.add_argument("--model", default=None,
                   help=f"architecture, see `sau list` (default: {defaults.default_value('arch')})")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    _add_dataclass_flags(p.add_argument_group("training"), TrainConfig, "train")
    _add_common(p)


def _p_checkpoint(p: argparse.ArgumentParser, flag: str = "--checkpoint") -> None:
    p.add_argument(
        flag,
        required=True,
        dest="weights" if flag == "--weights" else "checkpoint",
        help="a checkpoint directory, or a weights file: .safetensors, or a .pt/.pth state dict "
        "(a checkpoint.json beside it is its sidecar)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="architecture of bare weights, as `sau attack` names it (default: the sidecar's)",
    )
    g = p.add_argument_group(
        "normalisation of bare network weights (default: the data set's mean and std)"
    )
    g.add_argument("--mean", type=_floats, default=None, metavar="M[,M,M]",
                   help="per-channel mean your model subtracts from [0, 1] pixels")  # fmt: skip
    g.add_argument("--std", type=_floats, default=None, metavar="S[,S,S]",
                   help="per-channel std your model divides by")  # fmt: skip
    _add_data_flags(p, checkpoint=True)


def _p_evaluate(p: argparse.ArgumentParser) -> None:
    _p_checkpoint(p)
    _add_attack_flags(p, known=False)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_common(p)


def _p_probe(p: argparse.ArgumentParser) -> None:
    _p_checkpoint(p)
    _add_attack_flags(p, known=False)
    p.add_argument("--json", action="store_true", help="print the whole result as one JSON object")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a re-tuning setting: epochs (5), poisoned (5), clean (500), lr (0.01), "
                   "batch_size (64), back (0.5), seed (0)")  # fmt: skip
    p.add_argument("--no-retune", action="store_true", help="skip the re-tuning test (fast)")
    p.add_argument("--baseline", default=None, help="folder of the never-backdoored baseline "
                   "model: reused when it fits, else trained and written there (default: "
                   "OUT/baseline)")  # fmt: skip
    p.add_argument("--out", default=None, help="folder for probe.json and the baseline "
                   "(default: CHECKPOINT/probe; nothing else in CHECKPOINT is changed)")  # fmt: skip
    _add_common(p)


def _p_sweep(p: argparse.ArgumentParser) -> None:
    from .attacks import list_attacks
    from .defenses import list_defenses

    p.add_argument("--out", required=True, help="the sweep's folder: runs/, leaderboard.csv and "
                   ".json; an existing one is resumed (finished cells are skipped)")  # fmt: skip
    p.add_argument("--grid", default=None, help="a TOML file with the grid (keys: dataset, "
                   "resolution, models, attacks, defenses, seeds, epochs, rounds, paper, and a "
                   "[settings.DEFENCE] table) instead of flags")  # fmt: skip
    p.add_argument("--dataset", default=None, help="default: digits")
    p.add_argument("--resolution", type=bounded_int, default=None, help="digits' image side")
    p.add_argument("--models", nargs="+", default=None, help="default: 'default', each "
                   "attack's own model (that of its ready-made checkpoint on digits: wide_cnn, "
                   "the small CNN for WaNet; the data set's otherwise)")  # fmt: skip
    p.add_argument("--attacks", nargs="+", default=None,
                   help=f"default: badnets; any of {', '.join(a for a in list_attacks() if a != 'custom')}")  # fmt: skip
    p.add_argument("--defenses", nargs="+", default=None,
                   help=f"default: sau; any of {', '.join(list_defenses())}")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=bounded_int, default=None, help="default: 0")
    p.add_argument("--epochs", type=bounded_int, default=None,
                   help="training epochs of the backdoored models (default: the data set's)")  # fmt: skip
    p.add_argument("--rounds", type=bounded_int, default=None,
                   help="rounds of every defence (default: each one's for the data set)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="DEFENCE.KEY=VALUE",
                   help="a setting of one defence over its defaults, e.g. anp.rounds=500 "
                   "(repeatable; VALUE is read as JSON: true, 0.5, else a word)")  # fmt: skip
    p.add_argument("--paper", action="store_true", help="each defence with its paper's "
                   "settings, not the data set's")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="smoke-test size: digits 8x8, one epoch, two rounds")  # fmt: skip
    p.add_argument("--markdown", default=None, metavar="PATH", help="when the sweep ends, also "
                   "write the leaderboard as a markdown table (mean±sd over seeds), with every "
                   "cell's line and its load")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="cells at a time on a local Ray "
                   "(default 2)")  # fmt: skip
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: "
                   "$RAY_ADDRESS, else a local Ray started here)")  # fmt: skip
    p.add_argument("--gpus-per-task", type=finite_float, default=0.0,
                   help="GPUs each cell asks Ray for (1 on GPU workers; default 0)")  # fmt: skip
    p.add_argument("--no-ray", action="store_true", help="run the cells one by one here")
    p.add_argument("--runs", default=None, help="where the cells' run directories go (default: "
                   "OUT/runs; the dashboard's runs/ lets its pages open each cell)")  # fmt: skip
    p.add_argument("--data-root", default=None, help="where cifar10, mnist, gtsrb live")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _p_import(p: argparse.ArgumentParser) -> None:
    _p_checkpoint(p, "--weights")
    _add_attack_flags(p, known=False)
    p.add_argument("--out", required=True, help="the checkpoint directory to write (created)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    _add_common(p)


def _p_purify(p: argparse.ArgumentParser) -> None:
    from .defenses.sau import SAUConfig

    _p_checkpoint(p)
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    g = p.add_argument_group("the defender's clean data")
    g.add_argument(
        "--clean-ratio",
        type=finite_float,
        default=None,
        help="share of the training set the defender holds "
        f"(default: {defaults.default_value('clean_ratio')})",
    )
    g.add_argument(
        "--clean-seed", type=bounded_int, default=0, help="seed of the clean subset (default: 0)"
    )
    g.add_argument(
        "--clean-balanced", action="store_true", help="draw the clean subset evenly over classes"
    )
    p.add_argument(
        "--unknown-trigger",
        action="store_true",
        help="ignore the stored trigger: measure ACC and where h0's adversarial examples land",
    )
    _add_attack_flags(p, known=False)
    from .defenses import DEFENSES

    p.add_argument(
        "--defense",
        default="sau",
        metavar="NAME",
        help="the defence: " + ", ".join(DEFENSES) + " (default: sau; `sau list` says what each "
        "does)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a setting of the chosen defence (repeatable), e.g. --set lr=0.005; `sau list` names "
        "them",
    )
    _add_dataclass_flags(
        p.add_argument_group(
            "SAU settings (the reference's, except where a data set's differ; --rounds, "
            "--batch-size, --seed and --eval-size also set the other defences')"
        ),
        SAUConfig,
        "sau",
    )
    _add_common(p)


def _p_compare(p: argparse.ArgumentParser) -> None:
    from .defenses import DEFENSES

    _p_checkpoint(p)
    p.add_argument(
        "--defenses",
        nargs="+",
        default=list(DEFENSES),
        metavar="NAME",
        help="the defences to run in turn, each with its data set defaults (default: all: "
        + " ".join(DEFENSES)
        + ")",
    )
    p.add_argument("--out", required=True, help="output directory: one folder per defence, and "
                   "comparison.csv and comparison.json")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    g = p.add_argument_group("the defender's clean data")
    g.add_argument("--clean-ratio", type=finite_float, default=None,
                   help="share of the training set the defender holds "
                   f"(default: {defaults.default_value('clean_ratio')})")  # fmt: skip
    g.add_argument("--clean-seed", type=bounded_int, default=0,
                   help="seed of the clean subset (default: 0)")  # fmt: skip
    _add_attack_flags(p, known=False)
    _add_common(p)


def _p_demo(p: argparse.ArgumentParser) -> None:
    from .lab.presets import TEACHING_PRESETS

    p.add_argument(
        "--out",
        default=None,
        help="output directory (default: demo in the runs folder, $SAU_LAB_RUNS or runs/; "
        "demo-2, demo-3, ... when taken, unless --overwrite)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument(
        "--rounds", type=bounded_int, default=None, help="SAU rounds (default: the preset's)"
    )
    p.add_argument(
        "--preset",
        default="badnets",
        choices=list(TEACHING_PRESETS),
        help="a teaching preset (default: badnets, the demo; bench/bench_demo.py times them): "
        + "; ".join(f"{k}: {v.title}" for k, v in TEACHING_PRESETS.items()),
    )
    _add_common(p)


def cmd_jobs(args) -> int:
    """List the active runs under a runs folder, or ask some (or all) of them to stop."""
    import time

    from .serving.runs import ACTIVE_STATES, RunStore, default_root
    from .serving.workers import request_stop

    store = RunStore(args.runs or default_root())
    if not store.root.is_dir():
        raise CLIError(f"no runs folder at {store.root} (--runs names another)")
    runs, problems = store.scan()
    active = [r for r in runs if r.state in ACTIVE_STATES]
    if args.action == "list":
        if not active:
            print(f"no queued or running jobs under {store.root}")
        for r in active:
            status = store.get(r.id).status()
            beat = status.get("heartbeat")
            age = f"{time.time() - beat:.0f} s ago" if isinstance(beat, (int, float)) else "?"
            steps = f"{status.get('step') or 0}/{status.get('total_steps') or '?'}"
            print(f"{r.id}  {r.state:8s} {steps:>11s} steps  session {r.owner or '-':16s} "
                  f"last heard {age}  {r.label}")  # fmt: skip
        for problem in problems:
            print(f"skipped: {problem}", file=sys.stderr)
        return 0
    if args.all == bool(args.run_ids):
        raise CLIError("name the runs to stop, or --all (not both)")
    wanted = [r.id for r in active] if args.all else args.run_ids
    known = {r.id: r for r in runs}
    code = 0
    for run_id in wanted:
        info = known.get(run_id)
        if info is None:
            print(f"{run_id}: no such run under {store.root}", file=sys.stderr)
            code = EXIT_USAGE
        elif info.state not in ACTIVE_STATES:
            print(f"{run_id}: already {info.state}", file=sys.stderr)
        else:
            request_stop(store.get(run_id).path, args.reason)
            print(f"{run_id}: asked to stop ({info.state}; a running job ends within one batch, "
                  "a waiting one when its turn comes)")  # fmt: skip
    if args.all and not wanted:
        print(f"no queued or running jobs under {store.root}")
    return code


def _p_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=("list", "stop"),
                   help="list (default): the queued and running jobs; stop: ask jobs to stop")  # fmt: skip
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="the runs to stop")
    p.add_argument("--all", action="store_true", help="stop every queued and running job")
    p.add_argument("--runs", default=None,
                   help="the runs folder (default: $SAU_LAB_RUNS, else runs/)")  # fmt: skip
    p.add_argument("--reason", default="cancelled by the operator",
                   help="the message the stopped runs show (default: cancelled by the operator)")  # fmt: skip


COMMANDS = {
    "list": ("list data sets, models and attacks", None, cmd_list),
    "attack": (
        "train a backdoored model; write its checkpoint and metrics.json",
        _p_attack,
        cmd_attack,
    ),  # fmt: skip
    "evaluate": (
        "measure ACC (and ASR/RA when the trigger is known) of a checkpoint or weights",
        _p_evaluate,
        cmd_evaluate,
    ),  # fmt: skip
    "import": (
        "turn your own weights (.safetensors/.pt) into a checkpoint that needs no flags",
        _p_import,
        cmd_import,
    ),  # fmt: skip
    "purify": (
        "run a defence (SAU by default) on a checkpoint; write the defended checkpoint, "
        "metrics.json and history.jsonl",
        _p_purify,
        cmd_purify,
    ),  # fmt: skip
    "compare": (
        "run several defences on one checkpoint; print and write the comparison table",
        _p_compare,
        cmd_compare,
    ),  # fmt: skip
    "probe": (
        "after a defence, is the backdoor gone? ACC/ASR/RA/pull, re-tuning against a "
        "never-backdoored model, the trigger SAU recovered, and a verdict",
        _p_probe,
        cmd_probe,
    ),  # fmt: skip
    "sweep": (
        "a grid of data set x models x attacks x defences x seeds on Ray (local by default), "
        "each cell a run directory; writes the leaderboard",
        _p_sweep,
        cmd_sweep,
    ),  # fmt: skip
    "demo": (
        "attack then purify on the embedded digits, with a before/after table",
        _p_demo,
        cmd_demo,
    ),  # fmt: skip
    "jobs": (
        "the operator's view of a server's jobs: list them, or stop some or all",
        _p_jobs,
        cmd_jobs,
    ),  # fmt: skip
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``sau`` parser. ``command`` given: only that command's flags are built (the others
    are listed), so ``sau --help`` needs no torch; None builds every command."""
    parser = argparse.ArgumentParser(prog="sau", description="SAU Lab: plant backdoors in image "
                                     "classifiers and remove them with Shared Adversarial Unlearning. "
                                     "Defaults depend on the data set: `sau COMMAND --help` prints them.")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (helptext, build, func) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        if build is not None and command in (None, name):
            build(p)
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else ""
    args = build_parser(command).parse_args(argv)
    from .data import DataUnavailable
    from .io.checkpoint import CheckpointError

    try:
        if getattr(args, "device", None):  # a device that is not here fails before any work
            from .device import pick_device

            pick_device(args.device)
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
