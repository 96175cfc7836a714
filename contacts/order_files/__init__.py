"""Order exports as the channels produce them, read into generic order lines and validated.

The reading layer of the order import (DESIGN.md, "Order files"); it writes
nothing. `read_orders` yields an `OrderLine` for each valid line and one
`RowError` per problem of an invalid row; the loader rejects a whole order
when any of its rows has an error (by `RowError.order_id`). A file that
cannot be read at all raises `OrderFileError`.

- `sources`: bytes to rows: encoding (UTF-8 with or without BOM, else
  GB18030), CSV or XLSX, Excel text guards (`="…"`, a leading `'`) stripped.
- `lines`: OrderLine, RowError and the rules of a valid line (the generic
  format's contract, applied to every channel).
- `channels`: each export's rows mapped onto generic lines; Tmall's two reports joined.
- `words`: status words per channel, and product-name keywords for attributes.

Memory stays flat as files grow: rows are streamed; only the skus of the order
being read are held to report a repeated line (the loader finds repeats that lie
apart), and, for Tmall, the order report by order number.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path

from django.utils.translation import gettext_lazy, gettext_noop

from contacts.order_files.channels import (
    ORDER_NUMBER_COLUMNS,
    READERS,
    Format,
    format_of,
    read_tmall,
)
from contacts.order_files.lines import (
    GENERIC_COLUMNS,
    GENERIC_REQUIRED,
    ORDER_CHANNELS,
    STATUSES,
    OrderFileError,
    OrderLine,
    RowError,
)
from contacts.order_files.sources import Table
from scrm.reasons import Reason

__all__ = [
    "CHANNELS",
    "GENERIC_COLUMNS",
    "GENERIC_REQUIRED",
    "ORDER_CHANNELS",
    "STATUSES",
    "OrderFileError",
    "OrderLine",
    "RowError",
    "detect_channel",
    "order_number_columns",
    "read_cells",
    "read_orders",
]

CHANNELS = ("generic", "tmall", "jd", "douyin", "youzan")  # --channel choices
# The channels an order comes from, by name (an order's channel, the dashboards' filter).
_CHANNEL_NAMES = {
    "tmall": gettext_noop("天猫"),
    "jd": gettext_noop("京东"),
    "douyin": gettext_noop("抖音"),
    "youzan": gettext_noop("有赞"),
    "miniapp": gettext_noop("小程序"),
    "pos": gettext_noop("门店"),
    "other": gettext_noop("其他"),
}
ORDER_CHANNEL_NAMES = {channel: gettext_lazy(name) for channel, name in _CHANNEL_NAMES.items()}
# The formats an import reads (`CHANNELS`), by name; as a reason's argument (`_TITLE_REASONS`).
_TITLES = {"generic": gettext_noop("通用格式")} | {
    channel: _CHANNEL_NAMES[channel] for channel in CHANNELS[1:]
}
CHANNEL_TITLES = {channel: gettext_lazy(title) for channel, title in _TITLES.items()}
_TITLE_REASONS = {channel: Reason(title) for channel, title in _TITLES.items()}


def _format(table: Table) -> Format:
    found = format_of(table.header)
    if found is None:
        shown = table.header[:6]
        if len(table.header) > 6:
            shown[-1] += "…"
        raise OrderFileError(
            Reason(
                "{file}：无法从表头识别是哪个渠道的导出（表头为：{header}）；"
                "支持通用格式、天猫订单报表和宝贝报表、京东、抖音、有赞",
                file=table.name,
                header=shown,
            )
        )
    return found


def detect_channel(path: Path) -> str:
    """The --channel a file belongs to, from its header row ("tmall" for both of Tmall's
    reports). Raises OrderFileError when the header fits no known export."""
    with Table(path) as table:
        return _format(table).channel


def order_number_columns(paths: list[Path], channel: str | None = None) -> dict[str, str]:
    """Each file's order number column, by file name (its channel detected when `channel`
    is None)."""
    return {path.name: ORDER_NUMBER_COLUMNS[channel or detect_channel(path)] for path in paths}


def read_orders(paths: list[Path], channel: str | None = None) -> Iterator[OrderLine | RowError]:
    """Every line of the files, as an OrderLine or as the RowErrors of its row.

    With `channel` None each file's channel is detected from its header. Tmall
    needs its order report and its item report, in any order among `paths`.
    The headers of all files are checked at once (OrderFileError before any
    row is read); a file that turns out unreadable further down (an encoding
    error at row 90,000) raises OrderFileError while iterating.
    """
    if channel is not None and channel not in CHANNELS:
        raise OrderFileError(
            Reason(
                "未知渠道：{channel}（应为 {choices} 之一）",
                channel=channel,
                choices=list(CHANNELS),
            )
        )
    plan: list[tuple[Path, Format]] = []
    for path in paths:
        with Table(path) as table:
            found = _format(table)
            if channel is not None and found.channel != channel:
                raise OrderFileError(
                    Reason(
                        "{file}：表头是「{title}」的，与所选渠道「{chosen}」不符",
                        file=table.name,
                        title=found.title,
                        chosen=_TITLE_REASONS[channel],
                    )
                )
            missing = found.missing(table.header)
            if missing:
                raise OrderFileError(
                    Reason(
                        "{file}：{title}缺少必需的列：{columns}",
                        file=table.name,
                        title=found.title,
                        columns=missing,
                    )
                )
        plan.append((path, found))
    kinds = {found.kind for _, found in plan}
    if "tmall_orders" in kinds and "tmall_items" not in kinds:
        raise OrderFileError(Reason("天猫导入需要订单报表和宝贝报表两个文件：缺少宝贝报表"))
    if "tmall_items" in kinds and "tmall_orders" not in kinds:
        raise OrderFileError(Reason("天猫导入需要订单报表和宝贝报表两个文件：缺少订单报表"))
    return _read(plan)


def _read(plan: list[tuple[Path, Format]]) -> Iterator[OrderLine | RowError]:
    tmall_read = False
    for path, found in plan:
        if found.channel == "tmall":
            # Both reports are read together, where the first of them is listed.
            if not tmall_read:
                tmall_read = True
                yield from read_tmall(
                    [p for p, f in plan if f.kind == "tmall_orders"],
                    [p for p, f in plan if f.kind == "tmall_items"],
                )
            continue
        with Table(path) as table:
            yield from READERS[found.kind](table)


def read_cells(paths: list[Path], rows: Iterable[tuple[str, int]]) -> list[dict]:
    """The cells of the given (file name, row number) rows as read (text guards
    stripped, a NUL replaced; a row with more cells than the header has them all), by file in the
    order of `paths`: {"file", "header", "rows": [[row, cells], …]}. A file is read
    up to the last row asked of it."""
    wanted: dict[str, set[int]] = {}
    for name, row in rows:
        wanted.setdefault(name, set()).add(row)
    found = []
    for path in paths:
        numbers = wanted.pop(path.name, None)
        if not numbers:
            continue
        last = max(numbers)
        with Table(path) as table:
            cells = []
            for number, row, _ in table.rows(whole=True):
                if number > last:
                    break
                if number in numbers:  # a NUL cannot be stored (jsonb): kept as �
                    cells.append([number, [cell.replace("\0", "\ufffd") for cell in row]])
        found.append({"file": table.name, "header": table.header, "rows": cells})
    return found
