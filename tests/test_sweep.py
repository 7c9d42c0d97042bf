"""Sweeps (issue 20): the grid's checks, a tiny grid on local Ray with two workers that finishes,
resumes without redoing finished cells, and records failing cells with their message."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest

from sau_core.cli import main
from sau_core.sweep import QUICK, Grid, grid_from_dict, grid_from_toml, read_leaderboard, run_sweep

TINY = dict(QUICK, models=["small_cnn"], attacks=["badnets", "blended"], defenses=["sau", "ft"])


def _rows(out: Path) -> list[dict]:
    with open(out / "leaderboard.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------- the grid
def test_a_bad_grid_lists_every_problem_before_anything_runs(tmp_path):
    with pytest.raises(ValueError) as err:
        grid_from_dict({"attacks": ["badnets", "nope"], "defenses": ["sau", "sau"],
                        "models": ["big"], "seeds": [-1], "epochs": 0, "colour": "red"})  # fmt: skip
    text = str(err.value)
    for needle in ("unknown key(s) colour", "attacks: unknown 'nope'", "defenses: a name is given "
                   "twice", "models: unknown 'big'", "seeds: -1", "epochs: 0"):  # fmt: skip
        assert needle in text
    toml = tmp_path / "grid.toml"
    toml.write_text('[grid]\nattacks = ["badnets"]\ndefenses = ["sau", "xx"]\n')
    with pytest.raises(ValueError, match="defenses: unknown 'xx'"):
        grid_from_toml(toml)
    toml.write_text("attacks = [badnets")
    with pytest.raises(ValueError, match="not valid TOML"):
        grid_from_toml(toml)
    toml.write_text('attacks = ["badnets", "sig"]\nseeds = [0, 1]\n')
    grid = grid_from_toml(toml)
    assert len(grid.cells()) == 4 and {c.plant_key for c in grid.cells()} == {
        "digits-wide_cnn-badnets-s0", "digits-wide_cnn-badnets-s1", "digits-wide_cnn-sig-s0",
        "digits-wide_cnn-sig-s1"}  # fmt: skip


def test_the_cli_refuses_a_bad_grid_with_every_problem_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["sweep", "--quick", "--attacks", "nope", "--defenses", "zzz", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "attacks: unknown 'nope'" in err and "defenses: unknown 'zzz'" in err
    assert not out.exists()


def test_a_grid_file_that_is_no_table_and_a_grid_given_twice_are_refused(tmp_path, capsys):
    toml = tmp_path / "grid.toml"
    toml.write_text("grid = 3\n")
    with pytest.raises(ValueError, match="a grid must be a table"):
        grid_from_toml(toml)
    rc = main(["sweep", "--grid", str(toml), "--attacks", "sig", "--out", str(tmp_path / "s")])
    assert rc == 2 and "give the grid either in --grid or as flags" in capsys.readouterr().err


def test_a_sweep_folder_resumes_only_its_own_settings(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "grid.json").write_text(json.dumps({**Grid(epochs=1).to_dict(), "runs": "x"}))
    with pytest.raises(ValueError, match=r"other settings \(epochs: 1 -> 2\)"):
        run_sweep(Grid(epochs=2), out, use_ray=False)


def test_an_unreachable_address_is_a_clear_message(tmp_path, capsys):
    rc = main(["sweep", "--quick", "--out", str(tmp_path / "s"), "--address", "127.0.0.1:1",
               "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach the Ray cluster at '127.0.0.1:1'" in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------- on local Ray
class _Interrupt(Exception):
    pass


def test_a_sweep_on_local_ray_finishes_resumes_and_skips_finished_cells(tmp_path):
    out = tmp_path / "sweep"
    grid = grid_from_dict(TINY)
    seen = []

    def stop_after_one(state):
        seen.append(state)
        if state["done"] >= 1:
            raise _Interrupt  # as a Ctrl-C would, after the first cell

    with pytest.raises(_Interrupt):
        run_sweep(grid, out, workers=2, progress=stop_after_one)
    first = {r["defense"] + r["attack"]: r for r in _rows(out) if r["status"] == "finished"}
    assert len(first) >= 1 and max(s["running"] for s in seen) <= 2
    stamps = {k: Path(r["run"], "metrics.json").stat().st_mtime_ns for k, r in first.items()}
    states = []
    rows = run_sweep(grid, out, workers=2, progress=states.append)
    assert [r["status"] for r in rows] == ["finished"] * 4
    assert states[0]["skipped"] == len(first)  # finished cells are not run again
    for k, r in first.items():
        assert Path(r["run"], "metrics.json").stat().st_mtime_ns == stamps[k]
    table = _rows(out)
    assert [(r["attack"], r["defense"]) for r in table] == [
        ("badnets", "sau"), ("badnets", "ft"), ("blended", "sau"), ("blended", "ft")]  # fmt: skip
    for r in table:
        assert 0 <= float(r["acc"]) <= 1 and 0 <= float(r["asr"]) <= 1 and float(r["seconds"]) > 0
        run = Path(r["run"])  # an ordinary run directory the dashboard reads
        assert (run / "config.json").is_file() and (run / "events.jsonl").is_file()
        assert json.loads((run / "status.json").read_text())["state"] == "finished"
    # the two defences of one backdoored model share it
    assert table[0]["plant_run"] == table[1]["plant_run"] != table[2]["plant_run"]
    summary = json.loads((out / "leaderboard.json").read_text())["summary"]
    assert {(s["attack"], s["defense"]) for s in summary} == {
        (a, d) for a in ("badnets", "blended") for d in ("sau", "ft")}  # fmt: skip
    assert read_leaderboard(out)[0]["status"] == "finished"


def test_failing_cells_are_recorded_and_do_not_stop_the_sweep(tmp_path, capsys):
    """MNIST's files are not there: every cell fails at planting, each is recorded with the
    message, and the sweep goes through all of them and exits normally."""
    out = tmp_path / "sweep"
    empty = tmp_path / "data"
    empty.mkdir()
    rc = main(["sweep", "--dataset", "mnist", "--data-root", str(empty), "--epochs", "1",
               "--rounds", "1", "--models", "small_cnn", "--attacks", "badnets", "sig",
               "--defenses", "ft", "--out", str(out), "--workers", "2", "--quiet"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert rc == 0 and "0 of 2 cells finished" in stdout
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("planting the backdoor failed" in r["message"] and "mnist" in r["message"].lower()
               for r in rows)  # fmt: skip


def test_without_ray_the_cells_run_here_with_a_warning(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    grid = Grid(**{**{k: v for k, v in TINY.items() if k not in ("attacks", "defenses")},
                   "models": ("small_cnn",), "attacks": ("badnets",), "defenses": ("ft",)})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = run_sweep(grid, tmp_path / "s", workers=2)
    assert [r["status"] for r in rows] == ["finished"]
    assert any("Ray is not installed" in str(w.message) for w in caught)


def test_the_leaderboard_page_reads_a_sweep_and_links_its_cells(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    runs, sweeps = tmp_path / "runs", tmp_path / "sweeps"
    grid = Grid(models=("small_cnn",), attacks=("badnets",), defenses=("ft", "sau"), seeds=(0,),
                resolution=8, epochs=1, rounds=1)  # fmt: skip
    rows = run_sweep(grid, sweeps / "tiny", use_ray=False, runs=runs)
    assert [r["status"] for r in rows] == ["finished", "finished"]
    monkeypatch.setenv("SAU_LAB_RUNS", str(runs))
    monkeypatch.setenv("SAU_LAB_SWEEPS", str(sweeps))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"),
                           default_timeout=90)  # fmt: skip
    at.switch_page("app_pages/leaderboard.py")
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "digits, small_cnn" in [h.value for h in at.subheader]
    assert any("2 of 2 cells finished" in c.value for c in at.caption)
    links = [e for e in at.get("page_link")]
    assert len(links) == 2  # every cell opens on the Defend page
    at.radio[0].set_value("der")
    at = at.run()
    assert not at.exception
