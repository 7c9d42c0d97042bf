"""Attack: watch a backdoored model train, then see what its backdoor does to test images."""

from __future__ import annotations

import json

import streamlit as st

from dashboard import components, state
from sau_core.attacks import AttackSpec
from sau_core.explain.pictures import triggered_examples
from sau_core.io.checkpoint import CheckpointError, load_checkpoint
from sau_core.serving.runs import RunError

st.title("Attack: plant a backdoor")
st.markdown(
    "The attacker stamps a trigger on a share of the training images and relabels them with "
    "the target class. The model learns the real task **and** the hidden rule."
)

runner = state.runner()
state.linked_run()
run_id = state.current_run("attack")
if run_id is None:
    st.info("No attack run yet. Start one on *Set up* (or reopen one on *Runs*).")
    st.page_link("app_pages/setup.py", label="Go to Set up", icon=":material/science:")
    st.stop()

try:
    view = runner.view(run_id)
except RunError as err:
    st.warning(f"Cannot show run {run_id}: {err}")
    st.stop()

st.caption(f"Run `{run_id}` · link to it: `?run={run_id}`")


@st.cache_resource(show_spinner=False, max_entries=8)
def _triggered(path: str, stamp: float, spec_json: str, data_json: str):
    """The run's model on triggered test images (cached per checkpoint file version)."""
    ckpt = load_checkpoint(path)
    split = state.load_split(json.loads(data_json))
    return triggered_examples(ckpt.model, split.test, AttackSpec.from_dict(json.loads(spec_json)))


if view.active:

    @st.fragment(run_every=components.refresh_every(view))
    def live() -> None:
        v = runner.view(run_id)
        components.attack_view(v, runner, state.owner())
        if v.state != view.state:  # it started or ended: redraw the page (and the cadence)
            st.rerun()

    live()
else:
    components.attack_view(view, runner, state.owner())
    run = state.store().get(run_id)
    config = run.config().get("job", {})
    if view.state == "interrupted":
        components.resume_panel(run_id, "attack")
    if view.state in ("finished", "stopped") and run.has_checkpoint() and view.metrics:
        st.subheader("The backdoored model")
        components.metric_row(view.metrics)
        side = state.checkpoint_sidecar(str(run.path))
        planted = side.attack if side is not None and side.attack else config.get("attack")
        try:  # the attack as planted (LF's pattern is computed then), else as asked
            examples = _triggered(str(run.path), (run.path / "model.safetensors").stat().st_mtime,
                                  json.dumps(planted, sort_keys=True),
                                  json.dumps(config["data"], sort_keys=True))  # fmt: skip
        except (CheckpointError, ValueError, KeyError, OSError) as err:
            st.warning(f"Cannot show triggered examples: {err}")
            examples = []
        if examples:
            st.markdown(
                "**Triggered test images**: left the clean image and the model's answer, right "
                "the same image with the trigger. *(target)* marks an answer that is the attacker's target class."
            )
            items = []
            for e in examples:
                hit = "(target)" if e.pred_triggered == e.target else ""
                caption = (
                    f"true {e.y}: clean → {e.pred_clean}, triggered → {e.pred_triggered} {hit}"
                )
                items.append((components.strip([e.clean, e.triggered]), caption))
            components.images(items, columns=4)
        if st.button("Defend this model", type="primary"):
            try:
                st.session_state[state.MODEL] = state.model_from_run(run)
            except RunError as err:
                st.error(str(err))
            else:
                st.switch_page("app_pages/purify.py")
    components.config_expander(config)
