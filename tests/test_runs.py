"""The run store: ids, files, events and probes, corrupt directories, interrupted runs, zip export."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from sau_core.events import ProbeSnapshot, SAURound, Started
from sau_core.serving.runs import Run, RunError, RunStore, RunWarning, owner_alive, valid_run_id


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def _probe(rnd: int, p: int = 3) -> ProbeSnapshot:
    g = torch.Generator().manual_seed(rnd)
    flags = torch.tensor([True, False, True])[:p]
    return ProbeSnapshot(
        round=rnd,
        x=torch.rand(p, 1, 8, 8, generator=g),
        delta=torch.rand(p, 1, 8, 8, generator=g) * 0.4 - 0.2,
        y=torch.arange(p),
        pred_h0_clean=torch.arange(p),
        pred_h_clean=torch.arange(p),
        pred_h0_adv=torch.zeros(p, dtype=torch.long),
        pred_h_adv=torch.tensor([0, 1, 0])[:p],
        adv_h=flags,
        adv_h0=flags,
        common=flags,
        shared=flags,
    )


def _round(rnd: int) -> SAURound:
    return SAURound(round=rnd, rounds=2, acc=0.9, asr=0.5, ra=0.4,
                    per_class_asr={1: 0.5, 2: 0.25}, lr=1e-4, elapsed=1.0, eta=1.0, adv_h=3,
                    adv_h0=4, common=2, shared=1, n=10, disagreement=0.1, l_cl=0.3,
                    l_shared=0.2)  # fmt: skip


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------- smoke
def test_create_writes_config_and_queued_status(store):
    run = store.create("attack", {"arch": "small_cnn"}, label="my  first\nbackdoor")
    assert valid_run_id(run.id) and run.kind == "attack"
    config = json.loads((run.path / "config.json").read_text())
    assert config["job"] == {"arch": "small_cnn"}
    assert config["label"] == "my first backdoor"  # one line
    status = run.status()
    assert status["state"] == "queued" and status["owner"]["pid"] > 0
    assert [r.id for r in store.list()] == [run.id]


def test_ids_never_hold_user_text(store):
    run = store.create("purify", {}, label="../../etc/passwd")
    assert run.path.parent == store.root
    assert "passwd" not in run.id and "/" not in run.id
    assert store.get(run.id).config()["label"] == "../../etc/passwd"


def test_ids_are_unique(store):
    ids = {store.create("attack", {}).id for _ in range(20)}
    assert len(ids) == 20


# --------------------------------------------------------------------------------- exception
@pytest.mark.parametrize(
    "bad", ["../x", "20250101-000000-attack-zzzzzz", "", None, 3, "x/../../y", "20250101-000000-evil-abcdef"]
)  # fmt: skip
def test_get_refuses_malformed_ids(store, bad):
    with pytest.raises(RunError, match="not a run id"):
        store.get(bad)


def test_get_refuses_unknown_ids(store):
    with pytest.raises(RunError, match="no run"):
        store.get("20250101-000000-attack-abcdef")


def test_create_refuses_unknown_kind(store):
    with pytest.raises(RunError, match="kind"):
        store.create("train", {})


def test_list_skips_corrupt_and_foreign_directories_with_a_warning(store):
    good = store.create("attack", {})
    broken = store.create("purify", {})
    (broken.path / "status.json").write_text("{not json")
    other = store.create("attack", {})
    (other.path / "config.json").write_text(json.dumps({"id": "someone-else", "kind": "attack"}))
    (store.root / "notes").mkdir()
    (store.root / "README.txt").write_text("hello")
    (store.root / ".hidden").mkdir()
    with pytest.warns(RunWarning) as caught:
        runs = store.list()
    assert [r.id for r in runs] == [good.id]
    text = " ".join(str(w.message) for w in caught)
    assert len(caught) == 4
    assert "notes" in text and "README.txt" in text and "status.json" in text
    assert "another run" in text


def test_list_of_a_missing_root_is_empty(tmp_path):
    assert RunStore(tmp_path / "nowhere").list() == []


# ------------------------------------------------------------------------------ interrupted
def test_run_of_a_dead_process_is_interrupted(store):
    run = store.create("purify", {})
    run.update_status(state="running", owner={"host": socket.gethostname(), "pid": _dead_pid()})
    assert run.status()["state"] == "interrupted"
    assert store.list()[0].state == "interrupted"
    raw = json.loads((run.path / "status.json").read_text())
    assert raw["state"] == "running"  # reading does not write
    assert store.mark_interrupted() == [run.id]
    raw = json.loads((run.path / "status.json").read_text())
    assert raw["state"] == "interrupted" and raw["ended"]
    assert store.mark_interrupted() == []


def test_run_of_this_process_stays_running(store):
    run = store.create("purify", {})
    run.update_status(state="running")
    assert run.status()["state"] == "running"
    assert store.mark_interrupted() == []


def test_reused_pid_does_not_count_as_the_owner(store):
    run = store.create("attack", {})
    owner = dict(run.status()["owner"])
    if owner["pid_start"] is None:
        pytest.skip("no /proc here")
    owner["pid_start"] = "1"  # this pid, but a process that started at another time
    run.update_status(state="running", owner=owner)
    assert run.status()["state"] == "interrupted"


def test_other_host_is_judged_by_its_heartbeat():
    now = time.time()
    owner = {"host": "elsewhere.invalid", "pid": 1}
    assert owner_alive({"owner": owner, "heartbeat": now - 5}, now)
    assert not owner_alive({"owner": owner, "heartbeat": now - 3600}, now)
    assert not owner_alive({"owner": owner}, now)
    assert not owner_alive({}, now)


def test_finished_run_is_never_interrupted(store):
    run = store.create("attack", {})
    run.update_status(state="finished", owner={"host": socket.gethostname(), "pid": _dead_pid()})
    assert run.status()["state"] == "finished"


# ---------------------------------------------------------------------------------- feature
def test_events_round_trip_with_probe_files(store):
    run = store.create("purify", {})
    run.append_event(Started("sau", 4, "cpu", {"rounds": 2}), t=10.0)
    run.append_event(_probe(0), t=11.0)
    run.append_event(_round(1), t=12.0)
    run.append_event(_probe(1), t=13.0)
    run.append_event({"event": "Baseline", "acc": 0.9, "asr": 1.0, "ra": 0.0}, t=9.0)
    events = list(run.events())
    assert [e["event"] for e in events] == [
        "Started", "ProbeSnapshot", "SAURound", "ProbeSnapshot", "Baseline"
    ]  # fmt: skip
    assert events[0]["t"] == 10.0 and events[0]["total_steps"] == 4
    assert events[2]["per_class_asr"] == {"1": 0.5, "2": 0.25}
    assert events[3] == {"event": "ProbeSnapshot", "round": 1, "file": "probes/round_0001.safetensors", "t": 13.0}  # fmt: skip
    assert run.probe_rounds() == [0, 1]
    back = run.load_probe(1)
    want = _probe(1)
    assert back.round == 1
    for name in ("x", "delta", "y", "pred_h_adv", "shared"):
        assert torch.equal(getattr(back, name), getattr(want, name)), name
    assert back.shared.dtype == torch.bool


def test_torn_last_line_is_skipped(store):
    run = store.create("attack", {})
    run.append_event(Started("train", 2, "cpu"))
    with open(run.path / "events.jsonl", "a") as f:
        f.write('{"event": "TrainBatch", "ste')  # the process died mid-write
    assert [e["event"] for e in run.events()] == ["Started"]


def test_load_probe_errors_are_clear(store):
    run = store.create("purify", {})
    with pytest.raises(RunError, match="no probe snapshot for round 3"):
        run.load_probe(3)
    (run.path / "probes").mkdir()
    (run.path / "probes" / "round_0002.safetensors").write_bytes(b"garbage")
    with pytest.raises(RunError, match="cannot read probe"):
        run.load_probe(2)
    with pytest.raises(RunError, match="non-negative"):
        run.load_probe(-1)


def test_update_status_merges(store):
    run = store.create("attack", {})
    run.update_status(state="running", round=1, rounds=3)
    run.update_status(round=2)
    status = run.status()
    assert (status["state"], status["round"], status["rounds"]) == ("running", 2, 3)


def test_metrics_round_trip_and_info(store):
    run = store.create("attack", {"arch": "small_cnn"}, label="x")
    assert run.metrics() is None
    run.write_metrics({"acc": 0.5, "asr": 0.9})
    info = store.list()[0]
    assert info.metrics == {"acc": 0.5, "asr": 0.9}
    assert info.config == {"arch": "small_cnn"} and info.label == "x"


def test_zip_export_holds_every_file_under_the_run_id(store, tmp_path):
    run = store.create("purify", {"a": 1})
    run.append_event(_probe(0))
    run.write_metrics({"der": 0.9})
    outside = tmp_path / "secret.txt"
    outside.write_text("do not ship")
    (run.path / "link.txt").symlink_to(outside)
    data = run.zip_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(
            f"{run.id}/{n}"
            for n in ("config.json", "status.json", "events.jsonl", "metrics.json",
                      "probes/round_0000.safetensors")
        )  # fmt: skip
        assert json.loads(zf.read(f"{run.id}/metrics.json")) == {"der": 0.9}


def test_run_handle_refuses_bad_ids(tmp_path):
    with pytest.raises(RunError):
        Run(tmp_path, "../../x")
