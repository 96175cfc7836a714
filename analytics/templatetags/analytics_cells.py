"""Formatting of dashboard numbers by kind: rates as percentages, relative changes as
signed percentages, differences of rates in percentage points, multiples with 倍, money
with two decimals, counts with thousands separators, a dash for "no value"."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def cell(value, kind: str = "int") -> str:
    if value is None or value == "":
        return "—"
    if kind == "rate":
        return f"{float(value) * 100:.1f}%"
    if kind == "change":  # a relative change: +4.5%
        return f"{float(value) * 100:+.1f}%"
    if kind == "points":
        return _("%(points)s 个百分点") % {"points": f"{float(value) * 100:+.1f}"}
    if kind == "times":
        return _("%(times)s 倍") % {"times": f"{float(value):.2f}"}
    if kind == "money":
        return f"{float(value):,.2f}"
    if kind == "decimal":
        return f"{float(value):.4f}"
    if kind == "days":
        number = float(value)
        return f"{number:.0f}" if number.is_integer() else f"{number:.1f}"
    if kind == "int" and isinstance(value, int | float):
        return f"{value:,}"
    return str(value)


@register.filter
def as_of(value: str) -> str:
    """An ISO instant from a cached result, in Shanghai time."""
    try:
        return timezone.localtime(datetime.fromisoformat(value)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return "—"
