"""One self-contained HTML page of a report (``elbo-audit show REPORT --html OUT.html``).

The page needs no network and runs no script: CSS is inline, the
decomposition and the comparisons are inline SVG, and the 2-D view of q(z)
against the prior (when the report stores 2-D posteriors, ``--pointwise``) is
an inline PNG drawn by :mod:`elbo_audit._report.plot` when matplotlib is
installed. Every number shown is in nats per data point and carries, in its
element's ``data-value``, the report's value in full precision, so a test (or
a reader's tool) can check the page against the report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from .._errors import UsageError
from .build import replace_atomically
from .plot import _pyplot, posterior_figure
from .summary import summary_records, table_notes, table_terms
from .tables import fmt_interval, fmt_value

__all__ = ["render_fragment", "render_page", "write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:75em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table.ea{border-collapse:collapse;margin:.5em 0;font-size:.92em}
table.ea th,table.ea td{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}
table.ea th{background:#f4f4f4}table.ea td.label,table.ea th.label{text-align:left}
.ci{color:#666;font-size:.9em;display:block}.pass{color:#1a7f37;font-weight:bold}
.fail{color:#c62828;font-weight:bold}.note{color:#555;font-size:.88em;margin:.2em 0}
code{background:#f4f4f4;padding:0 .2em}img{max-width:100%}pre{margin:0;text-align:left}svg text{font-family:inherit}
"""

_MI, _MKL, _ELBO = "#4c72b0", "#dd8452", "#55a868"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None) -> str:
    return "nan" if value is None or math.isnan(value) else repr(float(value))


def _columns(ds: xr.Dataset) -> list[tuple[str, str]]:
    return [(r["model"], r["prior"]) for r in summary_records(ds)]


def summary_table(ds: xr.Dataset) -> str:
    """Terms as rows, one column per model@prior; each cell value ± se and its interval."""
    records = summary_records(ds)
    terms = table_terms(ds)
    head = "".join(f"<th>{_e(r['model'])}@{_e(r['prior'])}</th>" for r in records)
    rows = []
    for term, label in terms:
        cells = []
        for r in records:
            entry = r[term]
            interval = fmt_interval(entry["ci"]) if entry["value"] is not None else ""
            ci_html = f'<span class="ci">{_e(interval)}</span>' if interval else ""
            cells.append(
                f'<td class="cell" data-term="{_e(term)}" data-model="{_e(r["model"])}" '
                f'data-prior="{_e(r["prior"])}" data-value="{_num(entry["value"])}" '
                f'data-se="{_num(entry["se"])}"><span class="value">{_e(fmt_value(entry["value"], entry["se"]))}'
                f"</span>{ci_html}</td>"
            )
        rows.append(f'<tr><td class="label">{_e(label)}</td>{"".join(cells)}</tr>')
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in table_notes(ds, records, terms))
    return (
        f'<table class="ea" id="summary"><thead><tr><th class="label">term</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{notes}"
    )


def _value(ds: xr.Dataset, term: str, model: str, prior: str) -> float:
    return float(ds[term].sel(model=model, prior=prior))


def _label_width(cols: Sequence[tuple[str, str]]) -> int:
    """Room for the longest ``model @ prior`` label at 12 px (about 7 px a character)."""
    return max(120, 16 + 7 * max((len(m) + len(p) + 3 for m, p in cols), default=0))


def decomposition_svg(ds: xr.Dataset) -> str:
    """Stacked bars: average KL = index-code MI + marginal KL, with log N as a tick."""
    cols = _columns(ds)
    rows = []
    for m, p in cols:
        mi, mkl = _value(ds, "index_code_mi", m, p), _value(ds, "marginal_kl", m, p)
        rows.append((m, p, mi, mkl, float(ds["log_n"].sel(model=m))))
    finite = [v for r in rows for v in (max(r[2], 0) + max(r[3], 0), r[4]) if math.isfinite(v)]
    top = max(finite + [1e-9]) * 1.08
    left, width, bar, gap = _label_width(cols), 480, 18, 10
    height = 40 + len(rows) * (bar + gap)
    scale = width / top
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" id="decomposition" width="{left + width + 40}" '
             f'height="{height + 30}" role="img" aria-label="average KL = index-code MI + marginal KL">')]
    for i, (m, p, mi, mkl, log_n) in enumerate(rows):
        y = 20 + i * (bar + gap)
        w_mi = max(mi, 0.0) * scale if math.isfinite(mi) else 0.0
        w_mkl = max(mkl, 0.0) * scale if math.isfinite(mkl) else 0.0
        parts.append(f'<text x="{left - 8}" y="{y + bar * 0.75}" text-anchor="end" font-size="12">'
                     f"{_e(m)} @ {_e(p)}</text>")
        parts.append(f'<rect x="{left}" y="{y}" width="{w_mi:.1f}" height="{bar}" fill="{_MI}">'
                     f"<title>index-code MI {_e(fmt_value(mi))}</title></rect>")
        parts.append(f'<rect x="{left + w_mi:.1f}" y="{y}" width="{w_mkl:.1f}" height="{bar}" fill="{_MKL}">'
                     f"<title>marginal KL {_e(fmt_value(mkl))}</title></rect>")
        if math.isfinite(log_n):
            xn = left + log_n * scale
            parts.append(f'<line x1="{xn:.1f}" x2="{xn:.1f}" y1="{y - 3}" y2="{y + bar + 3}" stroke="#000" '
                         'stroke-width="2"><title>log N, the ceiling of index-code MI</title></line>')
    y = height
    parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y}" y2="{y}" stroke="#888"/>')
    for k in range(5):
        v = top * k / 4
        parts.append(f'<text x="{left + v * scale:.1f}" y="{y + 14}" font-size="11" text-anchor="middle">'
                     f"{v:.2f}</text>")
    parts.append(f'<text x="{left + width / 2}" y="{y + 28}" font-size="11" text-anchor="middle">'
                 "nats per data point</text></svg>")
    legend = (f'<p class="note"><span style="color:{_MI}">&#9632;</span> index-code MI '
              f'<span style="color:{_MKL}">&#9632;</span> marginal KL &#8195;| log N (the ceiling of MI); '
              "negative estimates are drawn as zero.</p>")
    return "".join(parts) + legend


def elbo_svg(ds: xr.Dataset) -> str:
    """ELBO of every model@prior with its bootstrap interval: the per-model and per-prior comparison."""
    cols = _columns(ds)
    pts = []
    for m, p in cols:
        v = _value(ds, "elbo", m, p)
        lo, hi = (float(c) for c in ds["elbo_ci"].sel(model=m, prior=p).values)
        pts.append((m, p, v, lo if math.isfinite(lo) else v, hi if math.isfinite(hi) else v))
    vals = [x for r in pts for x in r[2:] if math.isfinite(x)]
    if not vals:
        return '<p class="note">ELBO not evaluated (no decoder).</p>'
    lo_all, hi_all = min(vals), max(vals)
    pad = (hi_all - lo_all) * 0.1 or 1.0
    lo_all, hi_all = lo_all - pad, hi_all + pad
    left, width, row = _label_width(cols), 480, 26
    height = 20 + len(pts) * row

    def sx(v: float) -> float:
        return left + (v - lo_all) / (hi_all - lo_all) * width

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" id="elbo-comparison" width="{left + width + 40}" '
             f'height="{height + 30}" role="img" aria-label="ELBO with bootstrap interval">')]
    for i, (m, p, v, lo, hi) in enumerate(pts):
        y = 20 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="12">{_e(m)} @ {_e(p)}</text>')
        if math.isfinite(v):
            parts.append(f'<line x1="{sx(lo):.1f}" x2="{sx(hi):.1f}" y1="{y}" y2="{y}" stroke="{_ELBO}" stroke-width="2"/>')
            parts.append(f'<circle cx="{sx(v):.1f}" cy="{y}" r="4" fill="{_ELBO}"><title>ELBO {_e(fmt_value(v))}'
                         f"</title></circle>")
    parts.append(f'<line x1="{left}" x2="{left + width}" y1="{height}" y2="{height}" stroke="#888"/>')
    for k in range(5):
        v = lo_all + (hi_all - lo_all) * k / 4
        parts.append(f'<text x="{sx(v):.1f}" y="{height + 14}" font-size="11" text-anchor="middle">{v:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def comparison_table(ds: xr.Dataset, term: str, label: str) -> str:
    """One term as a model-by-prior matrix (empty where a model was not evaluated under a prior)."""
    priors = [str(p) for p in ds["prior"].values]
    head = "".join(f"<th>{_e(p)}</th>" for p in priors)
    rows = []
    for m in (str(v) for v in ds["model"].values):
        cells = []
        for p in priors:
            if str(ds["prior_family"].sel(model=m, prior=p).values) == "":
                cells.append("<td></td>")
                continue
            v = _value(ds, term, m, p)
            se = _value(ds, f"{term}_se", m, p)
            cells.append(f'<td data-value="{_num(v)}">{_e(fmt_value(v, se))}</td>')
        rows.append(f'<tr><td class="label">{_e(m)}</td>{"".join(cells)}</tr>')
    return (f'<table class="ea comparison" data-term="{_e(term)}"><thead><tr><th class="label">{_e(label)}: '
            f"model \\ prior</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _posterior_png(tree: xr.DataTree) -> str | None:
    """q(z) against the prior as a base64 PNG, when the report has 2-D posteriors and matplotlib is there."""
    try:
        plt = _pyplot()
    except UsageError:  # no matplotlib: the page goes without the picture
        return None
    fig = posterior_figure(tree)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def gates_table(tree: xr.DataTree) -> str:
    """The stored gates and whether each passed."""
    if "gates" not in tree.children:
        return '<p class="note">No gates were stored in this report.</p>'
    g = tree["gates"].to_dataset()
    rows = []
    for i in range(g.sizes.get("gate", 0)):
        ok = bool(int(g["passed"].values[i]))
        rows.append(
            f'<tr><td class="{"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</td>'
            f'<td class="label"><code>{_e(g["expression"].values[i])}</code></td>'
            f'<td class="label">{_e(g["gate_model"].values[i])}@{_e(g["gate_prior"].values[i])}</td>'
            f'<td data-value="{_num(float(g["observed"].values[i]))}">{float(g["observed"].values[i]):.4g}</td>'
            f'<td>{float(g["threshold"].values[i]):g}</td></tr>'
        )
    return ('<table class="ea" id="gates"><thead><tr><th>status</th><th class="label">gate</th>'
            '<th class="label">model@prior</th><th>observed</th><th>threshold</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def provenance(ds: xr.Dataset) -> str:
    """The root attributes (versions, dataset sha256, seed, settings) and each model's artifacts."""
    rows = "".join(f'<tr><td class="label">{_e(k)}</td><td class="label"><code>{_e(v)}</code></td></tr>'
                   for k, v in sorted(ds.attrs.items()))
    models = []
    for m, attrs in zip(ds["model"].values, ds["model_attrs"].values, strict=True):
        try:
            pretty = json.dumps(json.loads(str(attrs)), indent=1, sort_keys=True)
        except json.JSONDecodeError:
            pretty = str(attrs)
        models.append(f'<tr><td class="label">{_e(m)}</td><td class="label"><pre>{_e(pretty)}</pre></td></tr>')
    return (f'<table class="ea" id="provenance"><tbody>{rows}</tbody></table>'
            '<h3>Models (artifacts and their sha256)</h3>'
            f'<table class="ea" id="models"><tbody>{"".join(models)}</tbody></table>')


def _sections(tree: xr.DataTree, *, full: bool) -> Sequence[str]:
    ds = tree.to_dataset()
    out = [
        "<h2>Summary</h2>", summary_table(ds),
        "<h2>Decomposition</h2>", decomposition_svg(ds),
        "<h2>Comparison across models and priors</h2>", elbo_svg(ds),
        comparison_table(ds, "elbo", "ELBO"), comparison_table(ds, "marginal_kl", "marginal KL"),
    ]
    png = _posterior_png(tree)
    if png is not None:
        out += ["<h2>q(z) against the prior</h2>",
                (f'<img id="posterior" alt="aggregate posterior q(z) against the prior" '
                f'src="data:image/png;base64,{png}"/>')]
    out += ["<h2>Gates</h2>", gates_table(tree)]
    if full:
        out += ["<h2>Provenance</h2>", provenance(ds)]
    return out


def render_fragment(tree: xr.DataTree) -> str:
    """The page's body without provenance (a notebook's rich view of an audit)."""
    return f"<div class=\"elbo-audit\"><style>{_CSS}</style>{''.join(_sections(tree, full=False))}</div>"


def render_page(tree: xr.DataTree, source: str = "") -> str:
    """The whole static page of a report: summary, decomposition, comparison, q(z), gates, provenance."""
    ds = tree.to_dataset()
    title = f"{ds.attrs.get('title', 'elbo-audit report')}: {ds.attrs.get('dataset_name', '')}"
    sub = (f"N = {ds.attrs.get('n_points', '?')}, seed {ds.attrs.get('seed', '?')}, "
           f"elbo-audit {ds.attrs.get('creation_library_version', '?')}, created {ds.attrs.get('created_at', '?')}")
    if source:
        sub += f"; file {source}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="note">{_e(sub)}</p>{"".join(_sections(tree, full=True))}'
        "</body></html>\n"
    )


def write_html(report: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Render the report file ``report`` as one static page at ``out`` (written atomically)."""
    out = Path(out)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UsageError(f"--html {out}: is a directory; name a file inside it, e.g. {out / 'report.html'}")
    if not folder.is_dir():
        raise UsageError(f"--html {out}: folder {folder} does not exist")
    with xr.open_datatree(report, engine="netcdf4") as tree:
        page = render_page(tree.load(), source=Path(report).name)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    os.close(fd)

    def write(name: str) -> None:
        Path(name).write_text(page, encoding="utf-8")

    replace_atomically(tmp, out, write)
    return out
