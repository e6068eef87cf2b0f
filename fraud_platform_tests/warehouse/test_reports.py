"""The Dagster-free report helpers: inline PNG Markdown, Markdown tables, and rate roll-ups."""

from __future__ import annotations

import base64
import re
from datetime import date

import pandas as pd
from matplotlib.figure import Figure

from fraud_platform.reports import figure_to_markdown, fraud_rollup, fraud_trend_figures, markdown_table


def test_figure_to_markdown_embeds_a_png_data_uri():
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    markdown = figure_to_markdown(fig, alt="roc")
    match = re.fullmatch(r"!\[roc\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match and base64.b64decode(match.group(1)).startswith(b"\x89PNG")


def test_markdown_table_limits_rows_formats_floats_and_escapes_pipes():
    frame = pd.DataFrame({"name": ["a|b", "c", "d"], "rate": [0.123456, None, 1.0]})
    lines = markdown_table(frame, max_rows=2).splitlines()
    assert lines == ["| name | rate |", "| --- | --- |", "| a\\|b | 0.1235 |", "| c |  |"]


def test_rollup_recomputes_rates_from_summed_counts_not_averaged_rates():
    kpis = pd.DataFrame(
        {
            "event_date": [date(2026, 3, 1)] * 2,
            "channel": ["atm", "atm"],
            "hour": [1, 2],
            "transaction_count": [1, 99],
            "fraud_count": [1, 0],
            "amount_eur": [5.0, 10.0],
        }
    )
    rolled = fraud_rollup(kpis, "channel")
    assert rolled.loc[0, "fraud_rate"] == 1 / 100  # averaging the rates would give 0.5
    assert set(fraud_trend_figures(kpis)) == {"daily_fraud_rate", "fraud_by_channel", "fraud_by_hour"}
