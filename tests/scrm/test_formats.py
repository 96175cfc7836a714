"""Money on pages is grouped by thousands in both languages."""

from decimal import Decimal

from django.template import Context, Template
from django.utils import translation


def _render(value) -> str:
    return Template('{{ value|floatformat:"2g" }}').render(Context({"value": value}))


def test_money_is_grouped_by_thousands_in_chinese_and_english():
    for language in ("zh-hans", "en"):
        with translation.override(language):
            assert _render(Decimal("1234567.5")) == "1,234,567.50"
            assert _render(Decimal("999.5")) == "999.50"
