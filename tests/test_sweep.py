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
    (out / "grid.json").write_text(json.dumps({**Grid(epochs=1).to_dict(), "runs": "x",
                                               "version": 2}))  # fmt: skip
    with pytest.raises(ValueError, match=r"other settings \(epochs: 1 -> 2\)"):
        run_sweep(Grid(epochs=2), out, use_ray=False)


def test_an_unreachable_address_is_a_clear_message(tmp_path, capsys):
    rc = main(["sweep", "--quick", "--out", str(tmp_path / "s"), "--address", "127.0.0.1:1",
               "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach the Ray cluster at '127.0.0.1:1'" in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()


def test_the_default_model_is_each_attacks_own():
    cells = Grid(attacks=("badnets", "wanet"), defenses=("ft",)).cells()
    assert [(c.attack, c.model) for c in cells] == [("badnets", "wide_cnn"), ("wanet", "small_cnn")]
    cifar = Grid(dataset="cifar10", attacks=("wanet",), defenses=("ft",)).cells()
    assert [c.model for c in cifar] == ["preact_resnet18"]
    both = Grid(models=("default", "wide_cnn"), attacks=("badnets",), defenses=("ft",)).cells()
    assert [c.model for c in both] == ["wide_cnn"]  # the same cell once


def test_defence_settings_and_the_papers_reach_the_config_and_bad_ones_are_listed():
    grid = grid_from_dict({"defenses": ["anp", "nad"], "rounds": 4,
                           "settings": {"anp": {"rounds": 500}}})  # fmt: skip
    assert grid.defense_config("anp", seed=2).rounds == 500  # the setting wins over the grid's
    assert grid.defense_config("anp", seed=2).seed == 2
    nad = grid.defense_config("nad")
    assert nad.rounds == 4 and nad.teacher_rounds == 2  # the teacher's phase fits the rounds
    from sau_core.defenses import get_defense

    paper = Grid(defenses=("ft",), paper=True).defense_config("ft")
    assert paper == get_defense("ft").config(seed=0)
    assert Grid(defenses=("ft",)).defense_config("ft") == get_defense("ft").default_config(
        "digits", seed=0)  # fmt: skip
    with pytest.raises(ValueError) as err:
        grid_from_dict({"defenses": ["anp", "ft"], "paper": "yes",
                        "settings": {"anp": {"rounds": -3, "seed": 1}, "ft": {"colour": 1},
                                     "nad": {"rounds": 2}, "zzz": {}}})  # fmt: skip
    text = str(err.value)
    for needle in ("paper: expected true or false", "settings.anp.seed: the seeds come from",
                   "settings: 'nad' is not among the grid's defenses",
                   "settings: unknown defence 'zzz'"):  # fmt: skip
        assert needle in text, text
    with pytest.raises(ValueError, match=r"settings.ft: .*colour"):
        grid_from_dict({"defenses": ["ft"], "settings": {"ft": {"colour": 1}}})
    with pytest.raises(ValueError, match=r"settings.anp: .*rounds"):
        grid_from_dict({"defenses": ["anp"], "settings": {"anp": {"rounds": -3}}})
    # NAD's teacher phase fits the rounds NAD runs, whichever gives them
    assert (
        Grid(defenses=("nad",), rounds=2, settings={"nad": {"rounds": 40}})
        .defense_config("nad")
        .teacher_rounds
        == 10
    )
    assert Grid(defenses=("nad",), settings={"nad": {"rounds": 3}}).defense_config(
        "nad").teacher_rounds == 1  # fmt: skip
    assert not Grid(defenses=("nad",), rounds=1, settings={"nad": {"rounds": 4}}).problems()
    with pytest.raises(ValueError, match="settings.nad.rounds: NAD needs at least 2"):
        grid_from_dict({"defenses": ["nad"], "settings": {"nad": {"rounds": 1}}})
    # a checked grid keeps its own settings, and can be a dict key
    given = {"anp": {"rounds": 500}}
    grid = Grid(defenses=("anp",), settings=given)
    given["anp"]["rounds"] = -1
    assert grid.defense_config("anp").rounds == 500 and hash(grid) == hash(Grid(defenses=("anp",)))


def test_set_flags_are_parsed_and_bad_ones_refused_before_anything_runs(tmp_path, capsys):
    from sau_core.sweep.grid import settings_from_items

    assert settings_from_items(["anp.rounds=500", "ft.augment=crop", "anp.lr=0.1"]) == {
        "anp": {"rounds": 500, "lr": 0.1}, "ft": {"augment": "crop"}}  # fmt: skip
    for bad in ("rounds=5", "anp.rounds", ".x=1", "anp.=1"):
        with pytest.raises(ValueError, match="expected DEFENCE.KEY=VALUE"):
            settings_from_items([bad])
    with pytest.raises(
        ValueError, match=r"anp.eval_size is already set by --set 'anp.eval-size=1'"
    ):
        settings_from_items(["anp.eval-size=1", "anp.eval_size=2"])
    toml = tmp_path / "grid.toml"
    toml.write_text('[grid]\ndefenses = ["anp"]\n[settings.anp]\nrounds = 5\n')
    with pytest.raises(ValueError, match=r"settings outside \[grid\]; .*\[grid.settings.NAME\]"):
        grid_from_toml(toml)
    toml.write_text('[grid]\ndefenses = ["anp"]\n[grid.settings.anp]\nrounds = 5\n')
    assert grid_from_toml(toml).settings == {"anp": {"rounds": 5}}
    out = tmp_path / "s"
    for flags, needle in ((["--set", "rounds=5"], "expected DEFENCE.KEY=VALUE"),
                          (["--set", "anp.rounds=5"], "'anp' is not among the grid's defenses"),
                          (["--defenses", "ft", "--set", "ft.lr=-1"], "settings.ft:")):  # fmt: skip
        rc = main(["sweep", "--quick", "--out", str(out), "--quiet", *flags])
        assert rc == 2 and needle in capsys.readouterr().err
        assert not out.exists()
    rc = main(["sweep", "--quick", "--out", str(out), "--quiet", "--markdown", str(tmp_path)])
    assert rc == 2 and "--markdown" in capsys.readouterr().err and not out.exists()


def test_a_folder_refuses_other_defence_settings_and_one_written_before_them(tmp_path):
    from sau_core.sweep.run import GRID_VERSION, _same_grid

    out = tmp_path / "s"
    out.mkdir()
    (out / "grid.json").write_text(json.dumps({**Grid().to_dict(), "runs": "x",
                                               "version": GRID_VERSION}))  # fmt: skip
    _same_grid(out, Grid())  # the same grid: resumed
    with pytest.raises(ValueError, match=r"other settings \(settings: \{\} -> \{'ft'"):
        _same_grid(out, Grid(defenses=("ft",), settings={"ft": {"lr": 0.1}}))
    with pytest.raises(ValueError, match="paper: False -> True"):
        _same_grid(out, Grid(paper=True))
    # a folder from before: its cells drew the clean subset with seed 0 whatever their seed
    old = {k: v for k, v in Grid().to_dict().items() if k not in ("settings", "paper")}
    (out / "grid.json").write_text(json.dumps({**old, "runs": "x"}))
    with pytest.raises(ValueError, match="written by an earlier SAU Lab"):
        _same_grid(out, Grid())
    with pytest.raises(ValueError, match="workers must be an integer of at least 1"):
        run_sweep(Grid(), tmp_path / "w", workers=0, use_ray=False)
    assert not (tmp_path / "w").exists()


def _row(attack, defense, seed, **kw):
    base = {"dataset": "digits", "model": "wide_cnn", "attack": attack, "defense": defense,
            "seed": seed, "status": "finished", "acc": 0.9, "asr": 0.1, "ra": 0.8, "pull": 0.05,
            "pull_class": 3, "der": 0.9, "seconds": 10.0, "acc_before": 0.99,
            "asr_before": 1.0, "ra_before": 0.0, "pull_before": 0.0, "plant_seconds": 7.0,
            "plant_load": 1.5, "load": 2.0}  # fmt: skip
    return {**base, **kw}


def test_the_leaderboard_as_markdown_means_spreads_and_every_cell():
    from sau_core.sweep import run_lines, summary, to_markdown

    rows = [_row("badnets", "sau", 0, asr=0.0, seconds=20.0),
            _row("badnets", "sau", 1, asr=0.2, seconds=40.0, asr_before=0.98),
            _row("badnets", "ft", 0), _row("badnets", "ft", 1, status="failed", acc=None,
                                           message="RuntimeError: boom"),
            _row("wanet", "sau", 0, model="small_cnn", asr_before=0.16)]  # fmt: skip
    table = to_markdown(rows).splitlines()
    assert table[0].startswith("| attack | model | defence | ACC | ASR | RA | pull | DER |")
    assert (
        "| badnets | wide_cnn | none (backdoored) | 0.99±0.00 | 0.99±0.01 | 0.00±0.00 |" in table[2]
    )
    assert table[2].endswith("| 2/2 |")
    assert table[3] == ("| badnets | wide_cnn | sau | 0.90±0.00 | 0.10±0.10 | 0.80±0.00 | "
                        "0.05±0.00 | 0.90±0.00 | 30.0 | 2/2 |")  # fmt: skip
    assert table[4].startswith("| badnets | wide_cnn | ft | 0.90 | 0.10 |") and table[4].endswith(
        "| 10.0 | 1/2 |"
    )
    assert table[5].startswith("| wanet | small_cnn | none (backdoored) | 0.99 | 0.16 |")
    lines = run_lines(rows)
    assert "[badnets seed 0] wide_cnn planted in 7.0 s (load 1.50): ACC 0.990 ASR 1.000" in lines
    assert "  ft    failed: RuntimeError: boom" in lines
    assert "pull 0.050 (to 3) DER 0.900    10.0 s (load 2.00)" in lines
    s = {(e["attack"], e["defense"]): e for e in summary(rows)}
    assert s[("badnets", "sau")]["before"]["asr"]["mean"] == pytest.approx(0.99)


def test_a_grid_of_each_attacks_own_model_is_one_heat_map_with_the_backdoored_column():
    from dashboard import charts
    from sau_core.sweep import summary, to_markdown

    rows = [_row("badnets", "sau", 0), _row("wanet", "sau", 0, model="small_cnn", asr=0.3)]
    groups = charts.leaderboard_groups(summary(rows))
    assert [t for t, _ in groups] == ["digits, each attack on its own model"]
    fig = charts.leaderboard_heatmap(groups[0][1], "asr")
    heat = fig.data[0]
    assert list(heat.x) == ["none", "sau"]
    assert list(heat.y) == ["badnets (wide_cnn)", "wanet (small_cnn)"]
    assert heat.z[1][0] == pytest.approx(1.0) and heat.z[1][1] == pytest.approx(0.3)
    assert list(charts.leaderboard_heatmap(groups[0][1], "der").data[0].x) == ["sau"]
    assert heat.customdata[1][0] == "wanet (small_cnn) / the backdoored model (no defence): " \
        "1.00±0.00 over 1 seed"  # fmt: skip
    # the backdoored column holds every seed any defence finished, the same in the table
    mixed = [_row("badnets", "sau", 0, asr_before=1.0), _row("badnets", "sau", 1, status="failed"),
             _row("badnets", "ft", 1, asr_before=0.5)]  # fmt: skip
    fig = charts.leaderboard_heatmap(summary(mixed), "asr")
    assert fig.data[0].z[0][0] == pytest.approx(0.75)
    assert "| badnets | wide_cnn | none (backdoored) | 0.99±0.00 | 0.75±0.25 |" in to_markdown(
        mixed
    )
    # one attack on two models: a heat map per model
    two = [_row("badnets", "sau", 0), _row("badnets", "sau", 0, model="small_cnn")]
    assert [t for t, _ in charts.leaderboard_groups(summary(two))] == [
        "digits, wide_cnn", "digits, small_cnn"]  # fmt: skip
    # rows written before the backdoored figures were kept: no such column
    old = [{k: v for k, v in _row("badnets", "sau", 0).items() if not k.endswith("_before")}]
    assert list(charts.leaderboard_heatmap(summary(old), "asr").data[0].x) == ["sau"]


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
               "--defenses", "ft", "--out", str(out), "--workers", "2", "--quiet",
               "--markdown", str(tmp_path / "table.md")])  # fmt: skip
    stdout = capsys.readouterr().out
    assert rc == 0 and "0 of 2 cells finished" in stdout
    table = (tmp_path / "table.md").read_text()
    assert "| badnets | small_cnn | ft | - | - | - | - | - | - | 0/1 |" in table
    assert "  ft    failed: RuntimeError: planting the backdoor failed" in table
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
                   "models": ("small_cnn",), "attacks": ("badnets",), "defenses": ("ft",),
                   "seeds": (1,), "settings": {"ft": {"lr": 0.005}}})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = run_sweep(grid, tmp_path / "s", workers=2)
    assert [r["status"] for r in rows] == ["finished"]
    assert any("Ray is not installed" in str(w.message) for w in caught)
    # the cell's seed picks the clean subset too, and the grid's settings reach the defence
    config = json.loads((Path(rows[0]["run"]) / "config.json").read_text())["job"]
    assert config["clean_seed"] == 1 and config["settings"]["seed"] == 1
    assert config["settings"]["lr"] == 0.005 and config["settings"]["rounds"] == 2
    # the backdoored model's figures beside the defended one's, and where it ran
    r = rows[0]
    assert 0 <= r["acc_before"] <= 1 and 0 <= r["asr_before"] <= 1 and r["host"]
    assert r["plant_seconds"] > 0


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
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download markdown"]
    at.radio[0].set_value("der")
    at = at.run()
    assert not at.exception
