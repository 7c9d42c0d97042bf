"""Set up: choose the backdoored model to purify (ready-made, trained here, or uploaded)."""

from __future__ import annotations

import json

import streamlit as st

from dashboard import components, share, state, widgets
from dashboard.glossary import HELP, pct
from sau_core import ready
from sau_core.attacks import ATTACKS, AttackSpec, list_attacks, param_schema
from sau_core.data import DIGITS_RESOLUTIONS, available, list_datasets
from sau_core.jobs import AttackJob, QueueFull, import_checkpoint
from sau_core.models import MODELS
from sau_core.pipeline import DEMO, TEACHING_PRESETS, DataSpec
from sau_core.runs import RunError
from sau_core.train import TrainConfig, default_train_config
from sau_core.visual import sample_images, trigger_preview

DOWNLOADABLE = ("cifar10", "mnist", "gtsrb")  # torchvision can fetch these when online

st.title("Set up")
st.markdown(
    "SAU Lab plants a **backdoor** in an image classifier (a hidden rule: *a small trigger on "
    "any image makes the model answer the attacker's class*), then removes it with **Shared "
    "Adversarial Unlearning (SAU)**. First choose the backdoored model."
)

entries, note = ready.list_ready()
by_name = {e.name: e for e in entries}

# ---------------------------------------------------------------------- the link's set-up
# The training form's choices live in the URL (?preset=sig&res=16&...): a link reproduces them.
# They are applied once per URL, before the widgets exist; a bad parameter is reported, not used.
_query = st.query_params.to_dict()
_values, _problems = share.parse_setup_query(_query)
if st.session_state.get("setup.applied") != json.dumps(sorted(_query.items())):
    st.session_state.update(_values)
for _p in _problems:
    st.warning(f"Part of this link's set-up was ignored: {_p}.", icon=":material/link_off:")
for _k, _v in share.preset_values(DEMO.attack.name).items():  # the form's defaults: the demo
    st.session_state.setdefault(_k, _v)
st.session_state.setdefault(share.PRESET_KEY, DEMO.attack.name)


def apply_preset() -> None:
    """The chosen teaching preset fills the training form (a widget callback)."""
    st.session_state.update(share.preset_values(st.session_state[share.PRESET_KEY]))


def use_ready(entry: ready.ReadyMade) -> None:
    try:
        ready.verify(entry)
    except ValueError as err:
        st.error(str(err))
        return
    state.choose_model(str(entry.path), f"ready-made: {entry.title}", arch=entry.arch,
                       data=entry.data, attack=entry.attack, metrics=entry.metrics,
                       source="ready")  # fmt: skip
    st.switch_page("app_pages/purify.py")


# ------------------------------------------------------------------------------- quick start
with st.container(border=True):
    st.subheader("Quick start")
    demo = by_name.get(DEMO.attack.name)
    if demo is not None:
        m = demo.metrics
        st.markdown(
            f"The demo preset: **{demo.title}**, already backdoored "
            f"(ACC {pct(m.get('acc'))}, ASR {pct(m.get('asr'))}). Load it and watch SAU remove "
            "the backdoor."
        )
        if st.button("Use the demo preset", type="primary", key="demo-ready"):
            use_ready(demo)
    else:
        st.markdown(
            f"No ready-made demo model here ({note or 'the manifest lists none'}). "
            "Train the demo preset instead: it takes under a minute on a laptop CPU."
        )
        if st.button("Train the demo preset", type="primary", key="demo-train"):
            job = AttackJob(DEMO.data, DEMO.arch, DEMO.attack, DEMO.train)
            try:
                run_id = state.submit(job, "demo preset")
            except QueueFull as err:
                st.error(str(err))
            else:
                state.watch(run_id, "attack")
                st.switch_page("app_pages/attack.py", query_params={"run": run_id})

    st.markdown("**Teaching presets**: the demo's settings with another attack, and the "
                "Blended lesson on a smaller and a larger model.")  # fmt: skip
    c1, c2 = st.columns([2, 1])
    preset = c1.selectbox("Preset", list(TEACHING_PRESETS), key=share.PRESET_KEY,
                          format_func=lambda n: TEACHING_PRESETS[n].title, on_change=apply_preset,
                          help="Choosing one also fills *Train your own* below.")  # fmt: skip
    c1.caption(TEACHING_PRESETS[preset].help)
    c2.write("")
    if c2.button("Use this preset", key="preset.use"):
        chosen = TEACHING_PRESETS[preset].setup
        made = by_name.get(chosen.attack.name)
        if made is not None and made.arch == chosen.arch:  # this preset, already trained
            use_ready(made)
        else:
            job = AttackJob(chosen.data, chosen.arch, chosen.attack, chosen.train)
            try:
                run_id = state.submit(job, TEACHING_PRESETS[preset].title)
            except QueueFull as err:
                st.error(str(err))
            else:
                state.watch(run_id, "attack")
                st.switch_page("app_pages/attack.py", query_params={"run": run_id})

current = state.model()
if current is not None:
    st.info(
        f"Current model: **{current['title']}**. Go to *Purify* to clean it.",
        icon=":material/info:",
    )

tab_ready, tab_train, tab_upload = st.tabs(["Ready-made", "Train your own", "Upload a model"])

# ------------------------------------------------------------------------------- ready-made
with tab_ready:
    if not entries:
        st.info(note)
    else:
        names = [e.name for e in entries]
        pick = st.selectbox("Ready-made backdoored model", names,
                            format_func=lambda n: by_name[n].title, key="ready.pick")  # fmt: skip
        entry = by_name[pick]
        components.metric_row(entry.metrics)
        st.caption(
            f"Attack settings: `{entry.attack}`. Files are checked against their SHA-256 in the "
            "manifest before use."
        )
        if st.button("Use this model", key="ready.use"):
            use_ready(entry)

# -------------------------------------------------------------------------------- training
with tab_train:
    datasets = list_datasets()
    status = {name: available(name) for name in datasets}
    ds = st.selectbox(
        "Data set",
        datasets,
        format_func=lambda n: n if status[n][0] else f"{n} (unavailable)",
        key="train.dataset",
        help="Digits ships with the app (1,797 handwritten digits). The others need their files.",
    )
    ok, reason = status[ds]
    download = False
    if not ok:
        st.warning(f"**{ds}** is not available: {reason}")
        if ds in DOWNLOADABLE:
            download = st.checkbox("Download it now (needs the internet)", key="train.download")
    kwargs: dict = {}
    if ds == "digits":
        kwargs = dict(DEMO.data.kwargs)
        kwargs["resolution"] = st.select_slider(
            "Image size (pixels)", list(DIGITS_RESOLUTIONS), key="train.resolution",
            help="The 8x8 digits, enlarged for bigger triggers.",
        )  # fmt: skip
    data = DataSpec(ds, None, kwargs)
    split = None
    if ok:
        try:
            split = state.load_split(data)
        except (ValueError, RuntimeError, OSError) as err:
            st.error(f"Cannot load {ds}: {err}")
    info = split.info if split is not None else None

    c1, c2 = st.columns(2)
    arch = c1.selectbox("Model", list(MODELS), key="train.arch",
                        help="\n\n".join(f"**{k}**: {v.help}" for k, v in MODELS.items()))  # fmt: skip
    attack = c2.selectbox("Attack", list_attacks(), key="train.attack",
                          format_func=lambda n: ATTACKS[n].help.split(":")[0],
                          help="\n\n".join(v.help for v in ATTACKS.values()))  # fmt: skip
    st.caption(ATTACKS[attack].help)
    k = info.num_classes if info is not None else 10
    c1, c2, c3 = st.columns(3)
    if not 0 <= st.session_state["train.target"] < k:
        st.warning(f"Target class {st.session_state['train.target']} does not exist here; using 0.")
        st.session_state["train.target"] = 0
    target = c1.number_input("Target class", 0, k - 1, key="train.target",
                             help=HELP["target"])  # fmt: skip
    ratio = c2.slider("Poison ratio", *share.RATIO_RANGE, step=0.01, key="train.ratio",
                      help=HELP["poison_ratio"])  # fmt: skip
    rule = c3.selectbox("Label rule", ["all2one", "all2all"], key="train.rule",
                        disabled=ATTACKS[attack].clean_label,
                        help="all2one: every triggered image goes to the target; all2all: "
                        "class y goes to y+1.")  # fmt: skip
    st.markdown("**Trigger parameters**")
    params = widgets.render_fields(param_schema(attack, info), f"attack.{attack}", columns=3)
    spec = AttackSpec(attack, params, int(target), rule, float(ratio), DEMO.attack.seed)

    if split is not None:
        st.markdown("**Trigger preview** on test images (top: clean, middle: with the trigger, "
                    "bottom: what the trigger changed, amplified)")  # fmt: skip
        try:
            spec.validate(split.info)
            x, y = sample_images(split.test, 8)
            xt, change = trigger_preview(x, split.info, attack, params)
            cols = st.columns(8)
            for i, col in enumerate(cols[: len(x)]):
                col.image(components.strip([x[i]]), caption=f"label {int(y[i])}")
                col.image(components.strip([xt[i]]))
                col.image(components.strip([change[i]]))
        except ValueError as err:
            st.error(f"These trigger settings do not work: {err}")

    with st.expander("Training settings"):
        defaults = DEMO.train if ds == DEMO.data.name else default_train_config(ds)
        train_values = widgets.render_fields(
            widgets.field_schema(TrainConfig, defaults), f"trainconf.{ds}", columns=3
        )
    # the form's choices into the URL: a link to this page reproduces them
    _form = {k: st.session_state.get(k) for k in share.FIELDS.values()}
    _preset = st.session_state.get(share.PRESET_KEY)
    if _preset in TEACHING_PRESETS and any(
        _form.get(k) != v for k, v in share.preset_values(_preset).items()
    ):
        _preset = None  # the form no longer is the preset
    _new = share.setup_query(_form, _preset)
    for _k in (share.PRESET, *share.FIELDS):
        if _k in _new and st.query_params.get(_k) != _new[_k]:
            st.query_params[_k] = _new[_k]
        elif _k not in _new and _k in st.query_params:
            del st.query_params[_k]
    st.session_state["setup.applied"] = json.dumps(sorted(st.query_params.to_dict().items()))
    label = st.text_input("Name for this run (optional)", key="train.label", max_chars=120)
    if st.button(
        "Train the backdoored model", type="primary", disabled=split is None and not download
    ):
        try:
            train = widgets.build_config(TrainConfig, train_values)
            job = AttackJob(data, arch, spec, train, download=download)
            if split is not None:
                spec.validate(split.info)
            run_id = state.submit(job, label, split)
        except (ValueError, QueueFull) as err:
            st.error(str(err))
        else:
            state.watch(run_id, "attack")
            st.switch_page("app_pages/attack.py", query_params={"run": run_id})

# ---------------------------------------------------------------------------------- upload
with tab_upload:
    st.markdown(
        "Bring your own backdoored model: its weights for one of the registered architectures "
        "(`.safetensors`, or a plain PyTorch state dict `.pt`/`.pth`, which is read without "
        "running any code). Add SAU Lab's `checkpoint.json` if you have it; otherwise name the "
        "architecture and the data set. The trigger is optional."
    )
    weights = st.file_uploader("Weights", type=["safetensors", "pt", "pth"], key="up.weights")
    sidecar = st.file_uploader("checkpoint.json (optional)", type=["json"], key="up.sidecar")
    c1, c2, c3 = st.columns(3)
    up_arch = c1.selectbox("Architecture", ["(from checkpoint.json)", *MODELS], key="up.arch")
    ready_sets = [d for d in list_datasets() if status[d][0] and d != "imagefolder"]
    up_ds = c2.selectbox("Data set", ["(from checkpoint.json)", *ready_sets], key="up.ds")
    up_res = c3.selectbox("Digits image size", list(DIGITS_RESOLUTIONS), index=1, key="up.res")
    c1, c2 = st.columns(2)
    up_attack = c1.selectbox("Trigger", ["unknown", *list_attacks()], key="up.attack",
                             help=HELP["trigger_known"])  # fmt: skip
    up_target = c2.number_input("Target class", 0, 255, 0, key="up.target")
    if st.button("Check and use this model", disabled=weights is None, key="up.go"):
        up_data = None
        if up_ds != "(from checkpoint.json)":
            up_kwargs = {"resolution": int(up_res)} if up_ds == "digits" else {}
            up_data = DataSpec(up_ds, None, up_kwargs)
        spec_up = None if up_attack == "unknown" else AttackSpec(up_attack, {}, int(up_target))
        try:
            with st.spinner("Checking the weights and measuring the model ..."):
                run = import_checkpoint(
                    state.store(),
                    weights.getvalue(),
                    weights.name,
                    sidecar=None if sidecar is None else sidecar.getvalue(),
                    arch=None if up_arch.startswith("(") else up_arch,
                    data=up_data,
                    attack=spec_up,
                    split=None if up_data is None else state.load_split(up_data),
                    owner=state.owner(),
                )
            st.session_state[state.MODEL] = state.model_from_run(run)
        except (ValueError, RunError, OSError) as err:
            st.error(f"This model cannot be used: {err}")
        else:
            st.success(f"Imported as run {run.id}.")
            st.switch_page("app_pages/purify.py")
