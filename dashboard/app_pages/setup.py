"""Set up: choose the backdoored model to purify (ready-made, trained here, or uploaded)."""

from __future__ import annotations

import json

import streamlit as st

from dashboard import components, forms, share, state, widgets
from dashboard.glossary import HELP, describe_attack, pct
from sau_core.attacks import ATTACKS, AttackSpec, example_params, list_attacks
from sau_core.data import DIGITS_RESOLUTIONS, DataSpec, available, list_datasets
from sau_core.defenses.sau import default_sau_config
from sau_core.explain.pictures import sample_images, trigger_preview
from sau_core.io.checkpoint import Sidecar
from sau_core.lab import ready
from sau_core.lab.caveats import sau_caveats, train_caveats
from sau_core.lab.presets import DEMO, TEACHING_PRESETS
from sau_core.lab.recipes import recipe
from sau_core.models import MODELS
from sau_core.serving import AttackJob, QueueFull, import_checkpoint
from sau_core.serving.runs import RunError
from sau_core.train import TrainConfig, default_train_config

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


def _target_field(key: str, k: int, problems: list[str]) -> int:
    """The target class: any whole number may be typed; one outside the data set's classes is
    named next to the field and at the button (Streamlit's own bounds would silently reset it)."""
    st.session_state.setdefault(key, 0)
    value = st.number_input("Target class", step=1, key=key, help=HELP["target"])
    problem = widgets.field_problem({"min": 0, "max": k - 1}, value)
    if problem:
        st.error(f"target class: {problem} (the data set has {k} classes).",
                 icon=":material/error:")  # fmt: skip
        problems.append(f"target class {problem}")
    return int(value)


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
            "Train the demo preset here instead; the Attack page follows the training."
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
        f"Current model: **{current['title']}**. Go to *Defend* to clean it.",
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
            f"Attack: {describe_attack(entry.attack)}. Files are checked against their SHA-256 "
            "in the manifest before use."
        )
        if st.button("Use this model", key="ready.use"):
            use_ready(entry)

# -------------------------------------------------------------------------------- training
with tab_train:
    datasets = list_datasets()
    status = {name: available(name) for name in datasets}

    def _follow_dataset() -> None:
        """A new data set brings its own model (sau_core.lab.recipes), as in the CLI."""
        st.session_state["train.arch"] = recipe(st.session_state["train.dataset"]).arch

    ds = st.selectbox(
        "Data set",
        datasets,
        format_func=lambda n: n if status[n][0] else f"{n} (unavailable)",
        key="train.dataset",
        on_change=_follow_dataset,
        help="Digits ships with the app (1,797 handwritten digits). The others need their files. "
        "Choosing one also chooses its default model.",
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
                          format_func=forms.attack_label,
                          help="\n\n".join(v.help for v in ATTACKS.values()))  # fmt: skip
    st.caption(ATTACKS[attack].help)
    problems: list[str] = []
    k = info.num_classes if info is not None else 10
    c1, c2, c3 = st.columns(3)
    with c1:
        target = _target_field("train.target", k, problems)
    ratio = c2.slider("Poison ratio", *share.RATIO_RANGE, step=0.01, key="train.ratio",
                      help=HELP["poison_ratio"])  # fmt: skip
    if ATTACKS[attack].clean_label:
        rule = "all2one"
        c3.caption("Label rule: all to one (a clean-label attack keeps its labels).")
    else:
        rule = c3.selectbox("Label rule", ["all2one", "all2all"], key="train.rule",
                            help="all2one: every triggered image goes to the target; all2all: "
                            "class y goes to y+1.")  # fmt: skip
    st.markdown("**Trigger parameters**")
    params = forms.trigger_fields(attack, info, f"attack.{attack}", problems)
    spec = AttackSpec(attack, params, int(target), rule, float(ratio), DEMO.attack.seed)

    if split is not None and not problems:
        st.markdown("**Trigger preview** on test images (top: clean, middle: with the trigger, "
                    "bottom: what the trigger changed: red brighter, blue darker, grey "
                    "unchanged)")  # fmt: skip
        try:
            spec.validate(split.info)
            shown = params
            if not spec.prepared():  # LF's pattern, Input-aware's generator: made when planted
                made = ATTACKS[attack].computes
                st.caption(f"{forms.attack_label(attack)}'s {made} is made against a clean "
                           "model when the backdoor is planted; this preview uses a stand-in "
                           f"{made} (same settings, not trained).")  # fmt: skip
                shown = {**params, **example_params(attack)}
            elif attack == "lc":
                st.caption("At test time LC's trigger is the corner patches shown here; its "
                           "poisoned training images are also made hard to learn (PGD against "
                           "a clean model, within the budget), which is not shown.")  # fmt: skip
            elif attack == "ssba":
                st.caption("SSBA's residual is at most eps (a few grey levels) and differs on "
                           "every image; the bottom row shows it scaled up to be seen.")  # fmt: skip
            x, y = sample_images(split.test, 8)
            xt, change = trigger_preview(x, split.info, attack, shown)
            cols = st.columns(8)
            for i, col in enumerate(cols[: len(x)]):
                col.image(components.strip([x[i]]), caption=f"label {int(y[i])}")
                col.image(components.strip([xt[i]]))
                col.image(components.strip([change[i]]))
        except ValueError as err:
            st.error(f"These trigger settings do not work: {err}")
            problems.append("the trigger settings do not work")

    with st.expander("Training settings"):
        cuda_only = () if state.has_cuda() else ("amp", "channels_last")
        schema = [e for e in widgets.field_schema(TrainConfig, default_train_config(ds))
                  if e["name"] not in cuda_only]  # fmt: skip
        train_values = widgets.render_fields(schema, f"trainconf.{ds}", columns=3,
                                             problems=problems)  # fmt: skip
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
    train = None
    if not problems:
        try:
            train = widgets.build_config(TrainConfig, train_values, default_train_config(ds))
        except ValueError as err:
            problems.append(str(err))
    if train is not None:
        clean_n = round(recipe(ds).clean_ratio * (len(split.train) if split is not None else 0))
        notes = train_caveats(data, train) + sau_caveats(
            data, clean_n, default_sau_config(ds), attack, arch)  # fmt: skip
        for note in notes:
            st.warning(f"**Before you train: where SAU is known to be weak.** {note}",
                       icon=":material/info:")  # fmt: skip
    if problems:
        st.error("Fix these settings first: " + "; ".join(problems) + ".", icon=":material/error:")
    if (
        st.button(
            "Train the backdoored model",
            type="primary",
            disabled=bool(problems) or (split is None and not download),
        )
        and not problems
    ):
        try:
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
FROM_SIDECAR = "(from checkpoint.json)"


def _floats(text: str, what: str, problems: list[str]) -> tuple[float, ...] | None:
    """'0.5' or '0.49, 0.48, 0.45' -> floats; '' -> None; a bad entry -> a problem."""
    if not text.strip():
        return None
    try:
        values = tuple(float(t) for t in text.replace(" ", "").split(","))
    except ValueError:
        problems.append(f"{what} must be numbers separated by commas, got {text[:40]!r}")
        return None
    return values


with tab_upload:
    st.markdown(
        "Bring your own backdoored model: its weights for one of the registered architectures "
        "(`.safetensors`, or a PyTorch state dict `.pt`/`.pth`, read without running any "
        "code). Add SAU Lab's `checkpoint.json` if you have one; otherwise name the architecture "
        "and the data set. Name the trigger too if you know it, so ASR can be measured; "
        "*docs/your-model.md* in the project lists the accepted weight layouts."
    )
    up_problems: list[str] = []
    weights = st.file_uploader("Weights", type=["safetensors", "pt", "pth"], key="up.weights")
    sidecar = st.file_uploader("checkpoint.json (optional)", type=["json"], key="up.sidecar")
    side: Sidecar | None = None
    if sidecar is not None:
        try:
            side = Sidecar.parse(sidecar.getvalue(), sidecar.name)
        except ValueError as err:
            st.error(f"{err}. Fix the file, or remove it and name the architecture and data "
                     "set below.", icon=":material/error:")  # fmt: skip
            up_problems.append(f"{sidecar.name} is unreadable")
    side_ds = None
    if side is not None:
        side_ds = side.data["name"] if side.data else side.dataset.name
    c1, c2, c3 = st.columns(3)
    up_arch = c1.selectbox("Architecture", ([FROM_SIDECAR] if side else []) + list(MODELS),
                           key="up.arch")  # fmt: skip
    ready_sets = [d for d in list_datasets() if status[d][0] and d != "imagefolder"]
    up_ds = c2.selectbox("Data set", ([FROM_SIDECAR] if side_ds else []) + ready_sets,
                         key="up.ds")  # fmt: skip
    ds_name = side_ds if up_ds == FROM_SIDECAR else up_ds
    up_data = None
    if up_ds != FROM_SIDECAR:
        up_kwargs = dict(recipe(up_ds).data)
        if up_ds == "digits":
            up_kwargs["resolution"] = int(c3.selectbox("Digits image size", list(DIGITS_RESOLUTIONS),
                                                       index=1, key="up.res"))  # fmt: skip
        up_data = DataSpec(up_ds, None, up_kwargs)
    with st.expander("Normalisation (only for weights of the bare network)"):
        st.caption(
            "SAU Lab models normalise their input themselves (`normalize.mean` and `.std` in the "
            "weights). Weights of the network alone get the data set's mean and std; if your "
            "model was trained with others, give them here (one value per channel)."
        )
        n1, n2 = st.columns(2)
        up_mean = _floats(n1.text_input("mean", key="up.mean", placeholder="e.g. 0.5"), "mean",
                          up_problems)  # fmt: skip
        up_std = _floats(n2.text_input("std", key="up.std", placeholder="e.g. 0.25"), "std",
                         up_problems)  # fmt: skip
    up_info = None
    if ds_name in ready_sets:
        try:
            named = up_data or side.data_spec()
            up_info = state.load_split(
                DataSpec(named.name, None, named.kwargs)
            ).info  # never the sidecar's folder
        except (ValueError, RuntimeError, OSError) as err:
            st.error(f"Cannot load {ds_name}: {err}")
    c1, c2, c3 = st.columns(3)
    triggers = ["unknown", *list_attacks()]
    up_attack = c1.selectbox("Trigger", triggers, key="up.attack", help=HELP["trigger_known"],
                             format_func=lambda n: n if n == "unknown" else forms.attack_label(n))  # fmt: skip
    spec_up = None
    if up_attack != "unknown":
        k_up = up_info.num_classes if up_info is not None else 10
        with c2:
            up_target = _target_field("up.target", k_up, up_problems)
        up_rule = "all2one"
        if not ATTACKS[up_attack].clean_label:
            up_rule = c3.selectbox("Label rule", ["all2one", "all2all"], key="up.rule")
        up_params = forms.trigger_fields(up_attack, up_info, f"up.attack.{up_attack}", up_problems)
        spec_up = AttackSpec(up_attack, up_params, int(up_target), up_rule)
    else:
        c2.caption("Without the trigger SAU still runs; ASR and RA cannot be measured, and the "
                   "result shows where the model's adversarial examples land instead.")  # fmt: skip
    if up_problems:
        st.error("Fix these first: " + "; ".join(up_problems) + ".", icon=":material/error:")
    if (
        st.button(
            "Check and use this model", disabled=weights is None or bool(up_problems), key="up.go"
        )  # fmt: skip
        and weights is not None
        and not up_problems
    ):
        try:
            with st.spinner("Checking the weights and measuring the model ..."):
                run = import_checkpoint(
                    state.store(),
                    weights.getvalue(),
                    weights.name,
                    sidecar=None if sidecar is None else sidecar.getvalue(),
                    arch=None if up_arch == FROM_SIDECAR else up_arch,
                    data=up_data,
                    attack=spec_up,
                    split=None if up_data is None else state.load_split(up_data),
                    owner=state.owner(),
                    mean=up_mean,
                    std=up_std,
                )
            st.session_state[state.MODEL] = state.model_from_run(run)
        except (ValueError, RunError, OSError) as err:
            text = str(err)
            if weights.name not in text:
                text = f"{weights.name}: {text}"
            st.error(f"This model cannot be used. {text}", icon=":material/error:")
        else:
            st.success(f"Imported as run {run.id}.")
            st.switch_page("app_pages/purify.py")
