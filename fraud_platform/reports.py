"""Pictures and tables for the Dagster UI, free of Dagster so notebooks and tests can use them too.

Figures are embedded as base64 PNG data URIs inside Markdown, which the Dagster UI renders
inline from ``MetadataValue.md``: no file server or artifact store needed. Figures are built with
``matplotlib.figure.Figure`` (Agg canvas, no pyplot global state), so rendering is thread-safe
and works headless.
"""

from __future__ import annotations

import base64
import io

import pandas as pd
from matplotlib.figure import Figure


def figure_to_markdown(fig: Figure, alt: str = "figure", dpi: int = 80) -> str:
    """PNG of ``fig`` as a Markdown image with an inline data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"


def markdown_table(frame: pd.DataFrame, max_rows: int = 20, float_format: str = "{:.4f}") -> str:
    """The first ``max_rows`` rows as a GitHub Markdown table (no extra dependency)."""
    head = frame.head(max_rows)

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        if isinstance(value, float):
            return float_format.format(value)
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(str(c) for c in head.columns) + " |",
        "| " + " | ".join("---" for _ in head.columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    return "\n".join(lines)


def fraud_rollup(kpis: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sum the KPI mart's counts over one dimension and recompute the fraud rate (rates are never averaged)."""
    rolled = kpis.groupby(by, as_index=False)[["transaction_count", "fraud_count", "amount_eur"]].sum()
    rolled["fraud_rate"] = rolled["fraud_count"] / rolled["transaction_count"]
    return rolled.sort_values(by).reset_index(drop=True)


def fraud_trend_figures(kpis: pd.DataFrame) -> dict[str, Figure]:
    """Daily fraud rate, fraud by channel and fraud by hour of day, from ``mart_daily_fraud_kpis``."""
    figures: dict[str, Figure] = {}

    daily = fraud_rollup(kpis, "event_date")
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.plot(pd.to_datetime(daily["event_date"]), daily["fraud_rate"] * 100, marker="o")
    ax.set(title="Daily fraud rate", ylabel="% of transactions")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    figures["daily_fraud_rate"] = fig

    by_channel = fraud_rollup(kpis, "channel")
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.bar(by_channel["channel"], by_channel["fraud_count"], color="tab:red")
    for x, (count, rate) in enumerate(zip(by_channel["fraud_count"], by_channel["fraud_rate"])):
        ax.annotate(f"{rate:.1%}", (x, count), ha="center", va="bottom", fontsize=8)
    ax.set(title="Fraud by channel (count, rate on top)", ylabel="fraudulent transactions")
    figures["fraud_by_channel"] = fig

    by_hour = fraud_rollup(kpis, "hour").set_index("hour").reindex(range(24), fill_value=0)
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.bar(by_hour.index, by_hour["fraud_rate"] * 100, color="tab:orange")
    ax.set(title="Fraud rate by hour of day (UTC)", xlabel="hour", ylabel="% of transactions", xticks=range(0, 24, 2))
    figures["fraud_by_hour"] = fig
    return figures


def kpi_report_markdown(kpis: pd.DataFrame, max_rows: int = 20) -> dict[str, str]:
    """Markdown for the KPI mart's materialization: the trend plots and the daily table head."""
    plots = "\n\n".join(
        f"**{name.replace('_', ' ')}**\n\n{figure_to_markdown(fig, alt=name)}"
        for name, fig in fraud_trend_figures(kpis).items()
    )
    daily = fraud_rollup(kpis, "event_date").sort_values("event_date", ascending=False)
    return {
        "fraud_trends": plots,
        "daily_kpis": markdown_table(daily, max_rows=max_rows),
        "kpi_preview": markdown_table(kpis, max_rows=max_rows),
    }
