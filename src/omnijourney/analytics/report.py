"""``omni analytics report``: every chart of ``analytics.charts`` in one self-contained HTML file.

The file carries Plotly's browser bundle from the installed ``plotly`` package inline (no CDN, nothing fetched when
it is opened: it can be mailed or archived), the KPIs of the period as cards, and per chart its figure, the tables
it was drawn from (HTML tables just below it) and, for a chart without data, the reason in words.
"""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jinja2
import plotly.io as pio
from markupsafe import Markup

from omnijourney.analytics.charts import Chart, kpi_cards, table_html
from omnijourney.analytics.schemas import Period

LONG_TABLE = 25  # rows: a longer table is folded under its caption (one click opens it)
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover - a source checkout without metadata
        return "?"


def period_text(period: Period) -> str:
    """``2026-03-01 to 2026-04-01 (exclusive)``, ``everything until ...``, or ``all the data``."""
    def day(v: datetime) -> str:
        return v.strftime("%Y-%m-%d %H:%M UTC") if (v.hour, v.minute) != (0, 0) else v.strftime("%Y-%m-%d")

    if period.since and period.until:
        return f"{day(period.since)} to {day(period.until)} (exclusive)"
    if period.since:
        return f"from {day(period.since)} on"
    if period.until:
        return f"everything before {day(period.until)}"
    return "all the data"


def render(charts: list[Chart], *, period: Period, backend: str, generated_at: datetime) -> str:
    """The report as one HTML document (Plotly inlined)."""
    import plotly.offline

    figures = {c.key: Markup(pio.to_html(c.figure, full_html=False, include_plotlyjs=False, div_id=f"{c.key}-chart",
                                         config={"displaylogo": False, "responsive": True}))
               if c.figure is not None else None for c in charts}
    tables = {f"{c.key}.{t.name}": Markup(table_html(t, table_id=f"{c.key}-{t.name}")) for c in charts
              for t in c.tables}
    kpi = next((c for c in charts if c.key == "kpis" and any(t.name == "summary" for t in c.tables)), None)
    cards = kpi_cards(kpi.table("summary").frame) if kpi is not None else []
    # the bundle goes inside a <script> element: nothing in it may close that element early
    bundle = plotly.offline.get_plotlyjs().replace("</script", "<\\/script")
    return _env.get_template("report.html").render(
        charts=charts, figures=figures, tables=tables, cards=cards, period_text=period_text(period),
        backend=backend, generated_at=generated_at.strftime("%Y-%m-%d %H:%M UTC"), plotly_js=Markup(bundle),
        plotly_version=_version("plotly"), version=_version("omnijourney"), long_table=LONG_TABLE)
