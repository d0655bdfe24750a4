"""The report as one self-contained HTML page (jinja2 template, inline CSS, inline SVG charts)."""
from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pulse.report.build import DEAD_LETTER_REASONS, VNEID_STEPS, ReportPage
from pulse.report.content import SERVICE_GROUP_LABELS, SERVICE_GROUP_MAXIMA
from pulse.report.formatting import vn_date, vn_decimal, vn_int, vn_money_millions, vn_pct


def _environment() -> Environment:
    environment = Environment(loader=PackageLoader("pulse.report", "templates"),
                              autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(pct=vn_pct, int=vn_int, dec=vn_decimal, date=vn_date, money=vn_money_millions)
    return environment


def render_html(page: ReportPage) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(page=page, charts={name: Markup(svg) for name, svg in page.charts.items()},
                           reasons=DEAD_LETTER_REASONS, vneid_steps=VNEID_STEPS, group_labels=SERVICE_GROUP_LABELS,
                           group_maxima=SERVICE_GROUP_MAXIMA)
