"""Explain: what the backdoored model h0 and the purified model h look at, side by side."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path

import streamlit as st

from dashboard import charts, state, widgets
from sau_core.explain import (
    METHODS,
    compare_focus,
    explain_grid,
    focus_stats,
    make_method_config,
    method_schema,
    sources,
)
from sau_core.explain.pictures import heat_legend, heat_to_uint8, to_uint8
from sau_core.lab import ready
from sau_core.serving.runs import RunError, RunStore

st.title("Explain: where do the models look?")
st.markdown(
    "An **attribution map** colours each pixel by how much it drives the model's answer. Below, "
    "the backdoored model **h0** and the purified model **h** are explained on the same images, "
    "and every map of one row shares **one colour scale**, so a brighter pixel matters more "
    "whichever model it belongs to. A backdoored model tends to stare at the trigger; after SAU "
    "it should look at the digit again."
)

store = state.store()
state.linked_run()


# ------------------------------------------------------------------------------ the models
@st.cache_resource(show_spinner="Loading the models ...", max_entries=4)
def _run_pair(root: str, run_id: str, stamp: float):
    """h0 and h of a purify run, loaded once per checkpoint version; shared, never mutated (the
    lock serialises attribution, which hooks into the models while it runs)."""
    return sources.load_run_pair(RunStore(root).get(run_id)), threading.Lock()


@st.cache_resource(show_spinner="Loading the model ...", max_entries=4)
def _one_model(path: str, stamp: float, title: str):
    return sources.load_model(path, title), threading.Lock()


def _stamp(path) -> float:
    try:
        return (path / "model.safetensors").stat().st_mtime
    except OSError:
        return 0.0


runs = state.visible_runs()[0]
purify = [r for r in runs if r.kind == "purify" and r.state in ("finished", "stopped")]
purify = [r for r in purify if store.get(r.id).has_checkpoint()]
singles: dict[str, tuple[str, str]] = {}  # key -> (path, title)
for e in ready.list_ready()[0]:
    singles[f"ready:{e.name}"] = (str(e.path), f"ready-made: {e.title}")
for r in runs:
    if r.kind in ("attack", "import") and store.get(r.id).has_checkpoint():
        singles[f"run:{r.id}"] = (str(store.get(r.id).path), f"{r.kind} run: {r.label or r.id}")

kinds = ["A purify run (h0 and h)", "A single model"]
kind = st.radio("Explain", kinds, index=0 if purify else 1, horizontal=True, key="explain.kind",
                help="A purify run gives both models: h0 (its input) and h (its result).")  # fmt: skip
pair = lock = None
run = None
try:
    if kind == kinds[0]:
        if not purify:
            st.info("No finished SAU run yet: purify a model first, or explain a single model.")
            st.page_link("app_pages/purify.py", label="Go to Defend",
                         icon=":material/shield:")  # fmt: skip
            st.stop()
        ids = [r.id for r in purify]
        current = state.current_run("purify")
        labels = {r.id: f"{r.label or r.id} ({r.state})" for r in purify}
        run_id = st.selectbox("SAU run", ids, index=ids.index(current) if current in ids else 0,
                              format_func=lambda i: labels.get(i, i), key="explain.run")  # fmt: skip
        run = store.get(run_id)
        pair, lock = _run_pair(str(store.root), run_id, _stamp(run.path))
    else:
        if not singles:
            st.info("No model to explain yet: choose or train one on *Set up*.")
            st.stop()
        pick = st.selectbox("Model", list(singles), format_func=lambda k: singles[k][1],
                            key="explain.model")  # fmt: skip
        path, title = singles[pick]
        if pick.startswith("ready:"):
            entry = {e.name: e for e in ready.list_ready()[0]}[pick.split(":", 1)[1]]
            ready.verify(entry)
        pair, lock = _one_model(path, _stamp(Path(path)), title)
except (ValueError, RunError, KeyError) as err:
    st.error(f"Cannot load the model(s): {err}")
    st.stop()

info = pair.info
spec = pair.attack
st.caption(
    f"**{pair.title}** · {info.name} {info.shape[1]}x{info.shape[2]}, {info.num_classes} classes"
    + (f" · trigger: {spec.name}, target {spec.target}" if spec else " · trigger unknown")
)

# ------------------------------------------------------------------------------ the images
choices = ["Test images"]
probe_rounds = run.probe_rounds() if run is not None else []
if probe_rounds:
    choices.append("Shared adversarial examples (gallery)")
choices.append("Upload an image")
c1, c2, c3 = st.columns([2, 1, 1])
source = c1.radio("Images", choices, horizontal=True, key="explain.source",
                  help="Test images are shown clean and, when the trigger is known, with it.")  # fmt: skip
n = c2.number_input("How many", 1, 8, 4, key="explain.n")
seed = c3.number_input("Draw (seed)", 0, 10_000, 0, key="explain.seed",
                       help="Another number draws other test images.")  # fmt: skip


def _split():
    return state.load_split(pair.data)  # cached per server, read-only


versions, y = None, None
try:
    if source == "Test images":
        versions, y = sources.test_versions(_split().test, spec, int(n), int(seed))
    elif source.startswith("Shared"):
        rnd = probe_rounds[-1]
        if len(probe_rounds) > 1:
            rnd = st.select_slider("Round", probe_rounds, value=probe_rounds[-1],
                                   key=f"explain.round.{run.id}")  # fmt: skip
        versions, y = sources.probe_versions(run.load_probe(rnd), int(n))
        st.caption("Each row: a probe image and the shared adversarial example SAU found for it.")
    else:
        up = st.file_uploader("A picture (PNG, JPEG, BMP, GIF or WebP, at most 8 MiB)",
                              type=["png", "jpg", "jpeg", "bmp", "gif", "webp"],
                              key="explain.upload")  # fmt: skip
        if up is None:
            st.info("Upload a picture to explain; it is resized to the models' image size.")
            st.stop()
        x = sources.decode_image(up.getvalue(), info)
        versions = {"uploaded": x}
        if spec is not None:
            versions["uploaded + trigger"] = spec.trigger(info)(x)
except (ValueError, RunError, OSError, RuntimeError) as err:
    st.error(f"Cannot use these images: {err}")
    st.stop()

# ------------------------------------------------------------------------------ the method
c1, c2 = st.columns([1, 2])
method = c1.selectbox("Method", list(METHODS), format_func=lambda m: METHODS[m].label,
                      key="explain.method")  # fmt: skip
c2.caption(f"{METHODS[method].help} ([paper]({METHODS[method].paper}))")
with st.expander("Method settings", icon=":material/tune:"):
    values = widgets.render_fields(method_schema(method, info.shape), f"explain.{method}",
                                   columns=3)  # fmt: skip
    percentile = st.slider("Top of the colour scale (percentile of the row's attribution)",
                           90.0, 100.0, 99.0, 0.5, key="explain.percentile",
                           help="100 keeps exact ratios; lower values let a few extreme pixels "
                           "saturate so the rest stays visible.")  # fmt: skip
try:
    config = make_method_config(method, values)
    config.validate(info.shape)
except ValueError as err:
    st.error(f"These settings do not work: {err}")
    st.stop()
params = dataclasses.asdict(config)


def _key(tensors: dict) -> str:
    h = hashlib.sha1()
    for name, t in tensors.items():
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


@st.cache_data(max_entries=16, show_spinner="Computing the maps ...")
def _grid(_pair, _lock, pair_key: str, images_key: str, _versions, method: str, params_json: str,
          percentile: float):  # fmt: skip
    with _lock:
        return explain_grid(_pair.models, _versions, method, percentile=percentile,
                            **json.loads(params_json))  # fmt: skip


@st.cache_data(max_entries=16, show_spinner="Measuring the trigger focus ...")
def _focus(_pair, _lock, pair_key: str, methods: tuple, params_json: str, n_focus: int):
    x = sources.focus_images(_split().test, _pair.attack, n_focus)
    trigger = _pair.attack.trigger(_pair.info)
    per = json.loads(params_json)
    with _lock:
        if _pair.h is None:
            return focus_stats(_pair.h0, x, trigger, list(methods), params=per)
        return compare_focus(_pair.h0, _pair.h, x, trigger, list(methods), params=per)


pair_key = f"{pair.title}|{run.id if run is not None else kind}|{id(pair)}"
params_json = json.dumps(params, sort_keys=True)
try:
    grid = _grid(pair, lock, pair_key, _key(versions), versions, method, params_json,
                 float(percentile))  # fmt: skip
except (ValueError, RuntimeError) as err:
    st.error(f"Cannot explain these images: {err}")
    st.stop()

# ------------------------------------------------------------------------------ the grid
# the grid takes the page's width (beside a side column, its headers and the focus metrics
# were clipped at 1024 px); the trigger focus follows under it
left, right = st.container(), st.container()
with left:
    st.subheader(
        f"{METHODS[method].label}: image | " + " | ".join(f"{m}'s map" for m in pair.names)
    )
    per_version = 1 + len(pair.names)
    heads = st.columns(per_version * len(grid.columns))
    for v, name in enumerate(grid.columns):
        heads[v * per_version].markdown(f"**{name}**")
        for j, m in enumerate(pair.names):
            heads[v * per_version + 1 + j].markdown(f"*{m}*")
    for i in range(len(grid.images[0])):
        cols = st.columns(per_version * len(grid.columns))
        for v in range(len(grid.columns)):
            truth = f"true {int(y[i])}" if y is not None else " "
            cols[v * per_version].image(to_uint8(grid.images[v][i]), caption=truth)
            for j, m in enumerate(pair.names):
                pred, conf = int(grid.pred[v][j][i]), float(grid.conf[v][j][i])
                cols[v * per_version + 1 + j].image(
                    heat_to_uint8(grid.maps[v][j][i]), caption=f"{m} → {pred} ({100 * conf:.0f}%)"
                )
    st.image(heat_legend(), caption="colour scale: 0 (black) to the row's top (yellow)")
    st.caption(
        "Under each map: the model's answer and its confidence. One scale per row, shared by "
        "every map in it."
    )

with right:
    st.subheader("Trigger focus")
    if spec is None:
        st.info("The trigger of this model is unknown, so its region cannot be measured.")
    else:
        c1, c2 = st.columns(2)
        all_methods = c1.checkbox("All methods (slower)", key="explain.focus_all")
        n_focus = c2.number_input("Images measured", 8, 256, 64, 8, key="explain.focus_n")
        methods = tuple(METHODS) if all_methods else (method,)
        per = {m: (params if m == method else {}) for m in methods}
        try:
            stats = _focus(pair, lock, pair_key, methods, json.dumps(per, sort_keys=True),
                           int(n_focus))  # fmt: skip
        except (ValueError, RuntimeError, OSError) as err:
            st.error(f"Cannot measure the trigger focus: {err}")
            stats = {}
        if stats:
            s = stats[method]
            if len(stats) > 1:  # every method: a table
                st.dataframe(charts.focus_rows(stats), hide_index=True)
            elif hasattr(s, "before"):
                m1, m2, m3 = st.columns(3)
                m1.metric("h0 (backdoored)", f"{s.before.mean:.3f}",
                          help=f"Spread over the images (std): {s.before.std:.3f}.")  # fmt: skip
                m2.metric("h (purified)", f"{s.after.mean:.3f}", delta=f"{s.change:+.3f}",
                          delta_color="inverse",
                          help=f"Spread over the images (std): {s.after.std:.3f}.")  # fmt: skip
                m3.metric("uniform map", f"{s.before.area:.3f}",
                          help="What a map that looked everywhere equally would score.")  # fmt: skip
            else:
                st.metric("trigger focus", f"{s.mean:.3f}",
                          help=f"Spread over the images (std): {s.std:.3f}.")  # fmt: skip
            if hasattr(s, "before"):
                b, a = s.before, s.after
                st.markdown(
                    f"On {b.n} triggered test images, **{100 * b.mean:.0f}%** of h0's "
                    f"attribution lies in the pixels the trigger changes, which cover "
                    f"{100 * b.area:.0f}% of the image (a map that looked everywhere equally "
                    f"would score {100 * b.area:.0f}%). After SAU, h puts **{100 * a.mean:.0f}%** "
                    f"there ({100 * s.change:+.0f} points)."
                )
            else:
                st.markdown(
                    f"**{100 * s.mean:.0f}%** of the model's attribution lies in the trigger's "
                    f"pixels, which cover {100 * s.area:.0f}% of the image."
                )
            st.caption(
                "Trigger focus: the share of attribution inside the trigger's region, averaged "
                "over triggered test images outside the target class; spread is the standard "
                "deviation over the images."
            )
