"""The architecture comparison report of ``slocast tune --evaluate-all-archs``.

Writes ``comparison.png`` (business score, under % and over % of every family's best model on
the test slice, next to the baselines), ``pareto.png`` (every trial's cross-validated
(under %, over %), the front and the named strategies), ``tune.md``, a self-contained
``tune.html`` and ``tune.json``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from slocast.evaluation.report import figure, floor_notes, html_page
from slocast.tuning.selection import RULE
from slocast.tuning.strategies import pareto_front
from slocast.tuning.workbench import TuneResult, metrics_summary

__all__ = ["comparison_rows", "write_tune_report"]


def comparison_rows(result: TuneResult) -> list[dict[str, object]]:
    """One row per family's best model and per baseline, test-slice metrics and timings."""
    rows: list[dict[str, object]] = []
    for name, outcome in result.families.items():
        assert outcome.test is not None
        rows.append(
            {
                "model": name,
                **metrics_summary(outcome.test),
                "cv_score": outcome.cv["business_score"],
                "cv_folds": " / ".join(f"{v:.1f}" for v in outcome.fold_scores) or None,
                "fit_s": outcome.cv.get("fit_seconds"),
                "predict_us_per_row": 1e6 * outcome.cv.get("predict_seconds_per_row", np.nan),
                "trials": outcome.trials,
                "source": outcome.source,
            }
        )
    for name, metrics in result.baselines.items():
        rows.append({"model": name, **metrics_summary(metrics)})
    return rows


def _plot_comparison(rows: list[dict[str, object]], path: Path) -> None:
    names = [str(r["model"]) for r in rows]
    x = np.arange(len(names))
    with figure(path, (max(7.0, 1.1 * len(names)), 4.5), "best model per family (test)") as ax:
        for offset, key, label in (
            (-0.27, "business_score", "business score"),
            (0.0, "over_alloc_pct", "over %"),
            (0.27, "under_alloc_pct", "under % (x5 in the score)"),
        ):
            ax.bar(x + offset, [float(r[key]) for r in rows], width=0.27, label=label)  # type: ignore[arg-type]
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("percent / score (lower is better)")


def _plot_pareto(result: TuneResult, path: Path) -> None:
    with figure(path, (7, 5), "cross-validated trials: under vs over allocation") as ax:
        families = sorted({p.key.split("#")[0] for p in result.points})
        for family in families:
            own = [p for p in result.points if p.key.split("#")[0] == family]
            ax.scatter(
                [p.under_alloc_pct for p in own],
                [p.over_alloc_pct for p in own],
                s=12,
                alpha=0.6,
                label=family,
            )
        front = pareto_front(result.points)
        ax.plot(
            [p.under_alloc_pct for p in front],
            [p.over_alloc_pct for p in front],
            color="black",
            lw=1,
            label="Pareto front",
        )
        for name, (point, _) in result.strategies.items():
            ax.annotate(
                name,
                (point.under_alloc_pct, point.over_alloc_pct),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
            )
        ax.set(xlabel="under-allocated jobs %", ylabel="over-allocation %")
        ax.set_yscale("symlog")


def _format(value: object) -> str:
    if isinstance(value, float):
        return "—" if np.isnan(value) else f"{value:,.2f}"
    return "—" if value is None else str(value)


def _markdown_table(rows: list[dict[str, object]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c)) for c in columns) + " |")
    return lines


def _html_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_format(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_tune_report(result: TuneResult, out_dir: Path) -> Path:
    """Write the comparison report; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(result)
    images = [out_dir / "comparison.png", out_dir / "pareto.png"]
    _plot_comparison(rows, images[0])
    _plot_pareto(result, images[1])
    data = result.to_json()
    (out_dir / "tune.json").write_text(json.dumps(data, indent=1, default=float))
    columns = [
        "model", "business_score", "under_alloc_pct", "over_alloc_pct", "coverage",
        "cv_score", "cv_folds", "fit_s", "predict_us_per_row", "trials", "source",
    ]  # fmt: skip
    retry_rows: list[dict[str, object]] = [
        {"policy": name, **r.to_dict()} for name, r in result.retry.items()
    ]
    retry_columns = ["policy", "allocation_time", "overhead_pct", "retried_jobs", "failed_jobs"]
    waste = result.per_group_waste()
    waste_columns = ["group", "jobs", "under_alloc_pct", "waste_share_pct"]
    title = f"slocast tune: {result.domain} ({Path(result.dataset).name})"
    notes = floor_notes(result.backtest)
    lines = [
        f"# {title}",
        "",
        f"Test slice: the latest {result.test_rows} of {result.rows} jobs by time. "
        f"Family chosen by cross-validation: **{result.best}** ({RULE}).",
        "",
        *[f"{note}.\n" for note in notes],
        *_markdown_table(rows, columns),
        "",
        "## Memory-time with retries (failed attempts included)",
        "",
        *_markdown_table(retry_rows, retry_columns),
        "",
        f"## Where the waste is ({result.best}, by group)",
        "",
        *_markdown_table(waste, waste_columns),
        "",
        *[f"![{p.stem}]({p.name})" for p in images],
    ]
    (out_dir / "tune.md").write_text("\n".join(lines) + "\n")
    body = (
        f"<p>test slice: latest {result.test_rows} of {result.rows} jobs; family chosen by "
        f"cross-validation: <b>{html.escape(result.best)}</b> ({RULE})</p>"
        + "".join(f"<p>{html.escape(note)}.</p>" for note in notes)
        + _html_table(rows, columns)
        + "<h2>Memory-time with retries</h2>"
        + _html_table(retry_rows, retry_columns)
        + "<h2>Where the waste is</h2>"
        + _html_table(waste, waste_columns)
    )
    page = out_dir / "tune.html"
    page.write_text(html_page(title, body, images))
    return page
