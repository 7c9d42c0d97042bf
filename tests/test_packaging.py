"""A plain (non-editable) install carries the shipped assets: the wheel built from the checkout
holds the Blended trigger and every ready-made checkpoint file the manifest lists, and the
installed package finds and verifies them without the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=600, cwd=out,
    )  # fmt: skip
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not in this environment")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("sau_lab-*.whl")
    return path


def test_the_wheel_holds_the_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sau_core/assets/blended_trigger.png" in names
    manifest = json.loads((REPO / "assets" / "checkpoints" / "manifest.json").read_text())
    assert "sau_core/assets/checkpoints/manifest.json" in names
    for entry in manifest["checkpoints"]:
        for file in entry["sha256"]:
            assert f"sau_core/assets/checkpoints/{entry['name']}/{file}" in names


def test_the_installed_package_finds_its_assets(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=600)  # fmt: skip
    code = (
        "import sau_core, sau_core.attacks as a, sau_core.lab.ready as r\n"
        "entries, note = r.list_ready()\n"
        "[r.verify(e) for e in entries]\n"
        "import sau_core.probe, sau_core.attacks.ssba as s\n"
        "s.load_stega('encoder'), s.load_stega('decoder')  # shipped and matching their hashes\n"
        "print(sau_core.__file__, a.DEFAULT_BLENDED_TRIGGER.is_file(), len(entries), note)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SAU_LAB_CHECKPOINTS",)}
    env["PYTHONPATH"] = str(target)  # the wheel's copy, not the checkout
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    path, trigger, count, *_ = proc.stdout.split()
    assert path.startswith(str(target)) and trigger == "True"
    manifest = json.loads((REPO / "assets" / "checkpoints" / "manifest.json").read_text())
    assert int(count) == len(manifest["checkpoints"])
