"""One run as a self-contained HTML report that opens offline: the settings, the before/after
table, the curves and the per-class ASR as interactive plotly charts (plotly.js's basic bundle
inlined once, ``dashboard/vendor/``), the probe batch's shared adversarial examples and the
saliency grid as embedded PNG pictures at the size they are shown.

Plain functions, no Streamlit: ``build_report(run)`` returns the HTML text;
``python -m dashboard.report --run runs/<id> --out report.html`` writes it from the shell.
Every piece of text from the run (its label, settings, messages) is escaped.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
import time
from functools import lru_cache
from pathlib import Path

import plotly.io as pio

from dashboard import charts
from dashboard.glossary import HELP, duration, shorten_uris
from sau_core.attacks import AttackSpec
from sau_core.defenses import DEFENSES
from sau_core.explain.pictures import (
    best_round,
    diverging_legend,
    heat_legend,
    heat_to_uint8,
    hstack,
    png_bytes,
    probe_tiles,
    to_uint8,
    trigger_picture,
)
from sau_core.io.checkpoint import sidecar_of
from sau_core.lab.caveats import trigger_caveats, unknown_trigger_report
from sau_core.probe import read_probe, thresholds_text, verdict_from_metrics
from sau_core.serving import view_of
from sau_core.serving.runs import Run, RunError, RunStore

__all__ = ["build_report", "main", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#111827}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d1d5db;padding:.3em .7em;
text-align:left}th{background:#f3f4f6}pre{background:#f9fafb;padding:1em;overflow:auto;
font-size:.85em}.grid figure{display:inline-block;margin:.4em;text-align:center;font-size:.8em}
.note{color:#4b5563;font-size:.9em}img{image-rendering:pixelated}
.evidence{background:#eff6ff;border-left:4px solid #2563eb;padding:.4em 1em;margin:.6em 0}
.charts{display:flex;flex-wrap:wrap;gap:1em}.charts>div{width:520px}
"""
FIGURE_WIDTH = 520  # px: two charts side by side in the page's 1100 px, one on a narrow screen
VENDOR = Path(__file__).resolve().parent / "vendor" / "plotly-basic.min.js"


@lru_cache(maxsize=1)
def plotly_script() -> str:
    """plotly.js for the report: the vendored basic bundle (1.2 MB) when its major version is
    plotly.py's, else plotly.py's full bundle (4.8 MB), which always fits its figures."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    try:
        text = VENDOR.read_text(encoding="utf-8")
        found = re.search(r"plotly\.js \(basic - minified\) v(\d+)\.", text[:300])
        if found and found.group(1) == get_plotlyjs_version().split(".")[0]:
            return text
    except OSError:
        pass
    return get_plotlyjs()


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _img(arr, alt: str) -> str:
    data = base64.b64encode(png_bytes(arr)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p class='note'>Nothing to show.</p>"
    head = "".join(f"<th>{_e(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md(text: str) -> str:
    """The little markdown the glossary uses (``**bold**``, ``*italic*``, ```code```), escaped."""
    out = _e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<i>\1</i>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _para(text: str, cls: str = "note") -> str:
    """A glossary entry as a paragraph."""
    return f"<p class='{cls}'>{_md(text)}</p>"


def _figure(fig) -> str:
    """One chart (plotly.js comes once, in the page's head), on a plain white template: the
    dashboard's theme is Streamlit's and does not travel."""
    fig = fig.update_layout(template="plotly_white", width=FIGURE_WIDTH)
    return "<div>" + pio.to_html(fig, full_html=False, include_plotlyjs=False,
                                 config={"displaylogo": False}) + "</div>"  # fmt: skip


def _gallery(run: Run, job: dict) -> str:
    rounds = run.probe_rounds()
    if not rounds:
        return "<p class='note'>This run kept no probe snapshots.</p>"
    try:
        counts = {r: int(run.load_probe(r).shared.sum()) for r in rounds}
        pick = best_round(counts)
        probe = run.load_probe(pick)
    except RunError as err:
        return f"<p class='note'>{_e(err)}</p>"
    sau = job.get("sau") or {}
    scale = float(sau["eps"]) if sau.get("norm", "Linf") == "Linf" and sau.get("eps") else None
    figures = []
    for t in probe_tiles(probe, scale):
        flag = "SHARED" if t.shared else ("common" if t.common else "not shared")
        caption = f"true {t.y} · h0 → {t.h0} · h → {t.h} · {flag}"
        pic = hstack([to_uint8(t.clean), to_uint8(t.perturbation), to_uint8(t.adversarial)])
        figures.append(
            f"<figure>{_img(pic, caption)}<figcaption>{_e(caption)}</figcaption></figure>"
        )
    trigger = ""
    if job.get("attack"):
        try:
            side = sidecar_of(job["checkpoint"])
            if side is None or side.dataset is None:
                raise ValueError("the checkpoint does not give its data set's geometry")
            pic = trigger_picture(AttackSpec.from_dict(job["attack"]), side.dataset, probe.x[0])
            trigger = (f"<figure>{_img(pic, 'the real trigger')}<figcaption>the real trigger, "
                       "its pixels outlined in orange (SAU never sees it)</figcaption></figure>")  # fmt: skip
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            trigger = ""
    where = "full colour at eps = " + f"{scale:g}" if scale else "full colour at the largest change"
    return (
        f"<p>Round {pick} of {rounds[-1]} (the round after 0 with the most shared examples: "
        f"{counts[pick]} of {len(probe.y)}). Each picture: clean image | perturbation | "
        f"adversarial example.</p><p>{_img(diverging_legend(), 'perturbation colours')} "
        f"<span class='note'>blue = darker, grey = unchanged, red = brighter; {_e(where)}"
        f"</span></p><div class='grid'>{trigger}{''.join(figures)}</div>"
    )


def _saliency(run: Run, method: str, n: int, split=None) -> str:
    """The Explain grid (clean and triggered test images, h0's and h's maps) as pictures."""
    from sau_core.explain import METHODS, compare_focus, explain_grid, sources

    try:
        pair = sources.load_run_pair(run)
        split = split if split is not None else pair.data.load()
        versions, y = sources.test_versions(split.test, pair.attack, n)
        grid = explain_grid(pair.models, versions, method)
    except (ValueError, RunError, OSError, RuntimeError) as err:
        return f"<p class='note'>No saliency grid: {_e(err)}</p>"
    rows = []
    for i in range(len(y)):
        parts = []
        for v in range(len(grid.columns)):
            parts.append(to_uint8(grid.images[v][i]))
            parts.extend(heat_to_uint8(grid.maps[v][j][i]) for j in range(len(pair.models)))
        caption = f"true {int(y[i])}: " + "; ".join(
            f"{name}: " + ", ".join(
                f"{m} → {int(grid.pred[v][j][i])} ({100 * float(grid.conf[v][j][i]):.0f}%)"
                for j, m in enumerate(pair.names)
            )
            for v, name in enumerate(grid.columns)
        )  # fmt: skip
        rows.append(f"<figure>{_img(hstack(parts, gap=6), caption)}"
                    f"<figcaption>{_e(caption)}</figcaption></figure>")  # fmt: skip
    heads = " || ".join(f"{c}: image | " + " | ".join(f"{m}'s map" for m in pair.names)
                        for c in grid.columns)  # fmt: skip
    out = [
        f"<p>{_e(METHODS[method].label)}: {_e(METHODS[method].help)} Each row: {_e(heads)}. "
        "One colour scale per row, shared by every map in it.</p>",
        f"<p>{_img(heat_legend(), 'colour scale')} <span class='note'>0 (black) to the row's "
        "top (yellow)</span></p>",
        f"<div class='grid'>{''.join(rows)}</div>",
    ]
    if pair.attack is not None:
        try:
            x = sources.focus_images(split.test, pair.attack, 64)
            focus = compare_focus(pair.h0, pair.h, x, pair.attack.trigger(pair.info), method)
            out.append("<h3>Trigger focus</h3>" + _table(charts.focus_rows(focus)))
            out.append(
                "<p class='note'>The share of each map's attribution inside the pixels the "
                "trigger changes, on triggered test images outside the target class; a map that "
                "looked everywhere equally would score the last column.</p>"
            )
        except (ValueError, RuntimeError) as err:
            out.append(f"<p class='note'>No trigger focus: {_e(err)}</p>")
    return "".join(out)


def _verdict(run: Run, metrics: dict) -> str:
    """The verdict panel: the stored probe's (with re-tuning) or the defence's figures alone."""
    probe = read_probe(run.path)
    v = verdict_from_metrics(metrics, probe)
    rows = [{"figure": r["key"], "value": r["value"], "reading": r["reading"]}
            for r in v["readings"]]  # fmt: skip
    back = (probe or {}).get("settings", {}).get("back", 0.5)
    html = (f"<h2>Is the backdoor gone?</h2><p><b>Verdict: {_e(v['headline'])}.</b></p>"
            + _table(rows) + _para("Thresholds: " + thresholds_text(back)))  # fmt: skip
    if probe and probe.get("reactivation"):
        html += _figure(charts.reactivation_curves(probe["reactivation"], back))
    elif metrics.get("after", {}).get("asr") is not None:
        html += _para("The re-tuning test was not run (`sau probe --checkpoint RUN_DIR`, or the "
                      "button on the run's page); the verdict reads the defence's own figures.")  # fmt: skip
    return html


def build_report(run: Run, *, method: str = "saliency", n_images: int = 4, split=None) -> str:
    """The HTML text of ``run``'s report (a defence run gets every section, SAU's own ones for
    SAU; an attack run its settings, metrics and training curves). ``split``: an already loaded
    data set (optional)."""
    view = view_of(run)
    config = run.config()
    job = config.get("job", {})
    label = config.get("label") or run.id
    m = view.metrics or {}
    known = job.get("attack") is not None
    body = [
        f"<h1>SAU Lab report: {_e(label)}</h1>",
        f"<p class='note'>Run <code>{_e(run.id)}</code> · {_e(run.kind)} · {_e(view.state)}"
        + (f" · {_e(view.message)}" if view.message else "")
        + f" · made {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>",
    ]
    if run.kind == "purify":
        defense = job.get("defense", "sau")
        sau = defense == "sau"
        entry = DEFENSES.get(defense)
        title = entry.title.split(":")[0] if entry else defense
        body.append(f"<h2>Before and after {_e(title)}</h2>")
        if entry is not None:
            body.append(_para(f"{entry.title}. {entry.summary} Where it is known to fail: "
                              f"{entry.weakness} ({entry.paper.cite()})"))  # fmt: skip
        if m:
            body.append(_table(charts.before_after_rows(m, title)))
            der = m.get("der")
            body.append(
                f"<p>DER: <b>{'not measured (it needs the trigger)' if der is None else f'{der:.3f}'}"
                f"</b> · rounds: {_e(m.get('rounds_done', '–'))} · time: "
                f"{_e(duration(m.get('seconds')))} on {_e(m.get('device', '?'))}</p>"
            )
            if not known and sau:
                body += [_para(line, "evidence") for line in unknown_trigger_report(view.rounds)]
            body += [f"<p class='note'><b>Low ASR is not the whole story.</b> {_e(n)}</p>"
                     for n in trigger_caveats(m.get("after"))]  # fmt: skip
            body.append(_verdict(run, m))
        else:
            body.append("<p class='note'>The run has no final metrics.</p>")
        body += [_para(HELP[k]) for k in ("acc", "asr", "ra", "der")]
        total = (job.get("settings") or job.get("sau") or {}).get("rounds")
        if view.rounds or view.before:
            body.append("<h2>Curves</h2><div class='charts'>")
            body.append(_figure(charts.metric_curves(view.rounds, view.before, total)))
            if known:
                body.append(_figure(charts.per_class_asr_curves(view.rounds, view.before, None,
                                                                total)))  # fmt: skip
            if sau:
                body.append(_figure(charts.sae_counts(view.rounds, total)))
            if sau and any(r.get("adv_classes") for r in view.rounds):
                target = charts.attack_target(job)
                body.append(_figure(charts.adv_class_shares(view.rounds, target, None, total)))
            if not sau and view.batches:
                body.append(_figure(charts.loss_curves(view.batches)))
            body.append("</div>")
            keys = (("per_class_asr",) if known else ()) + (("counts", "landing") if sau else ())
            body += [_para(HELP[k]) for k in keys]
        if sau:
            body.append("<h2>Shared adversarial examples</h2>" + _para(HELP["shared"]))
            body.append(_gallery(run, job))
        body.append("<h2>Where the models look</h2>")
        body.append(_saliency(run, method, n_images, split))
    else:
        body.append("<h2>Metrics</h2>")
        body.append(_table([{"metric": k.upper(), "value": v} for k, v in m.items()
                            if isinstance(v, (int, float))]))  # fmt: skip
        if view.epochs:
            body.append(_figure(charts.train_curves(view.epochs)))
    body.append("<h2>Settings</h2>")
    body.append(f"<pre>{_e(json.dumps(shorten_uris(job), indent=2))}</pre>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>SAU Lab report: {_e(label)}</title><style>{_CSS}</style>"
        f"<script>{plotly_script()}</script></head><body>" + "\n".join(body) + "</body></html>"
    )


def write_report(run_dir: str | Path, out: str | Path, **kwargs) -> Path:
    """Write the report of the run directory ``run_dir`` to ``out``; RunError if not a run."""
    run_dir = Path(run_dir).resolve()
    run = RunStore(run_dir.parent).get(run_dir.name)
    out = Path(out)
    out.write_text(build_report(run, **kwargs), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboard.report",
                                description="Export one SAU Lab run as a self-contained HTML file.")  # fmt: skip
    p.add_argument("--run", required=True, help="the run directory (runs/<id>)")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--method", default="saliency", help="attribution method of the grid")
    args = p.parse_args(argv)
    from sau_core.explain import METHODS

    if args.method not in METHODS:
        print(f"report: unknown method {args.method!r}; choose from {', '.join(METHODS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        path = write_report(args.run, args.out, method=args.method)
    except (RunError, OSError) as err:
        print(f"report: error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
