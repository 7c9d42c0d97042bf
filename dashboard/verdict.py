"""The verdict panel: is the backdoor gone? (a finished defence run; the probe's own files)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from sau_core.probe import (
    FIGURE_NAMES,
    describe_recovery,
    probe_run,
    read_probe,
    thresholds_text,
    verdict_from_metrics,
)

from . import charts
from .components import plot

LEVEL_ICON = {"good": ":material/check_circle:", "warn": ":material/warning:",
              "bad": ":material/error:", "unknown": ":material/help:"}  # fmt: skip
PROBE_SECONDS = "about half a minute on a 2-core CPU"


def verdict_panel(run_path: Path, metrics: dict, key: str) -> None:
    """The headline, each figure with its reading, the thresholds, the re-tuning curves and a
    button that runs the probe (it writes ``probe/`` in the run and nothing else)."""
    st.subheader("Is the backdoor gone?")
    stored = read_probe(run_path)
    v = verdict_from_metrics(metrics, stored)
    # st.error is kept for what went wrong in the app; a bad verdict is a finding, not an error
    show = {"good": st.success, "warn": st.warning, "bad": st.warning, "unknown": st.info}
    show[v["level"]](f"**Verdict: {v['headline']}.**", icon=LEVEL_ICON[v["level"]])
    st.table([{"figure": FIGURE_NAMES.get(r["key"], r["key"]), "value": r["value"],
               "reading": r["reading"]} for r in v["readings"]])  # fmt: skip
    back = (stored or {}).get("settings", {}).get("back", 0.5)
    st.caption("Thresholds: " + thresholds_text(back))
    known = (metrics.get("after") or {}).get("asr") is not None
    if stored and stored.get("reactivation"):
        re = stored["reactivation"]
        charts_col, text_col = st.columns([3, 2])
        with charts_col:
            plot(charts.reactivation_curves(re, back), f"re-{key}")
        with text_col:
            s = stored["settings"]
            st.caption(
                f"Re-tuning (Min et al., NeurIPS 2024): {s['epochs']} epochs of fine-tuning at "
                f"learning rate {s['lr']} on {s['clean']} clean training images and "
                f"{re.get('set', {}).get('poisoned', s['poisoned'])} poisoned ones, for this "
                "model and for a model of the same "
                "kind trained here without poison. A backdoor that was only hidden comes back "
                "sooner than it can be learnt from scratch.")  # fmt: skip
            rec = stored.get("recovery") or {}
            if rec.get("available"):
                st.caption(f"Trigger recovery: {describe_recovery(rec)}. The Gallery shows the "
                           "pattern.")  # fmt: skip
    elif not known:
        st.caption("Without the trigger the evidence is where the backdoored model's adversarial "
                   "examples land (above) and the pattern SAU found (Gallery): a likely target "
                   "class and where the trigger may sit. Name the trigger to measure the rest.")  # fmt: skip
    elif known:
        st.caption("The verdict above reads the defence's own figures. The re-tuning test adds "
                   "whether the backdoor comes back faster than in a model that never had one.")  # fmt: skip
        if st.button(f"Run the re-tuning test ({PROBE_SECONDS})", key=f"probe-{key}",
                     icon=":material/science:"):  # fmt: skip
            with st.spinner("Re-tuning the defended model and a never-backdoored one ..."):
                try:
                    probe_run(run_path)
                except (ValueError, OSError, RuntimeError) as err:
                    st.error(
                        f"The probe could not run: {err}. The run's own files were not "
                        "changed (the probe writes only its probe/ folder)."
                    )
                    return
            st.rerun()
