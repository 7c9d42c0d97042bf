"""Compare: several SAU runs side by side (before/after table, ACC and ASR curves on one chart)."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, components, state
from dashboard.glossary import HELP
from sau_core.jobs import view_of
from sau_core.runs import RunError

st.title("Compare runs")
st.markdown(
    "Set SAU runs side by side: SAU on BadNets against SAU on WaNet, or two SAU settings on the "
    "same model. Each run keeps its colour; ACC is the solid line, ASR the dashed one."
)

store = state.store()
runs = [r for r in state.visible_runs()[0] if r.kind == "purify" and r.state not in ("queued",)]
if not runs:
    st.info("No SAU run yet: start one on *Purify*.")
    st.page_link("app_pages/purify.py", label="Go to Purify", icon=":material/cleaning_services:")
    st.stop()
labels = {r.id: f"{r.label or r.id} · {r.id[-6:]} ({r.state})" for r in runs}
ids = [r.id for r in runs]
picked = st.multiselect("SAU runs", ids, default=ids[:2], format_func=lambda i: labels[i],
                        key="compare.runs", max_selections=10)  # fmt: skip
if not picked:
    st.info("Choose one or more runs.")
    st.stop()


@st.cache_data(max_entries=64, show_spinner=False)
def _replay(run_id: str, stamp: float) -> tuple[list[dict], dict | None, dict | None]:
    """A run's per-round records, its round-0 record and metrics.json (per events file version)."""
    view = view_of(store.get(run_id))
    return view.rounds, view.before, view.metrics


def _stamp(run_id: str) -> float:
    try:
        return (store.get(run_id).path / "events.jsonl").stat().st_mtime
    except (OSError, RunError):
        return 0.0


series, table = [], []
for run_id in picked:
    try:
        rounds, before, metrics = _replay(run_id, _stamp(run_id))
    except RunError as err:
        st.warning(f"Skipped {run_id}: {err}")
        continue
    series.append((labels[run_id], rounds, before))
    table.append((labels[run_id], metrics))

st.subheader("Before and after SAU")
st.dataframe(charts.compare_rows(table), hide_index=True)
st.caption(
    "ACC, ASR and RA: shares of the test images (see *Purify* for each in plain words). DER: 0.5 "
    "means nothing changed, 1 that the backdoor is gone at no cost in accuracy."
)
components.plot(charts.compare_curves(series), "compare-curves")
st.caption(
    HELP["round"] + " Curves use each run's live evaluation subset; the table the full test sets."
)
