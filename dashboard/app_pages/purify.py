"""Defend: run a defence (SAU first) on the chosen backdoored model and watch, live, what it
does to the backdoor; or queue every defence on it for Compare."""

from __future__ import annotations

import contextlib

import streamlit as st

from dashboard import charts, components, state, widgets
from dashboard.glossary import HELP, pct
from dashboard.report import build_report
from dashboard.verdict import verdict_panel
from sau_core.attacks import AttackSpec
from sau_core.data import DataSpec
from sau_core.defenses import DEFENSES
from sau_core.lab.caveats import sau_caveats, stored_train_caveats
from sau_core.lab.recipes import recipe
from sau_core.serving import PurifyJob
from sau_core.serving.runs import RunError

st.title("Defend the model")
components.pending_panel()

runner = state.runner()
linked = state.linked_run()
if linked is not None and linked.kind in ("attack", "import"):
    try:
        st.session_state[state.MODEL] = state.model_from_run(linked)
    except RunError as err:
        st.warning(str(err))
run_id = state.current_run("purify")
model = state.model()
opened = None  # the defence of the run on show
if run_id is not None:
    with contextlib.suppress(RunError):
        opened = (state.store().get(run_id).config().get("job") or {}).get("defense", "sau")
names = list(DEFENSES)
if "defend.defense" not in st.session_state or (opened and model is None):
    st.session_state["defend.defense"] = opened if opened in DEFENSES else names[0]
choice = st.selectbox("Defence", names, key="defend.defense",
                      format_func=lambda n: DEFENSES[n].title,
                      help="SAU is this lab's subject; the others are the baselines the SAU "
                      "paper compares it with. Compare sets their runs on one model side by "
                      "side.")  # fmt: skip
entry = DEFENSES[choice]
short = entry.title.split(":")[0]
with st.expander(f"What {short} does, and where it fails", icon=":material/school:"):
    st.markdown(entry.summary)
    st.markdown(f"**Where it is known to fail.** {entry.weakness}")
    st.caption(f"From: {entry.paper.cite()}.")
    if choice == "sau":
        st.markdown("\n\n".join(HELP[k] for k in ("acc", "asr", "ra", "der", "shared")))
    else:
        st.markdown("\n\n".join(HELP[k] for k in ("acc", "asr", "ra", "der")))
# settings that only apply with a GPU are not shown without one
CUDA_ONLY = () if state.has_cuda() else ("amp",)


# ------------------------------------------------------------------------------- settings
if model is None and run_id is None:
    st.info("Choose a backdoored model on *Set up* first.")
    st.page_link("app_pages/setup.py", label="Go to Set up", icon=":material/science:")
elif model is None:  # a run opened by its link: show it, and where to start another
    st.page_link("app_pages/setup.py", label="Defend another model: choose it on Set up",
                 icon=":material/science:")  # fmt: skip
else:
    with st.container(border=True):
        st.markdown(f"**Model**: {model['title']} · `{model['arch']}` on `{model['data']['name']}`")
        if model.get("metrics"):
            components.metric_row(model["metrics"])
    data_name = model["data"]["name"]
    base = entry.default_config(data_name)
    ratio_default = recipe(data_name).clean_ratio
    try:
        n_train = len(state.load_split(model["data"]).train)
    except (ValueError, RuntimeError, OSError):
        n_train = 0
    attack_name = (model.get("attack") or {}).get("name")
    schema = [e for e in widgets.field_schema(entry.config, base) if e["name"] not in CUDA_ONLY]
    key = f"{choice}.{data_name}"
    problems: list[str] = []
    settings = st.expander(f"{short} settings", expanded=run_id is None, icon=":material/tune:")
    with settings:
        own = recipe(data_name).defense(choice)
        st.caption(
            f"Defaults for {data_name}: the paper's settings"
            + (f", except {', '.join(sorted(own))} (measured on {data_name})." if own else ".")
        )
        basic, advanced = st.tabs(["Main settings", f"All {short} settings"])
        with basic:
            c1, c2, c3 = st.columns(3)
            with c1:
                main = widgets.render_fields(schema, key, only=("rounds",), columns=1,
                                             problems=problems)  # fmt: skip
            with c2:
                ratio_field = {"name": "clean_ratio", "type": "float", "default": ratio_default,
                               "min": 0.0, "exclusive_min": True, "max": 1.0,
                               "help": HELP["clean_ratio"]}  # fmt: skip
                clean_ratio = widgets.render_fields([ratio_field], key, columns=1,
                                                    problems=problems)["clean_ratio"]  # fmt: skip
            with c3:
                known = st.checkbox("The trigger is known (measure ASR)",
                                    value=bool(model.get("attack")),
                                    disabled=not model.get("attack"), help=HELP["trigger_known"],
                                    key=f"{key}.known")  # fmt: skip
        with advanced:
            rest = widgets.render_fields(schema, key, skip=("rounds",), columns=3,
                                         problems=problems)  # fmt: skip
        c1, c2 = st.columns([1, 2])
        devices = state.devices()
        device = c1.selectbox("Device", devices, key=f"{key}.device",
                              help="auto: a GPU when there is one, else the CPU.")  # fmt: skip
        label = c2.text_input("Name for this run (optional)", key=f"{key}.label", max_chars=120)
    config = None
    if not problems:
        try:
            config = widgets.build_config(entry.config, {**main, **rest}, base)
        except ValueError as err:
            problems.append(str(err))
    n_clean = round(float(clean_ratio) * n_train) if not problems else 0
    side = state.checkpoint_sidecar(model["path"])
    notes = [] if side is None else stored_train_caveats(side, model["data"])
    if choice == "sau":
        notes += sau_caveats(model["data"], n_clean, config or base, attack_name,
                             model.get("arch"), clean_ratio=None if problems else float(clean_ratio))  # fmt: skip
    for note in notes:
        st.warning(f"**Before you run: where {short} is known to be weak.** {note}",
                   icon=":material/info:")  # fmt: skip
    cannot = None
    if entry.check_model is not None:
        try:
            entry.check_model(state.load_model(model["path"]))
        except (ValueError, RuntimeError, OSError) as err:
            cannot = str(err)
            st.error(f"{short} cannot run on this model: {cannot}", icon=":material/block:")
    if problems:
        st.error("Fix these settings first: " + "; ".join(problems) + ".", icon=":material/error:")
    c1, c2 = st.columns([1, 2])
    go = c1.button(f"Run {short}", type="primary", disabled=bool(problems) or bool(cannot),
                   key="purify.go")  # fmt: skip
    every = c2.button("Run every defence on this model", key="purify.every",
                      help="Queues the six defences, each with its defaults for this data set "
                      "(your settings above are not used), with the clean ratio and trigger "
                      "chosen here; Compare then sets them side by side.")  # fmt: skip
    if every and not problems:
        spec = AttackSpec.from_dict(model["attack"]) if known and model.get("attack") else None
        data = DataSpec.from_dict(model["data"])
        jobs = [(PurifyJob(checkpoint=model["path"], clean_ratio=float(clean_ratio), attack=spec,
                           data=data, device=None if device == "auto" else device, defense=n),
                 f"{DEFENSES[n].title.split(':')[0]} on {label or model['title']}")
                for n in DEFENSES]  # fmt: skip
        state.queue_all(jobs)
        st.rerun()  # the panel at the top shows what waits
    if go and config is not None:
        try:
            spec = AttackSpec.from_dict(model["attack"]) if known and model.get("attack") else None
            job = PurifyJob(
                checkpoint=model["path"],
                defense=choice,
                settings=config,
                clean_ratio=float(clean_ratio),
                attack=spec,
                data=DataSpec.from_dict(model["data"]),
                device=None if device == "auto" else device,
            )
            # The data set this server already holds (read-only) saves the job loading it again.
            default_label = model["title"] if choice == "sau" else f"{short} on {model['title']}"
            new_id = state.submit(job, label or default_label, state.load_split(job.data))
        except (ValueError, RuntimeError, OSError) as err:
            st.error(f"Cannot start: {err}")
        else:
            state.watch(new_id, "purify")
            run_id = new_id

# ------------------------------------------------------------------------------ the run
if run_id is not None:
    st.divider()
    try:
        view = runner.view(run_id)
        config = state.store().get(run_id).config()
    except RunError as err:
        st.warning(f"Cannot show run {run_id}: {err}")
        st.stop()
    st.subheader(f"Run: {config.get('label') or run_id}")
    st.caption(f"`{run_id}` · reload-safe link: `?run={run_id}`")
    class_names = None
    job = config.get("job", {})
    defense = job.get("defense", "sau")
    total = (job.get("settings") or job.get("sau") or {}).get("rounds")
    target = charts.attack_target(job)
    known = job.get("attack") is not None
    if view.active:

        @st.fragment(run_every=components.refresh_every(view))
        def live() -> None:
            v = runner.view(run_id)
            components.purify_view(v, runner, class_names, total, target, known=known,
                                   owner=state.owner(), defense=defense)  # fmt: skip
            if v.state != view.state:  # it started or ended: redraw the page (and the cadence)
                st.rerun()

        live()
    else:
        components.purify_view(view, runner, class_names, total, target, known=known,
                               owner=state.owner(), defense=defense)  # fmt: skip
        if view.state == "interrupted":
            components.resume_panel(run_id, "purify")
        if view.metrics:
            c1, c2, c3 = st.columns(3)
            if defense == "sau":
                c1.page_link("app_pages/gallery.py", label="Shared examples",
                             icon=":material/photo_library:", query_params={"run": run_id},
                             help="The probe batch's shared adversarial examples, round by round.")  # fmt: skip
            else:
                c1.page_link("app_pages/compare.py", label="Compare defences",
                             icon=":material/compare_arrows:",
                             help="This run beside the other defences run on the same model.")  # fmt: skip
            c2.download_button(
                "Run (zip)",
                data=lambda: state.store().get(run_id).zip_bytes(),
                file_name=f"{run_id}.zip",
                mime="application/zip",
                icon=":material/download:",
                help="The whole run directory: a checkpoint, its metrics and every event.",
            )
            c3.download_button(
                "Report (HTML)",
                data=lambda: build_report(state.store().get(run_id)),
                file_name=f"{run_id}.html",
                mime="text/html",
                icon=":material/description:",
                help="One file that opens offline: settings, table, interactive curves, the "
                "shared adversarial examples and saliency maps.",
            )
            after = view.metrics.get("after", {})
            line = f"Defended model: ACC {pct(after.get('acc'))}"
            if after.get("asr") is not None:
                line += f", ASR {pct(after.get('asr'))}"
            st.caption(line + ".")
            verdict_panel(state.store().get(run_id).path, view.metrics, run_id)
    components.config_expander(job)
