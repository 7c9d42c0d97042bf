"""A tiny lab on disk for the Explain, Compare and report tests: a ready-made BadNets digits
checkpoint (8x8, one epoch) and finished SAU runs of it (one or two rounds, 4 probe images)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sau_core.data import DataSpec
from sau_core.lab.presets import DEMO
from sau_core.lab.ready import list_ready, make_ready
from sau_core.serving import JobRunner, PurifyJob
from sau_core.serving.runs import RunStore

DATA8 = DataSpec("digits", None, {**DEMO.data.kwargs, "resolution": 8})
TINY = replace(DEMO, data=DATA8, train=replace(DEMO.train, epochs=1))


def make_lab(root: Path, rounds: tuple[int, ...] = (1,)) -> tuple[Path, Path, list[str]]:
    """``root/ready`` (checkpoints), ``root/runs`` (one finished purify run per ``rounds``)."""
    ready_dir = root / "ready"
    make_ready(ready_dir, [DEMO.attack.name], TINY)
    entry = list_ready(ready_dir)[0][0]
    runner = JobRunner(RunStore(root / "runs"))
    split = DATA8.load()
    ids = []
    for n in rounds:
        job = PurifyJob(
            checkpoint=str(entry.path),
            settings=replace(DEMO.sau, rounds=n, probe_size=4),
            clean_ratio=0.1,
            attack=DEMO.attack,
            data=DATA8,
        )
        run_id = runner.submit(job, label=f"tiny SAU, {n} round(s)", split=split)
        assert runner.wait(run_id, timeout=300)
        ids.append(run_id)
    return ready_dir, root / "runs", ids
