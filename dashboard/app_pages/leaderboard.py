"""Leaderboard: a sweep's grid of attacks x defences (``sau sweep``), mean and spread over seeds,
each cell linking to its runs."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from dashboard import charts, components, state
from sau_core.sweep import read_leaderboard, summary, to_markdown

SWEEPS_ENV = "SAU_LAB_SWEEPS"

st.title("Leaderboard")
st.markdown(
    "A sweep runs every attack x defence x seed on Ray (`sau sweep`; `docs/sweeps.md` in the "
    "project). Each cell below is the mean over seeds with its spread (the number of seeds on "
    "hover), beside the backdoored models the defences started from (*none*); "
    "the list under it links every cell to its run."
)
root = Path(os.environ.get(SWEEPS_ENV) or "sweeps")
sweeps = sorted((p for p in root.glob("*") if (p / "leaderboard.json").is_file()),
                key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []  # fmt: skip
if not sweeps:
    st.info(f"No sweep in `{root}/` yet. Run one, for example "
            f"`sau sweep --quick --attacks badnets blended --defenses sau ft --out {root}/demo "
            "--runs runs`, then reload this page (with `--runs runs`, the dashboard's own run "
            f"folder, every cell opens on its pages; `{SWEEPS_ENV}` names another folder).")  # fmt: skip
    st.stop()
pick = st.selectbox("Sweep", sweeps, format_func=lambda p: p.name, key="leaderboard.sweep")
try:
    rows = read_leaderboard(pick)
except ValueError as err:
    st.warning(str(err))
    st.stop()
metric = st.radio("Colour by", ["asr", "der", "ra", "acc", "pull"], horizontal=True,
                  format_func=lambda m: {"asr": "ASR", "der": "DER", "ra": "RA", "acc": "ACC",
                                         "pull": "largest pull"}[m])  # fmt: skip
done = [r for r in rows if r.get("status") == "finished"]
failed = [r for r in rows if r.get("status") == "failed"]
st.caption(f"{len(done)} of {len(rows)} cells finished, {len(failed)} failed, "
           f"{len(rows) - len(done) - len(failed)} not run yet.")  # fmt: skip
for title, part in charts.leaderboard_groups(summary(rows)):
    st.subheader(title)
    components.plot(charts.leaderboard_heatmap(part, metric), f"lb-{pick.name}-{title}-{metric}")
c1, c2, _ = st.columns([1, 1, 1])
csv_file = pick / "leaderboard.csv"
if csv_file.is_file():
    c1.download_button("Download CSV", csv_file.read_bytes(),
                       file_name=f"{pick.name}-leaderboard.csv", mime="text/csv")  # fmt: skip
c2.download_button("Download markdown", to_markdown(rows).encode("utf-8"),
                   file_name=f"{pick.name}-leaderboard.md", mime="text/markdown",
                   help="per attack the backdoored model, then each defence: mean±sd over "
                   "seeds; the table `sau sweep --markdown` writes, without its per-cell lines")  # fmt: skip
store_root = state.store().root.resolve()
st.subheader("Every cell")
# a large sweep's list is long: folded, its figures are one click away
box = st.expander(f"All {len(rows)} cells, each with its figures and run", expanded=len(rows) <= 24)
for r in rows:
    label = (
        f"{r['attack']} ({r.get('model')}) / {r['defense']} / seed {r['seed']}: {r.get('status')}"
    )
    run = Path(r.get("run") or "")
    cols = box.columns([3, 1])
    if r.get("status") == "finished":
        figures = ", ".join(f"{name} {r[k]:.3f}" for k, name in (("acc", "ACC"), ("asr", "ASR"),
                            ("ra", "RA"), ("der", "DER")) if isinstance(r.get(k), (int, float)))  # fmt: skip
        cols[0].markdown(f"**{label}**: {figures or 'ASR not measured'}")
    else:
        cols[0].markdown(f"**{label}** {str(r.get('message') or '')[:200]}")
    if r.get("run") and run.parent.resolve() == store_root and run.is_dir():
        cols[1].page_link("app_pages/purify.py", label="Open the run",
                          icon=":material/open_in_new:", query_params={"run": run.name})  # fmt: skip
    elif r.get("run"):
        cols[1].caption(f"`{run}`")
