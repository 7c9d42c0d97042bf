"""Runs: every attack, purification and upload kept on disk; reopen one or download it."""

from __future__ import annotations

import streamlit as st

from dashboard import components, state
from dashboard.glossary import pct
from dashboard.report import build_report

st.title("Runs")
store = state.store()
runner = state.runner()
st.caption(f"Kept under `{store.root}` (set `SAU_LAB_RUNS` to use another folder).")

runs, problems = state.visible_runs()  # this session's runs and those it opened by link
if problems:
    with st.expander(f"{len(problems)} folder(s) skipped (not readable as runs)"):
        for p in problems:
            st.markdown(f"- {p}")
if not runs:
    st.info(
        "No runs yet in this session. Train or purify a model and it will be listed here; "
        "a run started elsewhere opens by its link (`?run=ID`)."
    )
    st.stop()


def _summary(r) -> tuple[str, str]:
    m = r.metrics or {}
    block = (m.get("after") or {}) if r.kind == "purify" else m
    if not block:
        return "", ""
    asr = block.get("asr")
    return pct(block.get("acc")), "not measured" if asr is None else pct(asr)


rows = []
for r in runs:
    acc, asr = _summary(r)
    progress = f"{r.round}/{r.rounds}" if r.rounds else ""
    # the columns a person reads first come first: at 1024 px the last ones scroll into view
    rows.append({"name": r.label or r.id, "kind": r.kind, "state": r.state, "ACC": acc,
                 "ASR": asr, "progress": progress, "created": r.created[:16].replace("T", " "),
                 "run": r.id})  # fmt: skip
st.caption(
    "ACC and ASR: of the model a run produced (after SAU for purify runs); ASR is not "
    "measured when the trigger is unknown. Select a row."
)
picked = st.dataframe(rows, hide_index=True, on_select="rerun", selection_mode="single-row",
                      key="runs.table")  # fmt: skip
selected = picked.selection.rows if picked is not None else []
if not selected:
    st.stop()
info = runs[selected[0]]
st.subheader(info.label or info.id)
st.caption(
    f"`{info.id}` · {info.kind} · {info.state}" + (f" · {info.message}" if info.message else "")
)
page_of = {"attack": "app_pages/attack.py", "purify": "app_pages/purify.py"}
page = page_of.get(info.kind)
c1, c2, c3 = st.columns(3)
if page is not None:
    c1.page_link(page, label="Open", icon=":material/open_in_new:", query_params={"run": info.id})
else:  # an uploaded model: purify it
    c1.page_link("app_pages/purify.py", label="Defend this model", icon=":material/shield:",
                 query_params={"run": info.id})  # fmt: skip
c2.download_button(
    "Download (zip)",
    data=lambda: store.get(info.id).zip_bytes(),
    file_name=f"{info.id}.zip",
    mime="application/zip",
    key=f"zip-{info.id}",
)
if runner.is_active(info.id):
    if not components.may_control(runner, info.id, state.owner()):
        c3.caption("Watching: only the session that started it can stop it.")
    elif c3.button("Stop", key=f"runs-stop-{info.id}"):
        runner.stop(info.id, owner=state.owner())
        st.toast("Stopping.")
elif info.state == "interrupted" and info.kind in page_of and not state.started_by_me(info.id):
    c3.caption("Only the session that started it can resume it.")
elif info.state == "interrupted" and info.kind in page_of:
    last = store.get(info.id).resume_round() or 0
    unit = "round" if info.kind == "purify" else "epoch"
    if c3.button(f"Resume from {unit} {last}", key=f"runs-resume-{info.id}", type="primary",
                 help="Continue in the same run directory; the numbers are those of a run that "
                 "was never interrupted."):  # fmt: skip
        try:
            state.resume(info.id)
        except ValueError as err:  # RunError is one
            st.error(f"Cannot resume: {err}")
        else:
            st.switch_page(page_of[info.kind], query_params={"run": info.id})
elif info.metrics:
    c3.download_button(
        "Report (HTML)",
        data=lambda: build_report(store.get(info.id)),
        file_name=f"{info.id}.html",
        mime="text/html",
        key=f"report-{info.id}",
        help="One self-contained file that opens offline.",
    )
components.config_expander(info.config)
