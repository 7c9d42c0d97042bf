"""One run as a self-contained HTML report that opens offline: the settings, the before/after
table, the curves and the per-class ASR as interactive plotly charts (plotly.js inlined once),
the probe batch's shared adversarial examples and the saliency grid as embedded PNG pictures.

Plain functions, no Streamlit: ``build_report(run)`` returns the HTML text;
``python -m dashboard.report --run runs/<id> --out report.html`` writes it from the shell.
Every piece of text from the run (its label, settings, messages) is escaped.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
import time
from pathlib import Path

import plotly.io as pio

from dashboard import charts
from dashboard.glossary import HELP, duration
from sau_core.jobs import view_of
from sau_core.pipeline import trigger_caveats
from sau_core.runs import Run, RunError, RunStore
from sau_core.visual import heat_legend, heat_to_uint8, hstack, png_bytes, probe_tiles, to_uint8

__all__ = ["build_report", "main", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#111827}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d1d5db;padding:.3em .7em;
text-align:left}th{background:#f3f4f6}pre{background:#f9fafb;padding:1em;overflow:auto;
font-size:.85em}.grid figure{display:inline-block;margin:.4em;text-align:center;font-size:.8em}
.note{color:#4b5563;font-size:.9em}img{image-rendering:pixelated}
"""


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


def _para(text: str) -> str:
    """A glossary entry (``**bold**: rest``) as an escaped paragraph."""
    parts = text.split("**")
    out = "".join(f"<b>{_e(p)}</b>" if i % 2 else _e(p) for i, p in enumerate(parts))
    return f"<p class='note'>{out}</p>"


def _figure(fig, first: bool) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=bool(first),
                       config={"displaylogo": False})  # fmt: skip


def _gallery(run: Run) -> str:
    rounds = run.probe_rounds()
    if not rounds:
        return "<p class='note'>This run kept no probe snapshots.</p>"
    try:
        probe = run.load_probe(rounds[-1])
    except RunError as err:
        return f"<p class='note'>{_e(err)}</p>"
    figures = []
    for t in probe_tiles(probe):
        flag = "SHARED" if t.shared else ("common" if t.common else "not shared")
        caption = f"true {t.y} · h0 → {t.h0} · h → {t.h} · {flag}"
        pic = hstack([to_uint8(t.clean), to_uint8(t.perturbation), to_uint8(t.adversarial)])
        figures.append(
            f"<figure>{_img(pic, caption)}<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return (
        f"<p>Round {rounds[-1]}. Each picture: clean image | perturbation (amplified; grey = no "
        f"change) | adversarial example.</p><div class='grid'>{''.join(figures)}</div>"
    )


def _saliency(run: Run, method: str, n: int, split=None) -> str:
    """The Explain grid (clean and triggered test images, h0's and h's maps) as pictures."""
    from sau_core import explore
    from sau_core.explain import METHODS, compare_focus, explain_grid

    try:
        pair = explore.load_run_pair(run)
        split = split if split is not None else pair.data.load()
        versions, y = explore.test_versions(split.test, pair.attack, n)
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
            x = explore.focus_images(split.test, pair.attack, 64)
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


def build_report(run: Run, *, method: str = "saliency", n_images: int = 4, split=None) -> str:
    """The HTML text of ``run``'s report (a purify run gets every section; an attack run its
    settings, metrics and training curves). ``split``: an already loaded data set (optional)."""
    view = view_of(run)
    config = run.config()
    label = config.get("label") or run.id
    m = view.metrics or {}
    body = [
        f"<h1>SAU Lab report: {_e(label)}</h1>",
        f"<p class='note'>Run <code>{_e(run.id)}</code> · {_e(run.kind)} · {_e(view.state)}"
        + (f" · {_e(view.message)}" if view.message else "")
        + f" · made {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>",
    ]
    first = True
    if run.kind == "purify":
        body.append("<h2>Before and after SAU</h2>")
        if m:
            body.append(_table(charts.before_after_rows(m)))
            der = m.get("der")
            body.append(
                f"<p>DER: <b>{'–' if der is None else f'{der:.3f}'}</b> · rounds: "
                f"{_e(m.get('rounds_done', '–'))} · time: {_e(duration(m.get('seconds')))} on "
                f"{_e(m.get('device', '?'))}</p>"
            )
            body += [f"<p class='note'><b>Low ASR is not the whole story.</b> {_e(n)}</p>"
                     for n in trigger_caveats(m.get("after"))]  # fmt: skip
        else:
            body.append("<p class='note'>The run has no final metrics.</p>")
        body += [_para(HELP[k]) for k in ("acc", "asr", "ra", "der")]
        total = (config.get("job", {}).get("sau") or {}).get("rounds")
        if view.rounds or view.before:
            body.append("<h2>Curves</h2>")
            body.append(_figure(charts.metric_curves(view.rounds, view.before, total), first))
            first = False
            body.append(_figure(charts.per_class_asr_curves(view.rounds, view.before, None,
                                                            total), first))  # fmt: skip
            body.append(_para(HELP["per_class_asr"]))
            body.append(_figure(charts.sae_counts(view.rounds, total), first))
            body.append(_para(HELP["counts"]))
            if any(r.get("adv_classes") for r in view.rounds):
                target = charts.attack_target(config.get("job", {}))
                body.append(_figure(charts.adv_class_shares(view.rounds, target, None, total),
                                    first))  # fmt: skip
                body.append(_para(HELP["landing"]))
        body.append("<h2>Shared adversarial examples</h2>" + _para(HELP["shared"]))
        body.append(_gallery(run))
        body.append("<h2>Where the models look</h2>")
        body.append(_saliency(run, method, n_images, split))
    else:
        body.append("<h2>Metrics</h2>")
        body.append(_table([{"metric": k.upper(), "value": v} for k, v in m.items()
                            if isinstance(v, (int, float))]))  # fmt: skip
        if view.epochs:
            body.append(_figure(charts.train_curves(view.epochs), first))
    body.append("<h2>Settings</h2>")
    body.append(f"<pre>{_e(json.dumps(config.get('job', {}), indent=2))}</pre>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>SAU Lab report: {_e(label)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
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
