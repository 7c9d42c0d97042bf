"""Compare: defence runs side by side, by default every defence run on one backdoored model
(one table of ACC, ASR, RA, largest pull, DER and time; ACC and ASR curves on shared axes)."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, components, state
from dashboard.glossary import HELP
from sau_core.defenses import DEFENSES
from sau_core.serving import view_of
from sau_core.serving.runs import RunError

st.title("Compare defences")
st.markdown(
    "Which defence really cleans the model? Set the defences run on one backdoored model side "
    "by side: SAU against fine-tuning, pruning, distillation and the other unlearning method. "
    "Low ASR alone does not settle it: look at RA and at the *largest pull*, the share of "
    "triggered images the trigger still sends to one other class."
)
components.pending_panel()

store = state.store()
runs = [r for r in state.visible_runs()[0] if r.kind == "purify" and r.state not in ("queued",)]
if not runs:
    st.info("No defence run yet: start one on *Defend* (or run every defence there).")
    st.page_link("app_pages/purify.py", label="Go to Defend", icon=":material/shield:")
    st.stop()


@st.cache_data(max_entries=256, show_spinner=False)
def _job(run_id: str) -> dict:
    return store.get(run_id).config().get("job") or {}


def _source(run_id: str) -> str:
    try:
        return str(_job(run_id).get("checkpoint") or "?")
    except RunError:
        return "?"


def _defence(run_id: str) -> str:
    try:
        name = _job(run_id).get("defense", "sau")
    except RunError:
        return "?"
    return DEFENSES[name].title.split(":")[0] if name in DEFENSES else name


sources: dict[str, list] = {}
for r in runs:
    sources.setdefault(_source(r.id), []).append(r)
labels = {r.id: f"{_defence(r.id)} · {r.label or r.id} · {r.id[-6:]} ({r.state})" for r in runs}
by_model = st.toggle("Only runs on one backdoored model", value=True, key="compare.by_model",
                     help="Off: any runs, e.g. SAU on BadNets against SAU on WaNet.")  # fmt: skip
if by_model:
    names = {src: f"{src.rstrip('/').split('/')[-1]} ({len(rs)} run{'s' * (len(rs) > 1)})"
             for src, rs in sources.items()}  # fmt: skip
    src = st.selectbox("Backdoored model", list(sources), format_func=names.__getitem__,
                       key="compare.model")  # fmt: skip
    pool = sources[src]
else:
    pool = runs
ids = [r.id for r in pool]
key = f"compare.runs.{by_model}"
picked = st.multiselect("Runs", ids, default=ids[: (10 if by_model else 2)],
                        format_func=labels.__getitem__, key=key, max_selections=10)  # fmt: skip
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

st.subheader("The defended models")
rows = charts.defence_rows(table)
if rows:
    st.dataframe(rows, hide_index=True)
    st.caption(
        "On the full test sets. ACC, ASR, RA: shares of the test images. Largest pull: of the "
        "triggered images that are neither of a class nor aimed at it, the largest share the "
        "model sends to that class. DER: 0.5 means nothing changed, 1 that the backdoor is gone "
        "at no cost in accuracy. Seconds: the defence's own time on its device."
    )
else:
    st.info("None of these runs has finished yet.")
unfinished = [labels[i] for i, (_, m) in zip(picked, table, strict=False) if not m]
if unfinished:
    st.caption("Still running or without results: " + "; ".join(unfinished) + ".")
share = st.toggle("x: share of each defence's rounds", value=by_model, key="compare.share",
                  help="Defences run for 5 (i-BAU) to 100 rounds (FT); as a share of their "
                  "rounds they fit on one axis.")  # fmt: skip
components.plot(charts.compare_curves(series, share=share), "compare-curves")
st.caption(
    HELP["round"] + " Curves use each run's live evaluation subset; the table the full test sets."
)
