"""Cells of the files we export, from data others wrote: text stays text.

A spreadsheet runs a cell that begins with = (+, -, @ in CSV) as a formula, and a
customer's nickname or a group's name is anyone's to choose: a name such as
=HYPERLINK("http://…") would run when an operator opens the export. Every
export's rows go through `xlsx_row` or `csv_row`. Money is written as numbers in
Excel's money format (`MONEY_FORMAT`), so a sheet sums it and shows it as 1,234.50.
"""

from collections.abc import Collection
from datetime import datetime

from django.utils import timezone
from openpyxl.cell import WriteOnlyCell

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

CSV_FORMULA_START = "=+-@"
MONEY_FORMAT = "#,##0.00"


def xlsx_row(sheet, values, money: Collection[int] = ()) -> list:
    """A row for `sheet.append` (write-only sheets too): a string openpyxl would store
    as a formula (it begins with =) is stored as the text it is; the values at the
    places `money` names are formatted as money."""
    return [
        _text_cell(sheet, v)
        if isinstance(v, str) and v.startswith("=")
        else _money_cell(sheet, v)
        if place in money and v is not None
        else v
        for place, v in enumerate(values)
    ]


def _text_cell(sheet, value: str):
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def _money_cell(sheet, value):
    cell = WriteOnlyCell(sheet, value=value)
    cell.number_format = MONEY_FORMAT
    return cell


def csv_row(values) -> list:
    """A row for `csv.writer`: text a spreadsheet would read as a formula behind a
    leading ' (numbers, even negative ones, are left as they are)."""
    return [csv_text(v) if isinstance(v, str) else v for v in values]


def csv_text(value: str) -> str:
    """Text a spreadsheet would read as a formula behind a leading '; a number (-2,
    -178.00) or a lone - is none, and keeps no ' (it would show in the cell)."""
    if value and value[0] in CSV_FORMULA_START and value != "-" and not _is_number(value):
        return "'" + value
    return value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def wall_clock(value: datetime | None) -> datetime | None:
    """A moment as an export writes it: Shanghai wall-clock time (Excel has no zones)."""
    return timezone.localtime(value).replace(tzinfo=None) if value else None
