"""Exports keep text others wrote as text: no cell runs as a formula."""

import io
import zipfile

from openpyxl import Workbook, load_workbook

from scrm.spreadsheets import csv_row, xlsx_row


def test_csv_text_that_would_be_a_formula_is_guarded_numbers_are_not():
    row = ["=1+1", "@SUM(A1)", "+cmd", "-x", "-12.50", "5", "会员群", "", 3]
    assert csv_row(row) == ["'=1+1", "'@SUM(A1)", "'+cmd", "'-x", "-12.50", "5", "会员群", "", 3]


def test_xlsx_text_beginning_with_equals_is_stored_as_text_in_both_kinds_of_sheet():
    for write_only in (False, True):
        workbook = Workbook(write_only=write_only)
        sheet = workbook.create_sheet("s") if write_only else workbook.active
        sheet.append(xlsx_row(sheet, ['=HYPERLINK("http://x","y")', "门店", 7]))
        buffer = io.BytesIO()
        workbook.save(buffer)
        with zipfile.ZipFile(buffer) as archive:
            xml = "".join(archive.read(n).decode() for n in archive.namelist() if "sheet" in n)
        assert "<f>" not in xml
        values = next(load_workbook(buffer).worksheets[0].iter_rows(values_only=True))
        assert values == ('=HYPERLINK("http://x","y")', "门店", 7)
