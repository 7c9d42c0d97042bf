"""Drawing pieces several pages share: progress, metric rows, image grids, the live job views.

They draw what a :class:`sau_core.serving.JobView` holds; nothing here computes a metric.
"""

from __future__ import annotations

import json
import time

import numpy as np
import streamlit as st

from sau_core.defenses import DEFENSES
from sau_core.explain.pictures import to_uint8
from sau_core.lab.caveats import (
    landing_summary,
    run_caveats,
    trigger_caveats,
    unknown_trigger_report,
)
from sau_core.serving import JobRunner, JobView

from . import charts
from .glossary import HELP, duration, pct, progress_label, shorten_uris

# Seconds between redraws of a running job's live view. Every redraw costs the 2 cores CPU
# time that the job itself needs (the server builds the charts, the browser draws them): with
# 1 s the small CNN's 60 SAU rounds took 57 s in the dashboard against 33 s bare, with 2 s 37-41 s;
# the demo's wide_cnn with 2 s: 45-47 s against 31-32 s (bench/bench_dashboard.py).
LIVE_REFRESH_S = 2.0
QUEUED_REFRESH_S = 5.0  # a waiting job's page: only its place in the queue changes


def refresh_every(view: JobView) -> float:
    """How often a live view redraws: every 2 s while its job runs, every 5 s while it waits (a
    class of 30 mostly waits; each redraw costs the server and the browser)."""
    return LIVE_REFRESH_S if view.state == "running" else QUEUED_REFRESH_S


def pending_panel() -> None:
    """This session's jobs that wait for room in the queue (Run every defence): queued as room
    frees, checked every few seconds while there are any."""
    from . import state

    if not state.pending():
        return

    @st.fragment(run_every=QUEUED_REFRESH_S)
    def feed() -> None:
        queued, failed = state.feed_pending()
        for message in failed:
            st.error(f"Not queued: {message}", icon=":material/error:")
        left = state.pending()
        if left:
            names = ", ".join(label.split(" on ")[0] for label in left)
            st.info(f"Waiting for room in the queue (a session may have only a few jobs waiting "
                    f"at once): {names}. They are queued as the others start; Compare sets "
                    "them side by side.", icon=":material/hourglass_top:")  # fmt: skip
        elif queued or failed:
            st.rerun()  # all queued: drop the panel

    feed()


STATE_ICON = {
    "queued": ":material/hourglass_top:",
    "running": ":material/directions_run:",
    "finished": ":material/check_circle:",
    "stopped": ":material/stop_circle:",
    "failed": ":material/error:",
    "interrupted": ":material/warning:",
}


def metric_row(
    current: dict | None,
    before: dict | None = None,
    *,
    label: str = "",
    keys: tuple[str, ...] = ("acc", "asr", "ra"),
) -> None:
    """ACC, ASR, RA (``keys``) as st.metric, with the change from ``before`` and the help.

    A model measured without its trigger (ASR and RA None) shows ACC and says so, not dashes."""
    unmeasured = current is not None and current.get("asr") is None and current.get("ra") is None
    if unmeasured and keys != ("acc",):
        keys = ("acc",)
        st.caption("ASR and RA: not measured (the trigger is unknown).")
    cols = st.columns(3)
    for col, key in zip(cols, keys, strict=False):
        value = None if current is None else current.get(key)
        delta = None
        if before is not None and value is not None and before.get(key) is not None:
            delta = f"{100 * (value - before[key]):+.1f} pts"
        color = "inverse" if key == "asr" else "normal"  # a falling ASR is good news
        col.metric(f"{label}{key.upper()}", pct(value), delta, delta_color=color, help=HELP[key])


def progress(view: JobView) -> None:
    """Progress bar with the round or epoch, the ETA and the device."""
    p = view.progress()
    st.progress(p.fraction, text=progress_label(view, p))


def images(items: list[tuple[np.ndarray, str]], columns: int = 6) -> None:
    """A grid of (uint8 image, caption) pairs."""
    for start in range(0, len(items), columns):
        cols = st.columns(columns)
        for col, (img, caption) in zip(cols, items[start : start + columns], strict=False):
            col.image(img, caption=caption)


def strip(tensors, gap: int = 4) -> np.ndarray:
    """Images (C, H, W) side by side as one uint8 picture, separated by white gaps."""
    parts = [to_uint8(t) for t in tensors]
    h = max(p.shape[0] for p in parts)
    white = np.full((h, gap, 3), 255, dtype=np.uint8)
    out = []
    for i, p in enumerate(parts):
        if i:
            out.append(white)
        out.append(p)
    return np.concatenate(out, axis=1)


def state_line(view: JobView) -> None:
    icon = STATE_ICON.get(view.state, "")
    text = f"{icon} **{view.state}**"
    if view.message:
        text += f": {view.message}"
    if view.state == "queued" and view.queue_position is not None:
        n = view.queue_position
        text += f": {n} job{'' if n == 1 else 's'} ahead of yours"
    if view.state == "failed":
        st.error(text)
    elif view.state in ("stopped", "interrupted"):
        st.warning(text)
    else:
        st.markdown(text)


def resume_panel(run_id: str, kind: str) -> None:
    """An interrupted run: what is kept, and Resume for the session that started it."""
    from . import state

    last = state.store().get(run_id).resume_round() or 0
    what, unit = ("run", "round") if kind == "purify" else ("training", "epoch")
    st.info(f"This {what} was interrupted. Its state after {unit} {last} is kept: resuming "
            f"continues from there with the numbers of an uninterrupted {what}.")  # fmt: skip
    if not state.started_by_me(run_id):
        st.caption("Only the session that started this run can resume it.")
    elif st.button(f"Resume from {unit} {last}", type="primary", key=f"resume-{run_id}"):
        try:
            state.resume(run_id)
        except ValueError as err:  # RunError is one
            st.error(f"Cannot resume: {err}")
        else:
            st.rerun()


def may_control(runner: JobRunner, run_id: str, owner: str) -> bool:
    """Whether this session may stop this job: only the session that started (or resumed) it;
    a link lets anyone watch a run, not steer it."""
    holder = runner.owner_of(run_id)
    return holder is not None and holder in ("", owner)


def stop_button(runner: JobRunner, view: JobView, owner: str) -> None:
    if not view.active:
        return
    if not runner.is_active(view.run_id):
        st.caption("This run belongs to another server process; it cannot be stopped from here.")
        return
    if not may_control(runner, view.run_id, owner):
        st.caption("Watching: only the session that started this run can stop it.")
        return
    if st.button(
        "Stop",
        key=f"stop-{view.run_id}",
        icon=":material/stop_circle:",
        help="Stops within one batch.",
    ):
        runner.stop(view.run_id, owner=owner)
        st.toast("Stopping: the job ends after the current batch.")


def plot(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False, "showTips": False})


def run_header(view: JobView, runner: JobRunner, owner: str) -> None:
    """A run's state line; while it runs, its progress bar beside a Stop button (for the
    session that started it)."""
    state_line(view)
    if view.active:
        c1, c2 = st.columns([5, 1])
        with c1:
            progress(view)
        with c2:
            stop_button(runner, view, owner)


# ---------------------------------------------------------------------------------- purify
def purify_view(
    view: JobView,
    runner: JobRunner,
    class_names: list[str] | None,
    total: int | None = None,
    target: int | None = None,
    *,
    known: bool = True,
    owner: str = "",
    defense: str = "sau",
) -> None:
    """Everything about one defence run: progress, metrics, curves; the summary once it is over.

    ``known``: whether the run measured a trigger; without one the page says what it measures
    instead of drawing empty ASR charts (and, for SAU, shows where h0's adversarial examples
    land, the evidence there is of a target). ``owner``: the session looking (Stop is its own
    runs'). ``defense``: the registry name; SAU's own views (shared-example counts, where h0's
    examples land) are drawn for SAU only.
    """
    sau = defense == "sau"
    title = DEFENSES[defense].title.split(":")[0] if defense in DEFENSES else defense
    run_header(view, runner, owner)
    latest = view.rounds[-1] if view.rounds else None
    if latest is not None or view.before is not None:
        st.caption(
            f"Round {latest['round'] if latest else 0} on the live evaluation set"
            if view.active
            else "Last round"
        )
        metric_row(latest or view.before, view.before if latest else None,
                   keys=("acc", "asr", "ra") if known else ("acc",))  # fmt: skip
    if not known:
        st.caption(
            f"ASR and RA are not measured: the trigger is unknown. {title} runs all the same (it "
            "never uses the trigger)"
            + ("; the chart of where h0's adversarial examples land is the evidence of a target."
               if sau else "."),
            help=HELP["trigger_known"],
        )  # fmt: skip
    if sau:
        for note in run_caveats(view.rounds, target):
            st.warning(f"**Why this run may not move.** {note}", icon=":material/info:")
    if latest is not None and sau:
        shared_share = latest["shared"] / max(1, latest["n"])
        st.caption(
            f"Shared adversarial examples in the last round: **{latest['shared']}** of "
            f"{latest['n']} clean images ({pct(shared_share)}).",
            help=HELP["shared"],
        )
    elif latest is not None and latest.get("extras"):
        st.caption(extras_line(defense, latest["extras"]))
    landing = sau and any(r.get("adv_classes") for r in view.rounds)
    if view.rounds or view.before:
        a, b = st.columns(2)
        with a:
            plot(charts.metric_curves(view.rounds, view.before, total), f"curves-{view.run_id}")
            st.caption(HELP["round"])
        with b:
            if known:
                plot(
                    charts.per_class_asr_curves(view.rounds, view.before, class_names, total),
                    f"perclass-{view.run_id}",
                )
                st.caption(HELP["per_class_asr"])
            elif landing:
                _landing(view, target, class_names, total)
        if view.active:  # while it runs: the latest numbers (the charts cost every redraw)
            live_numbers(view)
        else:
            c, d = st.columns(2)
            with c:
                plot(charts.loss_curves(view.batches), f"loss-{view.run_id}")
                st.caption(HELP["losses"] if sau else
                           "The loss the defence minimises, per batch, and its named terms.")  # fmt: skip
            with d:
                if sau:
                    plot(charts.sae_counts(view.rounds, total), f"counts-{view.run_id}")
                    st.caption(HELP["counts"])
            if landing and known:
                e, _ = st.columns(2)
                with e:
                    _landing(view, target, class_names, total)
    if not view.active:
        purify_summary(view, known, title)


def extras_line(defense: str, extras: dict) -> str:
    """A defence's own numbers of its last round, in words."""
    if "pruned" in extras and "channels" in extras:
        return (f"Pruned: **{extras['pruned']}** of the last convolution's {extras['channels']} "
                "channels (the most dormant on clean images), held at zero while fine-tuning.")  # fmt: skip
    if "below_threshold" in extras:
        return (f"Neurons whose mask is below the pruning threshold: **{extras['below_threshold']}**"
                f" of {extras['neurons']} (the live numbers are of the model pruned there).")  # fmt: skip
    if "phase" in extras:
        return ("Now training the **teacher** (fine-tuning); the curves show the teacher."
                if extras["phase"] == "teacher" else
                "Now distilling the teacher's attention into the **student**; the curves show "
                "the student.")  # fmt: skip
    if "delta_norm" in extras:
        return (f"Norm of the last universal perturbation (the stand-in for the trigger): "
                f"**{extras['delta_norm']:.2f}** (L2, pixel units).")  # fmt: skip
    return ", ".join(f"{k}: {v}" for k, v in extras.items())


def _landing(view: JobView, target, class_names, total) -> None:
    fig = charts.adv_class_shares(view.rounds, target, class_names, total)
    plot(fig, f"landing-{view.run_id}")
    summary = landing_summary(view.rounds)
    st.caption(HELP["landing"] + (f" Here: {summary}." if summary else ""))


def live_numbers(view: JobView) -> None:
    """The latest losses (and, for SAU, adversarial-example counts), as numbers (charts when it
    ends)."""
    batch = view.batches[-1] if view.batches else None
    rnd = view.rounds[-1] if view.rounds else None
    cols = st.columns(7)
    if batch is not None and batch.get("losses") is not None:  # another defence
        terms = [("loss", batch["loss"])] + list(batch["losses"].items())
        for col, (name, value) in zip(cols, terms[:7], strict=False):
            col.metric(name, f"{value:.3f}")
        return
    if batch is not None:
        cols[0].metric("loss", f"{batch['loss']:.3f}", help=HELP["losses"])
        cols[1].metric("L_cl", f"{batch['l_cl']:.3f}")
        cols[2].metric("L_shared", f"{batch['l_shared']:.3f}")
    if rnd is not None and "adv_h" in rnd:
        for col, key, label in zip(cols[3:], ("adv_h", "adv_h0", "common", "shared"),
                                   ("adv h", "adv h0", "common", "shared"), strict=True):  # fmt: skip
            col.metric(label, f"{rnd[key]}", help=HELP["counts"])
        st.caption(f"Counts are of the {rnd['n']} clean images of the last round.")


def purify_summary(view: JobView, known: bool = True, title: str = "SAU") -> None:
    m = view.metrics
    if not m:
        return
    st.subheader(f"Before and after {title}")
    st.table(charts.before_after_rows(m, title))
    if not known:
        lines = unknown_trigger_report(view.rounds) if title == "SAU" else [
            "Measured: ACC before and after. Not measured: ASR, RA and per-class ASR, which "
            "need the trigger (name it to measure them)."]  # fmt: skip
        st.info("\n\n".join(lines), icon=":material/help:")
    for note in trigger_caveats(m.get("after")):
        st.warning(f"**Low ASR is not the whole story.** {note}", icon=":material/info:")
    cols = st.columns(3)
    if m.get("der") is None:
        cols[0].markdown("**DER**  \nnot measured: it needs ASR, so the trigger", help=HELP["der"])
    else:
        cols[0].metric("DER", f"{m['der']:.3f}", help=HELP["der"])
    cols[1].metric("Rounds", f"{m.get('rounds_done', '–')}")
    cols[2].metric("Time", duration(m.get("seconds")), help=f"on {m.get('device', '?')}")
    st.caption(
        "Before/after are measured on the full test sets; the curves above use the live "
        "evaluation subset each round."
    )


# ---------------------------------------------------------------------------------- attack
def attack_view(view: JobView, runner: JobRunner, owner: str = "") -> None:
    run_header(view, runner, owner)
    last = view.epochs[-1] if view.epochs else None
    if last is not None:
        metric_row(last, label="")
    if view.epochs or view.batches:
        a, b = st.columns(2)
        with a:
            plot(charts.loss_curves(view.batches, sau=False), f"tloss-{view.run_id}")
        with b:
            plot(charts.train_curves(view.epochs), f"tcurves-{view.run_id}")


def config_expander(config: dict, title: str = "Settings of this run") -> None:
    with st.expander(title):
        st.code(json.dumps(shorten_uris(config), indent=2), language="json")


def now() -> float:
    return time.time()
