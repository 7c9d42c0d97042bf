"""Probe a (defended) model end to end: ACC, ASR, RA and pull on the full test sets, the
re-tuning test against a never-backdoored baseline, the trigger recovered from a SAU run's
shared adversarial examples, and the verdict. Writes only its own files (``probe/`` beside the
run); nothing already saved is changed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from ..attacks import AttackSpec
from ..data import Split
from ..io.atomic import write_json_atomic
from ..io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, sidecar_of
from ..metrics import evaluate
from .reactivation import ReactivationConfig, retune, retune_set
from .recovery import match, recover
from .verdict import thresholds_text, verdict

PROBE_DIR = "probe"  # the probe's own folder inside the run it probes


def never_backdoored(ckpt: Checkpoint, split: Split, device: str | None = None,
                     callback=None) -> nn.Module:  # fmt: skip
    """A model of the same architecture trained on the clean training split with the settings
    the checkpoint's model was trained with (the data set's defaults when unknown) and its
    seed: the baseline that never had a backdoor."""
    from ..models import create_model
    from ..train import default_train_config, train

    side = ckpt.sidecar
    config = side.train_config() or default_train_config(split.info.name)
    model = create_model(side.arch, split.info, seed=side.seed or 0)
    train(model, split.train, config, device=device, callback=callback)
    return model.eval()


def check_baseline_folder(folder: Path):
    """The sidecar of the probe's baseline in ``folder`` (None: the folder is empty or missing);
    ValueError when it holds anything else, which a probe never writes over."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder for the never-backdoored baseline")
    if not folder.exists() or not any(folder.iterdir()):
        return None
    try:
        stored = sidecar_of(folder)
    except ValueError:
        stored = None
    if stored is None or not stored.extra.get("probe_baseline") or stored.attack:
        raise ValueError(f"{folder} holds files that are not a probe's never-backdoored "
                         "baseline; a probe does not write over them (give another "
                         "--baseline folder, or an empty one)")  # fmt: skip
    return stored


def baseline_model(ckpt: Checkpoint, split: Split, folder: Path, device: str | None = None,
                   callback=None) -> tuple[nn.Module, bool]:  # fmt: skip
    """The never-backdoored baseline: the one stored in ``folder`` when the probe made it for
    this architecture and data (``probe_baseline`` in its sidecar), else a new one trained and
    stored there. ``folder`` must be empty, missing or a probe's baseline: a probe never writes
    over another model. (model, was it reused)."""
    side, folder = ckpt.sidecar, Path(folder)
    stored = check_baseline_folder(folder)
    if stored is not None and stored.arch == side.arch and stored.data == side.data:
        try:
            return load_checkpoint(folder, info=split.info, device="cpu").model.eval(), True
        except ValueError:
            pass  # a damaged baseline of the probe's own: trained again over it
    model = never_backdoored(ckpt, split, device, callback)
    meta = {k: v for k, v in side.to_dict().items() if k in ("arch", "dataset", "data", "train",
                                                               "seed")}  # fmt: skip
    meta["attack"] = None
    meta["probe_baseline"] = True
    save_checkpoint(folder, model.cpu(), meta)
    return model, False


def stored_probes(run: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The shared adversarial perturbations a SAU run stored (``probes/``, every round): (deltas
    (N, C, H, W), the class h0 gives each perturbed image, the images' true classes); None when
    the run stored none."""
    from ..serving.runs import RunError, load_probe

    files = (
        sorted((run / "probes").glob("round_*.safetensors")) if (run / "probes").is_dir() else []
    )
    parts = []
    for f in files:
        try:
            p = load_probe(f)
        except RunError:
            continue  # an unreadable snapshot is skipped, not fatal
        parts.append((p.delta, p.pred_h0_adv, p.y))
    if not parts:
        return None
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def recovered_trigger(run: Path, spec: AttackSpec | None, info) -> dict:
    """Per class the perturbations land on: count and, for the most populated, the match with
    the known trigger; ``{"available": False, ...}`` without stored perturbations."""
    probes = stored_probes(run)
    if probes is None:
        return {"available": False, "why": "this run stored no shared adversarial examples "
                "(a SAU run from the dashboard or the job runner stores them)"}  # fmt: skip
    deltas, landed, source = probes
    patterns = recover(deltas, landed, source)
    if not patterns:
        return {"available": False, "why": "no stored perturbation changed the backdoored "
                "model's answer"}  # fmt: skip
    top = patterns[0]
    return {"available": True, "perturbations": len(deltas),
            "classes": [p.to_dict() for p in patterns], "top_class": top.cls,
            "target": None if spec is None else spec.target,
            "match": match(top.mean, spec, info)}  # fmt: skip


def probe_checkpoint(
    ckpt: Checkpoint,
    split: Split,
    spec: AttackSpec | None,
    config: ReactivationConfig | None = None,
    *,
    run: Path | None = None,
    baseline_dir: Path | None = None,
    reactivation: bool = True,
    device: str | None = None,
    callback=None,
) -> dict:
    """Everything the verdict needs, as one JSON-able dict (see ``sau probe --json``)."""
    from ..device import pick_device
    from ..pipeline import backdoor_for

    config = config or ReactivationConfig()
    device = pick_device(device)
    start = time.perf_counter()
    run = Path(run if run is not None else ckpt.path)
    if run.is_file():  # a weights file: its folder holds the run's other files
        run = run.parent
    baseline_dir = Path(baseline_dir or run / PROBE_DIR / "baseline")
    if reactivation and spec is not None:
        check_baseline_folder(baseline_dir)  # before any work
    k = split.info.num_classes
    backdoor = backdoor_for(split, spec)
    ev = evaluate(ckpt.model, split.test.x, split.test.y, backdoor, num_classes=k, device=device)
    d = ev.to_dict(confusion=False)
    before = _before(run)
    out: dict = {"acc": ev.acc, "asr": ev.asr, "ra": ev.ra, "pull": d["off_target"],
                 "acc_before": None if before is None else before.get("acc"),
                 "asr_before": None if before is None else before.get("asr"),
                 "attack": None if spec is None else spec.to_dict(),
                 "defense": (ckpt.sidecar.extra.get("defense") or {}).get("name"),
                 "settings": config.to_dict(), "reactivation": None}  # fmt: skip
    unmeasured = []
    if spec is None:
        unmeasured.append("ASR, RA, pull and re-tuning: the trigger is unknown")
    elif reactivation:
        counts: dict = {}
        data = retune_set(split.train, spec, config, counts)
        model_curve = retune(ckpt.model, split, spec, backdoor, config, retune_data=data,
                             before=ev, device=device)  # fmt: skip
        base, cached = baseline_model(ckpt, split, baseline_dir, device, callback)
        base_curve = retune(base, split, spec, backdoor, config, retune_data=data, device=device)
        out["reactivation"] = {
            "model": {**model_curve.to_dict(), "poisoned": counts["poisoned"]},
            "baseline": {**base_curve.to_dict(), "cached": cached},
            "set": counts,
        }
    out["recovery"] = recovered_trigger(run, spec, split.info)
    if not out["recovery"]["available"]:
        unmeasured.append("trigger recovery: " + out["recovery"]["why"])
    out["verdict"] = verdict(acc=ev.acc, asr=ev.asr, ra=ev.ra, pull=out["pull"],
                             acc_before=out["acc_before"], reactivation=out["reactivation"],
                             back=config.back)  # fmt: skip
    out["verdict"]["thresholds_text"] = thresholds_text(config.back)
    out["unmeasured"] = unmeasured
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def _before(run: Path) -> dict | None:
    """The backdoored model's metrics from the run's ``metrics.json`` (a defence's output)."""
    try:
        m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        b = m.get("before")
        return b if isinstance(b, dict) and isinstance(b.get("acc"), (int, float)) else None
    except (OSError, ValueError, AttributeError):
        return None


def write_probe(folder: Path, result: dict) -> Path:
    """``folder/probe.json`` (atomic; by default ``folder`` is the run's ``probe/``)."""
    path = Path(folder) / "probe.json"
    write_json_atomic(path, result)
    return path


def probe_run(run: str | Path, config: ReactivationConfig | None = None, *,
              reactivation: bool = True, device: str | None = None) -> dict:  # fmt: skip
    """Probe a run or checkpoint folder with what its sidecar says (model, data, trigger) and
    write ``probe/probe.json`` in it; ValueError when it cannot be loaded."""
    run = Path(run)
    ckpt = load_checkpoint(run, device="cpu")
    data = ckpt.sidecar.data_spec()
    if data is None:
        raise ValueError(f"{run.name}: its checkpoint names no data set to probe on")
    split = data.load()
    result = probe_checkpoint(ckpt, split, ckpt.sidecar.attack_spec(), config, run=run,
                              reactivation=reactivation, device=device)  # fmt: skip
    write_probe(run / PROBE_DIR, result)
    return result


def read_probe(run: str | Path) -> dict | None:
    """The probe stored in a run (``probe/probe.json``), or None (none, or unreadable)."""
    try:
        d = json.loads((Path(run) / PROBE_DIR / "probe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if _well_formed(d) else None


def _well_formed(d) -> bool:
    """What the pages read from a probe file is there and of the right kind (an older or edited
    file is ignored: the page falls back to the defence's own figures)."""
    try:
        v = d["verdict"]
        ok = (isinstance(v["headline"], str) and v["level"] in ("good", "warn", "bad", "unknown")
              and all(isinstance(r[k], str) for r in v["readings"]
                      for k in ("key", "value", "reading", "level")))  # fmt: skip
        re = d.get("reactivation")
        if re is not None:
            s = d["settings"]
            ok = ok and all(isinstance(s[k], (int, float)) for k in ("epochs", "lr", "clean",
                                                                     "poisoned", "back"))  # fmt: skip
            ok = ok and all(isinstance(a, (int, float)) for a in re["model"]["asr"])
        rec = d.get("recovery")
        return bool(ok and (rec is None or isinstance(rec.get("available"), bool)))
    except (KeyError, TypeError, AttributeError):
        return False
