"""Opening an order file: CSV in whatever encoding the channel wrote, or XLSX; its header
and its rows as clean text, numbered as the operator sees them (the header is row 1).

Streams: a CSV through the csv module, an XLSX through openpyxl in read-only
mode; one row in memory at a time.
"""

import codecs
import csv
import itertools
import re
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path

import openpyxl

from contacts.order_files.lines import OrderFileError
from scrm.reasons import Reason
from scrm.spreadsheets import csv_text

SNIFF_BYTES = 1 << 20


def clean(text: str) -> str:
    """Cell text without surrounding spaces and Excel's text guards (="…", a leading ')."""
    text = text.strip()
    if text and (text[0] == "=" or text[0] == "'"):
        if len(text) >= 3 and text[1] == '"' and text[-1] == '"':
            text = text[2:-1].strip()
        elif text[0] == "'":
            text = text[1:].strip()
    return text


_DATE_START = re.compile(r"\d{4}[-/.年]\d")


def guard(text: str) -> str:
    """Cell text for a CSV opened in a spreadsheet, that `clean` reads back as it was:
    a long number (an order number), one with a leading zero and a date as ="…" text
    (a spreadsheet would round the number, drop the zero, and save the date in its
    own format), and a cell that would be read as a formula behind a leading '
    (`scrm.spreadsheets.csv_text`), as one that begins with ' already."""
    if (text.isdigit() and (len(text) > 11 or (len(text) > 1 and text[0] == "0"))) or (
        _DATE_START.match(text) and '"' not in text  # a quote would end the ="…" early
    ):
        return f'="{text}"'
    if text and text[0] == "'":  # read back without its first '
        return "'" + text
    return csv_text(text)


# Cells are stripped of white space as they come (str.strip returns the cell
# itself when there is none). Text guards are looked for in the joined row: two
# one-character searches (0.1 µs) instead of a test per cell; a row with an '
# or = anywhere is cleaned cell by cell.
_JOIN = "".join
_STRIP = str.strip


def sniff_encoding(path: Path) -> str:
    """utf-8-sig or utf-16 when the file starts with a BOM; else UTF-8 when the first
    block holding a non-ASCII byte decodes strictly as UTF-8; else GB18030.

    Blocks of pure ASCII decide nothing (both encodings read them alike), so a
    file whose first megabytes are ASCII is still judged by its first Chinese.
    """
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        handle.seek(0)
        while block := handle.read(SNIFF_BYTES):
            if block.isascii():
                continue
            try:
                # final=False: a character cut at the end of the block is not an error
                codecs.getincrementaldecoder("utf-8")().decode(block, final=False)
            except UnicodeDecodeError:
                return "gb18030"
            return "utf-8"
    return "utf-8"


_CONTROL_BYTES = [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]  # but \t \n \r


def _file_format(path: Path) -> str:
    with open(path, "rb") as handle:
        start = handle.read(4096)
    magic = start[:8]
    if magic.startswith(b"PK\x03\x04"):
        return "xlsx"
    if magic.startswith(b"\xd0\xcf\x11\xe0"):
        raise OrderFileError(
            Reason(
                "{file}：这是旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV 后再导入", file=path.name
            )
        )
    if not magic:
        raise OrderFileError(Reason("{file}：文件是空的", file=path.name))
    if path.suffix.lower() in (".xlsx", ".xlsm"):  # named so, but not a workbook inside
        raise OrderFileError(
            Reason(
                "{file}：文件名是 Excel 的，内容却不是 Excel 文件（可能已损坏，或是改了扩展名）："
                "请在 Excel 里打开后另存为 .xlsx，或导出 CSV 再导入",
                file=path.name,
            )
        )
    # Text has few control bytes (a stray NUL is a row's error); UTF-16, which has NULs,
    # starts with its byte order mark.
    controls = sum(start.count(bytes([byte])) for byte in _CONTROL_BYTES)
    if controls > max(2, len(start) // 100) and not start.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise OrderFileError(
            Reason(
                "{file}：不是 CSV 或 Excel 表格（可能是图片、压缩包或别的文件）："
                "请从渠道后台导出订单表格再导入",
                file=path.name,
            )
        )
    return "csv"


def _cell_text(value) -> str:
    """An XLSX cell as text: numbers as written (order numbers are often numbers),
    dates as ISO 8601."""
    if value is None:
        return ""
    if type(value) is str:
        return clean(value)
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return clean(str(value))


class Table:
    """One order file opened for reading: `header` (clean column names) and `rows()`.

    Use as a context manager, or call `close()`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        if path.is_dir():
            raise OrderFileError(Reason("{file}：这是文件夹，请给出其中的订单文件", file=path.name))
        if not path.is_file():
            raise OrderFileError(Reason("{file}：找不到文件", file=path.name))
        self.format = _file_format(path)
        if self.format == "xlsx":
            self._open_xlsx()
        else:
            self._open_csv()
        self.header = [name.lstrip("\ufeff").strip() for name in self.header]
        self.width = len(self.header)
        # The first column of a name wins when a header repeats one.
        self.index = {}
        for position, name in enumerate(self.header):
            self.index.setdefault(name, position)

    def _open_csv(self) -> None:
        self.encoding = encoding = sniff_encoding(self.path)
        if encoding == "utf-16":
            self._handle = open(self.path, encoding=encoding, newline="")  # closed in close()
            lines = iter(self._handle)
        else:
            # Decoded line by line, so that a bad byte is reported on its own line.
            # Splitting bytes at \n is safe: no UTF-8 or GB18030 character contains 0x0A.
            self._handle = open(self.path, "rb")  # closed in close()
            lines = (line.decode(encoding) for line in self._handle)
        try:
            first = next(lines, "")
            delimiter = "\t" if "\t" in first and "," not in first else ","
            self._reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
            header = next(self._reader, None)
        except UnicodeDecodeError as error:
            self.close()
            raise OrderFileError(self._decode_reason(1)) from error
        except csv.Error as error:
            self.close()
            raise OrderFileError(
                Reason("{file}：表头不是有效的 CSV（{error}）", file=self.name, error=error)
            ) from error
        if not header or not any(cell.strip() for cell in header):
            self.close()
            raise OrderFileError(Reason("{file}：第 1 行应为表头，但它是空的", file=self.name))
        self.header = [clean(cell) for cell in header]

    def _decode_reason(self, line: int) -> Reason:
        return Reason(
            "{file}：第 {row} 行有无法识别的字符"
            "（按 {encoding} 读取；文件应为 UTF-8 或 GB18030 编码）",
            file=self.name,
            row=line,
            encoding=self.encoding,
        )

    def _open_xlsx(self) -> None:
        self.encoding = ""
        try:
            self._workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except Exception as error:  # a broken zip, a missing part, …: all mean "not XLSX"
            raise OrderFileError(
                Reason(
                    "{file}：无法作为 Excel（.xlsx）文件打开，它可能是别的压缩包或已损坏："
                    "请在 Excel 里打开后另存为 .xlsx，或导出 CSV 再导入",
                    file=self.name,
                )
            ) from error
        sheet = self._workbook.worksheets[0]
        # Some writers record a wrong sheet size; read what is there.
        sheet.reset_dimensions()
        self._cells = sheet.iter_rows(values_only=True)
        header = next(self._cells, None)
        if not header or not any(cell not in (None, "") for cell in header):
            self.close()
            raise OrderFileError(Reason("{file}：第 1 行应为表头，但它是空的", file=self.name))
        self.header = [_cell_text(cell) for cell in header]

    def close(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._handle.close()
            self._handle = None
        if getattr(self, "_workbook", None) is not None:
            self._workbook.close()
            self._workbook = None

    def __enter__(self) -> "Table":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def rows(self, whole: bool = False) -> Iterator[tuple[int, list[str], bool]]:
        """(row number, cells, overflow) for each row that is not blank: exactly `width`
        clean cells; `overflow` when the row had non-empty cells beyond the header
        (kept too when `whole`). A file of a header alone is refused: an export of
        nothing (an empty date range, say) is not an import that succeeded."""
        rows = self._xlsx_rows(whole) if self.format == "xlsx" else self._csv_rows(whole)
        first = next(rows, None)
        if first is None:
            raise OrderFileError(
                Reason(
                    "{file}：只有表头，没有订单行（导出时选的时间范围里可能没有订单）",
                    file=self.name,
                )
            )
        yield first
        yield from rows

    def _csv_rows(self, whole: bool) -> Iterator[tuple[int, list[str], bool]]:
        width, join, strip = self.width, _JOIN, _STRIP
        number = 1
        try:
            for cells in self._reader:
                number += 1
                if not cells:
                    continue
                cells = list(map(strip, cells))
                joined = join(cells)
                if "'" in joined or "=" in joined:
                    cells = [clean(cell) for cell in cells]
                if len(cells) != width:
                    cells, overflow = _fit(cells, width, whole)
                    if not any(cells):
                        continue
                    yield number, cells, overflow
                elif any(cells):
                    yield number, cells, False
        except UnicodeDecodeError as error:
            # line_num counts the lines read so far: the bad one is the next
            raise OrderFileError(self._decode_reason(self._reader.line_num + 1)) from error
        except csv.Error as error:
            raise OrderFileError(
                Reason(
                    "{file}：第 {row} 行不是有效的 CSV（{error}）",
                    file=self.name,
                    row=number,
                    error=error,
                )
            ) from error

    def _xlsx_rows(self, whole: bool) -> Iterator[tuple[int, list[str], bool]]:
        width = self.width
        number = 1
        try:
            for number, values in enumerate(self._cells, start=2):
                cells = [_cell_text(value) for value in values]
                cells, overflow = _fit(cells, width, whole)
                if any(cells):
                    yield number, cells, overflow
        except Exception as error:  # a sheet broken further down (its zip, its XML)
            raise OrderFileError(
                Reason(
                    "{file}：第 {row} 行之后无法读取（{error}）",
                    file=self.name,
                    row=number,
                    error=error,
                )
            ) from error


def _fit(cells: list[str], width: int, whole: bool) -> tuple[list[str], bool]:
    """`width` cells, and whether non-empty ones were cut off (kept when `whole`)."""
    if len(cells) < width:
        return cells + [""] * (width - len(cells)), False
    overflow = any(cells[width:])
    if whole and overflow:
        end = len(cells)
        while not cells[end - 1]:
            end -= 1
        return cells[:end], True
    return cells[:width], overflow
