"""Gallery: the probe batch's shared adversarial examples, round by round."""

from __future__ import annotations

import streamlit as st

from dashboard import components, state
from dashboard.glossary import ATTACK_NAMES, HELP
from sau_core.attacks import AttackSpec
from sau_core.explain.pictures import (
    best_round,
    diverging,
    diverging_legend,
    probe_tiles,
    trigger_picture,
)
from sau_core.probe import describe_match, match, recover
from sau_core.probe.run import stored_probes
from sau_core.serving.runs import RunError

st.title("Shared adversarial examples")
st.markdown(HELP["shared"])
st.caption(HELP["h0_h"])

store = state.store()
state.linked_run()


def _is_sau(run_id: str) -> bool:
    """Shared adversarial examples are SAU's: other defences keep no probe batch."""
    try:
        return (store.get(run_id).config().get("job") or {}).get("defense", "sau") == "sau"
    except RunError:
        return False


purify_runs = [r for r in state.visible_runs()[0] if r.kind == "purify" and _is_sau(r.id)]
current = state.current_run("purify")
if current is not None and not _is_sau(current):
    st.caption(f"Run {current} is not a SAU run: shared adversarial examples are SAU's.")
    current = None
ids = [r.id for r in purify_runs]
if current is not None and current not in ids:
    ids.insert(0, current)
if not ids:
    st.info("No SAU run yet: start one on *Defend*.")
    st.page_link("app_pages/purify.py", label="Go to Defend", icon=":material/shield:")
    st.stop()
labels = {r.id: f"{r.label or r.id} ({r.state})" for r in purify_runs}
run_id = st.selectbox("SAU run", ids, index=ids.index(current) if current in ids else 0,
                      format_func=lambda i: labels.get(i, i), key="gallery.run")  # fmt: skip
if run_id != current:
    state.watch(run_id, "purify")
try:
    run = store.get(run_id)
    job = run.config().get("job", {})
except RunError as err:
    st.warning(str(err))
    st.stop()


def _trigger_picture(probe) -> None:
    spec_d = job.get("attack")
    if not spec_d:
        st.caption("The trigger of this model is unknown: the perturbations are the evidence.")
        return
    try:
        info = state.checkpoint_info(job["checkpoint"])
        pic = trigger_picture(AttackSpec.from_dict(spec_d), info, probe.x[0])
    except (KeyError, ValueError) as err:
        st.caption(f"Cannot draw the trigger: {err}")
        return
    name = ATTACK_NAMES.get(spec_d["name"], spec_d["name"])
    st.image(pic, caption=f"the real trigger ({name}), its pixels outlined in orange")
    st.caption("SAU never sees it. Compare it with the perturbations it finds.")


@st.cache_data(max_entries=32, show_spinner=False)
def _shared_counts(run_id: str, rounds: tuple[int, ...]) -> dict[int, int]:
    """Shared examples in each probe snapshot (what the Gallery opens on)."""
    counts = {}
    for r in rounds:
        try:
            counts[r] = int(store.get(run_id).load_probe(r).shared.sum())
        except RunError:
            counts[r] = -1
    return counts


def _first_round(rounds: list[int]) -> int:
    """The round with the most shared probe examples (:func:`sau_core.explain.pictures.best_round`): the
    last round often has none left, which teaches nothing."""
    return best_round(_shared_counts(run_id, tuple(rounds)))


def gallery() -> None:
    rounds = run.probe_rounds()
    if not rounds:
        st.info("No probe snapshot yet (set *probe size* above 0 to record them).")
        return
    pick = rounds[0]
    if len(rounds) > 1:
        wkey = f"gallery.round.{run_id}"
        if wkey not in st.session_state or st.session_state[wkey] not in rounds:
            st.session_state[wkey] = _first_round(rounds)
        pick = st.select_slider("Round", rounds, key=wkey,
                                help=HELP["round"] + " The page opens on the round whose probe "
                                "images have the most shared adversarial examples.")  # fmt: skip
    try:
        probe = run.load_probe(pick)
    except RunError as err:
        st.warning(str(err))
        return
    eps = (job.get("sau") or {}).get("eps")
    scale = float(eps) if (job.get("sau") or {}).get("norm", "Linf") == "Linf" and eps else None
    tiles = probe_tiles(probe, scale)
    n_shared = sum(t.shared for t in tiles)
    n_common = sum(t.common for t in tiles)
    st.markdown(
        f"Round **{pick}**: **{n_shared}** of {len(tiles)} probe images have a shared adversarial "
        f"example; {n_common} fool both models. Each picture: clean image | perturbation | "
        "adversarial example."
    )
    c1, c2 = st.columns([1, 3])
    c1.image(diverging_legend())
    c2.caption(
        "Perturbation colours: blue = darker, grey = unchanged, red = brighter"
        + (
            f", full colour at the search's radius eps = {scale:g}."
            if scale
            else ", full colour at the largest change in the batch."
        )  # fmt: skip
    )
    left, right = st.columns([4, 1])
    with right:
        _trigger_picture(probe)
    with left:
        items = []
        for t in tiles:
            flag = "SHARED" if t.shared else ("common" if t.common else "not shared")
            caption = f"true {t.y} · h0 → {t.h0} · h → {t.h} · {flag}"
            items.append((components.strip([t.clean, t.perturbation, t.adversarial]), caption))
        components.images(items, columns=3)


@st.cache_data(max_entries=8, show_spinner=False)
def _recovered(run_id: str, rounds: tuple[int, ...]) -> tuple[int, list]:
    """How many perturbations the run stored and the three most populated classes' patterns
    (read and averaged once per run and set of rounds, not on every redraw of the page)."""
    probes = stored_probes(store.get(run_id).path)
    return (0, []) if probes is None else (len(probes[0]), recover(*probes)[:3])


def recovered_pattern() -> None:
    """Trigger recovery: the mean of the stored perturbations per class h0 lands on."""
    n, patterns = _recovered(run_id, tuple(run.probe_rounds()))
    if not n:
        return
    st.subheader("The pattern SAU found")
    if not patterns:
        st.caption("No stored perturbation changed the backdoored model's answer.")
        return
    st.markdown(
        f"All {n} stored perturbations (every round's probe batch), grouped by the "
        "class the backdoored model h0 gives the perturbed image. Per class: the mean "
        "perturbation (amplified: red brighter, blue darker) and how consistently the "
        "perturbations push each pixel the same way (white: all agree, black: they cancel). A "
        "backdoor shows as one class collecting most of them, with a pattern where the trigger "
        "sits. For a model whose trigger is unknown, this is the evidence of where it is and "
        "which class it serves."
    )  # fmt: skip
    spec_d = job.get("attack")
    spec = AttackSpec.from_dict(spec_d) if spec_d else None
    cols = st.columns(len(patterns))
    for col, p in zip(cols, patterns, strict=False):
        col.image(
            components.strip(
                [diverging(p.mean), p.consistency[None].expand(3, -1, -1)]
            ),  # fmt: skip
            caption=f"h0 → class {p.cls}: {p.count} perturbations",
        )
    if spec is None:
        st.caption("The trigger is unknown, so no match can be measured.")
        return
    try:
        m = match(patterns[0].mean, spec, state.checkpoint_info(job["checkpoint"]))
    except (KeyError, ValueError) as err:
        st.caption(f"Cannot compare with the real trigger: {err}")
        return
    said = describe_match(m)
    text = (f"The attack's target is class {spec.target}; the most perturbations land on class "
            f"{patterns[0].cls}. {said[:1].upper()}{said[1:]}.")  # fmt: skip
    st.caption(text)


if run.status().get("state") in ("queued", "running"):
    st.caption("The run is live: new rounds appear every few seconds.")
    st.fragment(run_every=components.LIVE_REFRESH_S)(gallery)()
else:
    gallery()
recovered_pattern()
