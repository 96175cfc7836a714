"""Simplified Chinese number formats as brands' reports write money: thousands by
commas (¥12,345.50), as the dashboards do. Django's own zh_Hans groups by nothing;
its other formats stand (`FORMAT_MODULE_PATH` falls back to them)."""

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
