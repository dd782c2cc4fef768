"""Evaluation reports: a table per method, per-group coverage and plots, as Markdown and HTML."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written headless (CI, servers): never open a window
import matplotlib.pyplot as plt
import numpy as np

from slocast.evaluation.backtest import REQUEST_UNTIL_KNOWN, EvaluationResult
from slocast.evaluation.metrics import rolling_coverage

__all__ = ["METRIC_COLUMNS", "figure", "floor_notes", "html_page", "write_report"]

METRIC_COLUMNS = (
    ("coverage", "coverage", "{:.3f}"),
    ("mean_bound", "mean bound", "{:,.4g}"),
    ("pinball_loss", "pinball", "{:,.4g}"),
    ("under_alloc_pct", "under %", "{:.2f}"),
    ("over_alloc_pct", "over %", "{:.1f}"),
    ("business_score", "business score", "{:.1f}"),
)


@contextmanager
def figure(path: Path, size: tuple[float, float], title: str) -> Iterator[Any]:
    """A figure with one axis, titled, legend drawn, saved to ``path`` and closed."""
    fig, ax = plt.subplots(figsize=size)
    try:
        yield ax
        ax.set_title(title)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _plot_rolling(result: EvaluationResult, path: Path) -> None:
    y = result.y_test
    window = max(20, len(y) // 20)
    title = f"{result.spec.name}: rolling coverage on the future slice"
    with figure(path, (9, 4), title) as ax:
        for name, method in result.methods.items():
            ax.plot(rolling_coverage(y, method.bounds.upper, window), label=name, lw=1.2)
        ax.axhline(result.target_coverage, color="black", ls="--", lw=1, label="promised")
        ylabel = f"coverage (rolling, {window} jobs)"
        ax.set(xlabel="test job (time order)", ylabel=ylabel, ylim=(0, 1.02))


def _plot_scatter(result: EvaluationResult, path: Path) -> None:
    y = result.y_test
    with figure(path, (5.5, 5), "bound vs actual (above the line = covered)") as ax:
        for name in ("slocast", "user_request", "quantile_raw"):
            if name in result.methods:
                ax.scatter(y, result.methods[name].bounds.upper, s=4, alpha=0.4, label=name)
        positive = y[y > 0]
        lo, hi = float(positive.min()), float(positive.max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="bound = actual")
        xlabel = f"actual ({result.spec.unit})"
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="upper bound")


def _plot_waste(result: EvaluationResult, path: Path) -> None:
    y = result.y_test
    with figure(path, (7, 4), "waste distribution") as ax:
        for name, method in result.methods.items():
            upper = np.nan_to_num(method.bounds.upper, nan=0.0)
            covered = upper >= y
            if covered.any() and (y[covered] > 0).all():
                ratio = np.log10(np.clip(upper[covered] / y[covered], 1.0, None))
                ax.hist(ratio, bins=50, histtype="step", label=name)
        ax.set(xlabel="log10(bound / actual) on covered jobs", ylabel="jobs")


def _notes(result: EvaluationResult) -> list[str]:
    """Where slocast's bounds stop past the user's request, and the request's floor."""
    method = result.methods.get("slocast")
    notes = floor_notes(result)
    if method is None or method.request_grace is None:
        return notes
    grace = f"slocast's bounds stop at the request + {method.request_grace:g} {result.spec.unit}"
    return [grace, *notes]


def floor_notes(result: EvaluationResult) -> list[str]:
    """The score of :func:`request_until_known` against the request's (none without one)."""
    floor = result.references.get(REQUEST_UNTIL_KNOWN)
    request = result.methods.get("user_request")
    if floor is None or request is None or request.metrics.business_score <= 0:
        return []
    ratio = floor.business_score / request.metrics.business_score
    return [
        f"floor for request fallback: {floor.business_score:.1f} ({ratio:.2f}x the request's "
        "score) is what an oracle scores that knows every job's outcome once its group has a "
        "finished job, and gives the request before that"
    ]


def _markdown(result: EvaluationResult, images: list[Path]) -> str:
    data = result.to_json()
    lines = [
        f"# slocast evaluation: {result.spec.name}",
        "",
        f"- dataset: `{Path(result.dataset).name}` ({result.rows} rows; "
        f"train {data['train_rows']}, "
        f"calibration {data['calibration_rows']}, test {data['test_rows']}, split by time)",
        f"- promised coverage: {result.target_coverage:.2f}",
        *[f"- {note}" for note in _notes(result)],
        "",
        "| method | " + " | ".join(label for _, label, _ in METRIC_COLUMNS) + " |",
        "|---|" + "---:|" * len(METRIC_COLUMNS),
    ]
    for name, method in result.methods.items():
        values = method.metrics.to_dict()
        cells = [fmt.format(values[key]) for key, _, fmt in METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "slocast" in result.methods and result.spec.group:
        lines += ["", f"## Coverage per {result.spec.group} (slocast, largest groups)", ""]
        lines += ["| group | rows | coverage |", "|---|---:|---:|"]
        for group, stats in result.methods["slocast"].per_group.items():
            lines.append(f"| {group} | {stats['rows']:.0f} | {stats['coverage']:.3f} |")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(lines) + "\n"


def html_page(title: str, body: str, images: list[Path]) -> str:
    """A self-contained HTML page: ``body`` (already escaped HTML) and the PNGs inlined."""
    pictures = "".join(
        f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'  # noqa: E501
        for p in images
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%;"
        "display:block;margin:1em 0}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}{pictures}</body></html>"
    )


def _html(result: EvaluationResult, images: list[Path], title: str) -> str:
    rows = []
    for name, method in result.methods.items():
        values = method.metrics.to_dict()
        cells = "".join(f"<td>{fmt.format(values[key])}</td>" for key, _, fmt in METRIC_COLUMNS)
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in METRIC_COLUMNS)
    body = (
        f"<p>promised coverage {result.target_coverage:.2f}; "
        f"test rows {len(result.split.test)} (the latest by time)</p>"
        + "".join(f"<p>{html.escape(note)}</p>" for note in _notes(result))
        + f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"
    )
    return html_page(title, body, images)


def write_report(result: EvaluationResult, out_dir: Path) -> Path:
    """Write ``report.md``, a self-contained ``report.html`` and the PNGs; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = [
        out_dir / "rolling_coverage.png",
        out_dir / "bound_vs_actual.png",
        out_dir / "waste.png",
    ]
    _plot_rolling(result, images[0])
    _plot_scatter(result, images[1])
    _plot_waste(result, images[2])
    (out_dir / "report.md").write_text(_markdown(result, images))
    page = out_dir / "report.html"
    page.write_text(_html(result, images, f"slocast evaluation: {result.spec.name}"))
    return page
