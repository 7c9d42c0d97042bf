"""Plotly figure builders: plain functions of lists and dicts (event records), no Streamlit.

Every builder takes the records a :class:`sau_core.serving.JobView` holds (``rounds``: SAURound
records, ``epochs``: TrainEpoch records, ``batches``: thinned batch records, ``before``: the
backdoored model's metrics) and returns a ``plotly.graph_objects.Figure``. ``uirevision`` is
fixed so a chart that is redrawn every few seconds keeps the user's zoom and hidden legend entries.
"""

from __future__ import annotations

import plotly.graph_objects as go

from sau_core.defenses.compare import before_row, comparison_row, largest_pull
from sau_core.lab.caveats import landing_shares

from .glossary import pct

COLORS = {"acc": "#2563eb", "asr": "#dc2626", "ra": "#16a34a", "loss": "#7c3aed",
          "pull": "#d97706"}  # fmt: skip
# One colour per class (Tableau 10): the same class has the same colour on every chart, in the
# dashboard and in the offline report (whose template has no colour cycle of its own).
CLASS_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip
HEIGHT = 340


def class_color(c: int) -> str:
    return CLASS_COLORS[c % len(CLASS_COLORS)]


def _layout(
    fig: go.Figure, title: str, ytitle: str, *, percent: bool = False, legend_rows: int = 1
) -> go.Figure:
    """Shared look: a short title, axes that make room for their own labels (automargin), and
    the legend in rows under the plot, so it never covers the lines on a narrow screen."""
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 14}},
        height=HEIGHT + 22 * max(0, legend_rows - 1),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        hovermode="x unified",
        uirevision="keep",
        legend={
            "orientation": "h",
            "yanchor": "top",
            "y": -0.22,
            "xanchor": "left",
            "x": 0,
            "font": {"size": 11},
        },  # fmt: skip
    )
    fig.update_xaxes(automargin=True, title_standoff=6)
    fig.update_yaxes(title=ytitle, automargin=True, title_standoff=8)
    if percent:
        fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    return fig


def _points(rounds: list[dict], before: dict | None, key: str) -> tuple[list, list]:
    xs, ys = [], []
    if before is not None and before.get(key) is not None:
        xs.append(0)
        ys.append(before[key])
    for r in rounds:
        if r.get(key) is not None:
            xs.append(r["round"])
            ys.append(r[key])
    return xs, ys


def _round_axis(fig: go.Figure, total: int | None) -> None:
    """Rounds on x; with ``total`` the axis spans the whole run from the start."""
    fig.update_xaxes(title="round", rangemode="tozero")
    if total:
        fig.update_xaxes(range=[-0.3, total + 0.3], dtick=max(1, round(total / 10)))


def metric_curves(
    rounds: list[dict], before: dict | None = None, total: int | None = None
) -> go.Figure:
    """ACC, ASR, RA and the largest off-target pull (the largest share of triggered images sent
    to a class that is neither their own nor the target) per round of any defence (round 0: the
    backdoored model, when ``before`` is given)."""
    fig = go.Figure()
    names = []
    for key, name in (("acc", "ACC"), ("asr", "ASR"), ("ra", "RA")):
        xs, ys = _points(rounds, before, key)
        if xs:
            names.append(name)
            fig.add_scatter(x=xs, y=ys, name=name, mode="lines+markers",
                            line={"color": COLORS[key]})  # fmt: skip
    xs, ys, to = [], [], []
    for x, record in ([(0, before)] if before else []) + [(r["round"], r) for r in rounds]:
        share, cls = largest_pull(record)
        if share is not None:
            xs.append(x), ys.append(share), to.append(cls)
    if xs:  # the backdoor redirected rather than removed shows here, not in ASR
        names.append("largest pull")
        fig.add_scatter(x=xs, y=ys, name="largest pull (to another class)", customdata=to,
                        mode="lines+markers", line={"color": COLORS["pull"], "dash": "dot"},
                        hovertemplate="%{y:.1%} to class %{customdata}")  # fmt: skip
    _round_axis(fig, total)
    title = (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else
             "".join(names) or "ACC")  # fmt: skip
    return _layout(fig, f"{title} per round", "share of test images", percent=True)


def _per_class(record: dict | None) -> dict[int, float]:
    if not record or not record.get("per_class_asr"):
        return {}
    return {int(k): float(v) for k, v in record["per_class_asr"].items()}


def _class_label(c: int, class_names: list[str] | None) -> str:
    """A class's name when the data set has one, else its index."""
    return class_names[c] if class_names and c < len(class_names) else str(c)


def per_class_asr_curves(
    rounds: list[dict],
    before: dict | None = None,
    class_names: list[str] | None = None,
    total: int | None = None,
) -> go.Figure:
    """One ASR line per source class across rounds; click the legend to hide or isolate lines."""
    series: dict[int, tuple[list, list]] = {}
    records = ([(0, before)] if before else []) + [(r["round"], r) for r in rounds]
    for rnd, record in records:
        for c, v in _per_class(record).items():
            xs, ys = series.setdefault(c, ([], []))
            xs.append(rnd)
            ys.append(v)
    fig = go.Figure()
    for c in sorted(series):
        xs, ys = series[c]
        fig.add_scatter(x=xs, y=ys, name=f"class {_class_label(c, class_names)}",
                        mode="lines+markers", line={"color": class_color(c)})  # fmt: skip
    _round_axis(fig, total)
    _layout(fig, "ASR per source class", "ASR", percent=True, legend_rows=2)
    fig.update_layout(legend={"title": {"text": "source"}})
    return fig


def sae_counts(rounds: list[dict], total: int | None = None) -> go.Figure:
    """Adversarial, common and shared examples found on the clean set, per round."""
    fig = go.Figure()
    xs = [r["round"] for r in rounds]
    for key, name, color in (
        ("adv_h", "adv h (fools h)", "#f59e0b"),
        ("adv_h0", "adv h0 (fools h0)", "#6b7280"),
        ("common", "common (fools both)", "#0ea5e9"),
        ("shared", "shared (same wrong class)", "#dc2626"),
    ):
        fig.add_scatter(x=xs, y=[r.get(key, 0) for r in rounds], name=name, mode="lines+markers",
                        line={"color": color})  # fmt: skip
    if any(r.get("saturated") for r in rounds):  # only where it happens: it explains a stuck run
        fig.add_scatter(x=xs, y=[r.get("saturated", 0) for r in rounds],
                        name="saturated (too sure to unlearn)", mode="lines",
                        line={"color": "#7c3aed", "dash": "dash"})  # fmt: skip
    n = rounds[-1]["n"] if rounds else None
    _round_axis(fig, total)
    return _layout(fig, "Adversarial examples per round", f"of {n} clean images" if n else
                   "images", legend_rows=2)  # fmt: skip


def attack_target(job: dict) -> int | None:
    """The all-to-one target class of a run's job settings (None: unknown trigger, all-to-all)."""
    attack = job.get("attack") or {}
    return attack.get("target") if attack.get("label_rule", "all2one") == "all2one" else None


def adv_class_shares(
    rounds: list[dict],
    target: int | None = None,
    class_names: list[str] | None = None,
    total: int | None = None,
) -> go.Figure:
    """Per round, the share of the examples SAU unlearns (those that fool h0) in each class h0
    gives them; the attack's ``target`` (when known) drawn thick. Rounds without the counts
    (runs from before they were recorded) are left out."""
    rows = landing_shares(rounds)
    fig = go.Figure()
    if rows:
        xs = [rnd for rnd, _ in rows]
        for c in range(len(rows[0][1])):
            is_target = c == target
            fig.add_scatter(
                x=xs,
                y=[shares[c] for _, shares in rows],
                name=f"class {_class_label(c, class_names)}" + (" (target)" if is_target else ""),
                mode="lines",
                line={"width": 5 if is_target else 1.5, "color": class_color(c)},
            )
    _round_axis(fig, total)
    _layout(fig, "Where the examples that fool h0 land", "share of them", percent=True,
            legend_rows=2)  # fmt: skip
    fig.update_layout(legend={"title": {"text": "h0 says"}})
    return fig


def loss_curves(batches: list[dict], *, sau: bool = True) -> go.Figure:
    """Per-batch losses: SAU's total, L_cl and L_shared; another defence's total and its named
    terms (``losses`` of its batch records); or the training loss of an attack."""
    fig = go.Figure()
    xs = [b["step"] for b in batches]
    named = list(dict.fromkeys(k for b in batches for k in (b.get("losses") or {})))
    if named:
        keys = (("loss", "total"),) if len(named) > 1 else ()
        series = [(name, [(b.get("losses") or {}).get(name) for b in batches]) for name in named]
        series = [(label, [b.get(key) for b in batches]) for key, label in keys] + series
    else:
        keys = (("loss", "total"), ("l_cl", "L_cl (clean)"), ("l_shared", "L_shared")) if sau else (
            ("loss", "training loss"),)  # fmt: skip
        series = [(label, [b.get(key) for b in batches]) for key, label in keys]
    for name, ys in series:
        if any(y is not None for y in ys):
            fig.add_scatter(x=xs, y=ys, name=name, mode="lines")
    fig.update_xaxes(title="batch")
    return _layout(fig, "Losses per batch", "loss")


def train_curves(epochs: list[dict]) -> go.Figure:
    """An attack's training: clean ACC, ASR and RA on the test sets, and training accuracy."""
    fig = go.Figure()
    xs = [e["epoch"] for e in epochs]
    for key, name in (("acc", "ACC"), ("asr", "ASR"), ("ra", "RA")):
        pts = [(x, e.get(key)) for x, e in zip(xs, epochs, strict=True) if e.get(key) is not None]
        if pts:
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=name,
                            mode="lines+markers", line={"color": COLORS[key]})  # fmt: skip
    fig.add_scatter(x=xs, y=[e.get("train_acc") for e in epochs], name="training accuracy",
                    mode="lines", line={"dash": "dot", "color": "#6b7280"})  # fmt: skip
    fig.update_xaxes(title="epoch")
    return _layout(fig, "Test metrics per epoch", "share", percent=True, legend_rows=2)


def before_after_rows(metrics: dict, title: str = "SAU") -> list[dict]:
    """Rows of the before/after table from a purify run's ``metrics.json``: one per measured
    metric (ASR and RA only when the trigger was known; never a row of dashes)."""
    b, a = metrics.get("before") or {}, metrics.get("after") or {}
    rows = []
    for key, name in (("acc", "ACC"), ("asr", "ASR"), ("ra", "RA")):
        bv, av = b.get(key), a.get(key)
        if bv is None and av is None:
            continue
        change = None if bv is None or av is None else av - bv
        rows.append({
            "metric": name,
            f"before {title}": pct(bv),
            f"after {title}": pct(av),
            "change": "–" if change is None else f"{100 * change:+.1f} pts",
        })  # fmt: skip
    return rows


# ------------------------------------------------------------------------------- comparisons
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#7c3aed", "#ea580c", "#0891b2", "#db2777",
           "#4b5563", "#ca8a04", "#65a30d"]  # fmt: skip


def _num(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def compare_rows(runs: list[tuple[str, dict | None]]) -> list[dict]:
    """One row per purify run (``(label, metrics.json)``): ACC, ASR, RA before and after, DER."""
    rows = []
    for label, metrics in runs:
        m = metrics or {}
        b, a = m.get("before") or {}, m.get("after") or {}
        # a finished run without a trigger measured ACC only: say so, not a dash
        unmeasured = "not measured" if a.get("acc") is not None else "–"
        row = {"run": label}
        for key, name in (("acc", "ACC"), ("asr", "ASR"), ("ra", "RA")):
            row[f"{name} before"] = unmeasured if b.get(key) is None else pct(b[key])
            row[f"{name} after"] = unmeasured if a.get(key) is None else pct(a[key])
        row["DER"] = unmeasured if m.get("der") is None else _num(m["der"])
        row["rounds"] = m.get("rounds_done", "–")
        rows.append(row)
    return rows


def compare_curves(
    runs: list[tuple[str, list[dict], dict | None]],
    keys: tuple[str, ...] = ("acc", "asr"),
    *,
    share: bool = False,
) -> go.Figure:
    """ACC (solid) and ASR (dashed) per round of several runs on one chart, a colour per run.

    ``runs``: ``(label, round records, Baseline record or None)`` per run; round 0 is the
    backdoored model when the Baseline record is there. ``share``: the x axis is the share of
    each run's rounds done (defences run for 5 to 100 rounds; this puts them on one axis).
    """
    dashes = {"acc": "solid", "asr": "dash", "ra": "dot"}
    fig = go.Figure()
    for i, (label, rounds, before) in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        total = max((r.get("rounds") or r["round"] for r in rounds), default=1) or 1
        for key in keys:
            xs, ys = _points(rounds, before, key)
            if share:
                xs = [x / total for x in xs]
            if xs:
                fig.add_scatter(x=xs, y=ys, name=f"{label}: {key.upper()}", mode="lines+markers",
                                legendgroup=str(i),
                                line={"color": color, "dash": dashes.get(key, "solid")})  # fmt: skip
    if share:
        fig.update_xaxes(title="share of the defence's rounds done", tickformat=".0%",
                         range=[0, 1.02])  # fmt: skip
    else:
        last = max((r["round"] for _, rounds, _ in runs for r in rounds), default=0)
        _round_axis(fig, last or None)
    names = " and ".join(k.upper() for k in keys)
    _layout(fig, f"{names} per round (solid: ACC, dashed: ASR)", "share of test images",
            percent=True)  # fmt: skip
    fig.update_layout(height=420, hovermode="closest")
    return fig


def defence_rows(runs: list[tuple[str, dict | None]]) -> list[dict]:
    """The comparison table (``sau compare``'s columns) of defence runs on one model:
    ``(label, metrics.json)`` per run, the backdoored model first."""
    done = [(label, m) for label, m in runs if m]
    if not done:
        return []
    rows = [("backdoored model", before_row(done[0][1]))]
    rows += [(label, comparison_row(m)) for label, m in done]
    out = []
    for label, r in rows:
        pull = "–" if r["pull"] is None else pct(r["pull"])
        if r["pull_class"] is not None:
            pull += f" to {r['pull_class']}"
        out.append({
            "defence": r["defense"],
            "ACC": pct(r["acc"]),
            "ASR": "not measured" if r["asr"] is None else pct(r["asr"]),
            "RA": "not measured" if r["ra"] is None else pct(r["ra"]),
            "largest pull": pull,
            "DER": _num(r["der"]),
            "seconds": "–" if r["seconds"] is None else f"{r['seconds']:.1f}",
            "rounds": "–" if r["rounds"] is None else str(r["rounds"]),
            "run": label,  # last: long, and the numbers matter first on a projector
        })  # fmt: skip
    return out


def focus_rows(stats: dict) -> list[dict]:
    """Rows of the trigger-focus table: ``{method: FocusComparison or FocusStats}``."""
    rows = []
    for method, s in stats.items():
        pairs = [("h0 (backdoored)", s.before), ("h (purified)", s.after)] if hasattr(
            s, "before") else [("model", s)]  # fmt: skip
        for who, f in pairs:
            rows.append({
                "method": method,
                "model": who,
                "focus (mean)": _num(f.mean),
                "spread (std)": _num(f.std),
                "images": f.n,
                "uniform map would give": _num(f.area),
            })  # fmt: skip
    return rows


def reactivation_curves(reactivation: dict, back: float | None = None) -> go.Figure:
    """ASR per re-tuning epoch (0: before any) of the defended model and of the model that never
    had a backdoor, with the line at which the backdoor counts as back."""
    fig = go.Figure()
    for key, name, color in (("model", "defended model", COLORS["asr"]),
                             ("baseline", "never-backdoored model", "#6b7280")):  # fmt: skip
        curve = (reactivation.get(key) or {}).get("asr") or []
        if curve:
            fig.add_scatter(x=list(range(len(curve))), y=curve, name=name, mode="lines+markers",
                            line={"color": color})  # fmt: skip
    if back is not None:
        fig.add_hline(y=back, line={"dash": "dot", "color": "#9ca3af"},
                      annotation_text="back", annotation_position="top left")  # fmt: skip
    fig.update_xaxes(title="re-tuning epoch", rangemode="tozero", dtick=1)
    return _layout(fig, "ASR while re-tuning on a few poisoned samples", "ASR", percent=True)


def leaderboard_groups(summary: list[dict]) -> list[tuple[str, list[dict]]]:
    """A sweep's summary as the heat maps to draw, each ``(title, entries)``: one per data set
    when every attack in it ran on one model (a grid of each attack's own model: rows read
    "wanet (small_cnn)" where models differ), else one per data set and model."""
    out: list[tuple[str, list[dict]]] = []
    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    for ds in datasets:
        part = [s for s in summary if s["dataset"] == ds]
        models = list(dict.fromkeys(s["model"] for s in part))
        per_attack: dict[str, set] = {}
        for s in part:
            per_attack.setdefault(s["attack"], set()).add(s["model"])
        if len(models) == 1:
            out.append((f"{ds}, {models[0]}", part))
        elif all(len(m) == 1 for m in per_attack.values()):
            out.append((f"{ds}, each attack on its own model",
                        [{**s, "attack": f"{s['attack']} ({s['model']})"} for s in part]))  # fmt: skip
        else:
            out += [(f"{ds}, {m}", [s for s in part if s["model"] == m]) for m in models]
    return out


def leaderboard_heatmap(summary: list[dict], metric: str = "asr") -> go.Figure:
    """Attacks (rows) x defences (columns) of a sweep's summary, coloured by the mean of
    ``metric`` over seeds ("asr": red is the backdoor kept; "der": green is a good defence),
    each cell written as the mean over the spread (the seeds in the hover). When the summary
    has the backdoored models' figures (``before``), a first column *none* shows what the
    defences started from."""
    attacks = list(dict.fromkeys(s["attack"] for s in summary))
    defenses = list(dict.fromkeys(s["defense"] for s in summary))
    none = "none"
    if metric != "der" and any(((s.get("before") or {}).get("asr") or {}).get("n")
                               for s in summary):  # fmt: skip
        defenses = [none, *defenses]  # (DER is a defence's: the backdoored model has none)
    z, text, hover = [], [], []
    for a in attacks:
        zr, tr, hr = [], [], []
        for d in defenses:
            if d == none:  # the backdoored models: every entry of the attack holds them
                first = next(s for s in summary if s["attack"] == a)
                stat = (first.get("before") or {}).get(metric) or {}
                cell = {}
            else:
                cell = next((s for s in summary if s["attack"] == a and s["defense"] == d), None)
                stat = (cell or {}).get(metric) or {}
            mean, sd, n = stat.get("mean"), stat.get("sd"), stat.get("n", 0)
            zr.append(mean)
            failed = (cell or {}).get("failed", 0)
            # two short lines fit a narrow screen; the hover says it in full
            label = "–" if mean is None else f"{mean:.2f}" + (f"<br>±{sd:.2f}" if n > 1 else "")
            tr.append(label + (f"<br>{failed} failed" if failed else ""))
            what = "the backdoored model (no defence)" if d == none else d
            full = ("not measured" if mean is None
                    else f"{mean:.2f}±{sd:.2f} over {n} seed{'s' * (n != 1)}")  # fmt: skip
            hr.append(f"{a} / {what}: {full}" + (f", {failed} failed" if failed else ""))
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    scale = "RdYlGn_r" if metric in ("asr", "pull") else "RdYlGn"
    fig = go.Figure(go.Heatmap(z=z, x=defenses, y=attacks, text=text, texttemplate="%{text}",
                               colorscale=scale, zmin=0, zmax=1,
                               customdata=hover,
                               hovertemplate="%{customdata}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(autorange="reversed", title="attack")
    fig.update_xaxes(side="top", title="defence")
    name = {"asr": "ASR", "der": "DER", "acc": "ACC", "ra": "RA", "pull": "largest pull"}
    fig = _layout(fig, f"Mean {name.get(metric, metric)} over seeds (± spread)", "attack")
    # the defences' names sit on top: the title goes above them, not over them
    fig.update_layout(title={"yref": "container", "y": 0.99, "yanchor": "top"},
                      margin={"t": 80}, height=max(HEIGHT, 120 + 34 * len(attacks)))  # fmt: skip
    return fig
