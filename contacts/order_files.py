"""Read order exports as the channels produce them, row by row, into generic order lines.

Every format is mapped onto the generic format (DESIGN.md, "Order files") and
validated there, so one set of rules decides what is a valid line. Reading
streams: a file of any size costs the memory of one row (Tmall's order report
is held by order number, to join its item report to it).

Encodings: UTF-8 with or without BOM, else GB18030. Excel text guards
(`="…"`, a leading `'`) are stripped. XLSX through openpyxl in read-only mode.
"""

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl

CHANNELS = ("generic", "tmall", "jd", "douyin", "youzan")
ORDER_CHANNELS = ("tmall", "jd", "douyin", "youzan", "miniapp", "pos", "other")
STATUSES = ("paid", "cancelled", "refunded", "partially_refunded")
SHANGHAI = ZoneInfo("Asia/Shanghai")

# The generic format's columns, in file order (DESIGN.md, "Order files").
GENERIC_COLUMNS = [
    "order_id",
    "channel",
    "parent_order_id",
    "status",
    "paid_at",
    "buyer_phone",
    "buyer_unionid",
    "buyer_id",
    "buyer_name",
    "sku",
    "product_name",
    "category",
    "material",
    "style",
    "quantity",
    "unit_price",
    "line_amount",
    "refund_amount",
    "store_code",
    "guide_userid",
]
GENERIC_REQUIRED = ["order_id", "channel", "status", "sku", "quantity", "unit_price", "line_amount"]

# The header column that identifies each channel's export.
SIGNATURES = {
    "generic": {"order_id", "channel", "sku", "line_amount"},
    "tmall_orders": {"订单编号", "买家会员名", "买家实际支付金额"},
    "tmall_items": {"订单编号", "标题", "购买数量", "商家编码"},
    "jd": {"订单号", "京东价", "应付金额", "商家SKUID"},
    "douyin": {"主订单编号", "子订单编号", "选购商品"},
    "youzan": {"订单号", "粉丝昵称", "订单实付金额"},
}

# Attributes a channel export does not carry, read from the product name.
# Longest keywords first where one contains another.
CATEGORY_WORDS = ["文胸", "内裤", "睡衣", "睡裙", "家居服", "袜"]
CATEGORY_NAMES = {"睡裙": "睡衣", "袜": "袜子"}
MATERIAL_WORDS = ["冰丝", "真丝", "莫代尔", "蕾丝", "纯棉", "棉"]
MATERIAL_NAMES = {"纯棉": "棉"}
STYLE_WORDS = ["基础款", "主题款"]

_PHONE = re.compile(r"^1\d{10}$")
_MASKED_PHONE = re.compile(r"^1\d{2}\*{4}\d{4}$")
_MONEY = re.compile(r"^-?\d+(\.\d{1,2})?$")


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One valid order line in the generic format."""

    row: int
    source: str
    channel: str
    order_id: str
    parent_order_id: str
    status: str
    paid_at: datetime | None
    buyer_phone: str
    buyer_unionid: str
    buyer_id: str
    buyer_name: str
    sku: str
    product_name: str
    category: str
    material: str
    style: str
    quantity: int
    unit_price: Decimal
    line_amount: Decimal
    refund_amount: Decimal
    store_code: str
    guide_userid: str


@dataclass(frozen=True, slots=True)
class RowError:
    source: str
    row: int
    column: str
    reason: str
    order_id: str


class OrderFileError(Exception):
    """A whole file cannot be read: unknown format, missing columns, bad encoding."""


# -- reading raw rows -----------------------------------------------------------


def _clean(value) -> str:
    """Cell text without Excel's text guards (="…", a leading ') and surrounding spaces."""
    if value is None:
        return ""
    text = str(value).strip()
    if text.startswith('="') and text.endswith('"'):
        text = text[2:-1]
    elif text.startswith("'"):
        text = text[1:]
    return text.strip()


def _encoding(path: Path) -> str:
    head = path.read_bytes()[:65536] if path.stat().st_size < 65536 else _head(path)
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the end of the sample is still UTF-8.
        if error.start < len(head) - 4:
            return "gb18030"
    return "utf-8"


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(65536)


def _read(path: Path) -> Iterator:
    """A generator: first the header (list of column names), then (row number, row dict)
    for each non-empty row; the header is row 1. Close it to stop early."""
    if path.suffix.lower() == ".xlsx":
        try:
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as error:
            raise OrderFileError(f"{path.name}：无法作为 XLSX 打开（{error}）") from error
        try:
            values = workbook.worksheets[0].iter_rows(values_only=True)
            header = [_clean(cell) for cell in next(values, ())]
            yield header
            for number, cells in enumerate(values, start=2):
                if any(cell not in (None, "") for cell in cells):
                    yield number, {h: _clean(c) for h, c in zip(header, cells, strict=False)}
        finally:
            workbook.close()
        return
    with open(path, newline="", encoding=_encoding(path)) as handle:
        reader = csv.reader(handle)
        try:
            header = [_clean(cell) for cell in next(reader, [])]
            yield header
            for number, cells in enumerate(reader, start=2):
                if any(cell.strip() for cell in cells):
                    yield number, {h: _clean(c) for h, c in zip(header, cells, strict=False)}
        except UnicodeDecodeError as error:
            raise OrderFileError(
                f"{path.name}：第 {reader.line_num} 行编码无法识别（应为 UTF-8 或 GB18030）"
            ) from error


def _header(path: Path) -> list[str]:
    rows = _read(path)
    header = next(rows)
    rows.close()
    return header


def _kind(header: list[str]) -> str | None:
    columns = set(header)
    for kind, signature in SIGNATURES.items():
        if signature <= columns:
            return kind
    return None


def detect_channel(path: Path) -> str:
    """The channel whose export this file is, from its header row."""
    kind = _kind(_header(path))
    if kind is None:
        raise OrderFileError(
            f"{path.name}：无法从表头识别渠道（支持通用格式、天猫、京东、抖音、有赞的导出文件）"
        )
    return "tmall" if kind.startswith("tmall") else kind


# -- parsing fields ----------------------------------------------------------------


class _Problems:
    """Collects the problems of one row."""

    def __init__(self, source: str, row: int) -> None:
        self.source, self.row, self.items = source, row, []

    def add(self, column: str, reason: str) -> None:
        self.items.append((column, reason))

    def errors(self, order_id: str) -> list[RowError]:
        return [RowError(self.source, self.row, c, r, order_id) for c, r in self.items]


def _datetime(text: str) -> datetime | None:
    """ISO 8601 (with or without offset) or 2026/03/04 18:15:29; naive is Asia/Shanghai."""
    value = text.strip().replace("/", "-")
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


def _money(text: str, column: str, problems: _Problems, label: str) -> Decimal | None:
    value = text.strip().replace(",", "") or "0"
    if not _MONEY.match(value):
        problems.add(column, f"{label}不是有效金额：{text}（最多两位小数，例如 89.00）")
        return None
    amount = Decimal(value).quantize(Decimal("0.01"))
    if amount < 0:
        problems.add(column, f"{label}不能为负数：{text}")
        return None
    return amount


def _attributes(name: str) -> tuple[str, str, str]:
    def first(words: list[str], names: dict[str, str]) -> str:
        word = next((w for w in words if w in name), "")
        return names.get(word, word)

    return (
        first(CATEGORY_WORDS, CATEGORY_NAMES),
        first(MATERIAL_WORDS, MATERIAL_NAMES),
        first(STYLE_WORDS, {}),
    )


def _generic_line(
    fields: dict, source: str, row: int, columns: dict[str, str]
) -> OrderLine | list[RowError]:
    """Validate one row already in generic field names. `columns` maps each field to the
    column name the user sees in their file, for the error report."""
    problems = _Problems(source, row)
    order_id = fields.get("order_id", "")
    if not order_id:
        problems.add(columns["order_id"], "订单号为空")
    channel = fields.get("channel", "")
    if channel not in ORDER_CHANNELS:
        problems.add(
            columns["channel"],
            f"未知渠道：{channel or '（空）'}，应为 {'、'.join(ORDER_CHANNELS)} 之一",
        )
    status = fields.get("status", "")
    if status not in STATUSES:
        problems.add(
            columns["status"],
            f"未知订单状态：{status or '（空）'}，应为 {'、'.join(STATUSES)} 之一",
        )
    paid_at = None
    try:
        paid_at = _datetime(fields.get("paid_at", ""))
    except ValueError:
        problems.add(
            columns["paid_at"],
            f"付款时间无法识别：{fields.get('paid_at')}（应为 2026-03-01 20:42:39 这样的日期时间）",
        )
    else:
        if paid_at is None and status in ("paid", "refunded", "partially_refunded"):
            problems.add(columns["paid_at"], "已支付的订单缺少付款时间")
    phone = fields.get("buyer_phone", "").replace(" ", "").replace("-", "")
    if phone.startswith("+86"):
        phone = phone[3:]
    if phone and not (_PHONE.match(phone) or _MASKED_PHONE.match(phone)):
        problems.add(columns["buyer_phone"], f"手机号格式不对：{phone}（应为 11 位手机号）")
    unionid, buyer_id = fields.get("buyer_unionid", ""), fields.get("buyer_id", "")
    if not (phone or unionid or buyer_id):
        problems.add(columns["buyer_phone"], "缺少买家标识：手机号、UnionID、买家ID 至少填一个")
    sku = fields.get("sku", "")
    if not sku:
        problems.add(columns["sku"], "商品编码 (sku) 为空")
    quantity_text = fields.get("quantity", "")
    quantity = int(quantity_text) if quantity_text.isdigit() else 0
    if quantity <= 0:
        problems.add(columns["quantity"], f"数量应为正整数：{quantity_text or '（空）'}")
    unit_price = _money(fields.get("unit_price", ""), columns["unit_price"], problems, "单价")
    line_amount = _money(
        fields.get("line_amount", ""), columns["line_amount"], problems, "实付金额"
    )
    refund = _money(fields.get("refund_amount", ""), columns["refund_amount"], problems, "退款金额")
    if line_amount is not None and refund is not None and refund > line_amount:
        problems.add(columns["refund_amount"], f"退款金额 {refund} 大于实付金额 {line_amount}")
    if problems.items:
        return problems.errors(order_id)
    name = fields.get("product_name", "")
    category, material, style = _attributes(name)
    return OrderLine(
        row=row,
        source=source,
        channel=channel,
        order_id=order_id,
        parent_order_id=fields.get("parent_order_id", ""),
        status=status,
        paid_at=paid_at,
        buyer_phone=phone,
        buyer_unionid=unionid,
        buyer_id=buyer_id,
        buyer_name=fields.get("buyer_name", ""),
        sku=sku,
        product_name=name,
        category=fields.get("category") or category,
        material=fields.get("material") or material,
        style=fields.get("style") or style,
        quantity=quantity,
        unit_price=unit_price,
        line_amount=line_amount,
        refund_amount=refund,
        store_code=fields.get("store_code", ""),
        guide_userid=fields.get("guide_userid", ""),
    )


# -- channel mappings --------------------------------------------------------------
# Each maps one raw row onto generic field names, and names the raw column
# behind each field so that errors point at the column the operator sees.

GENERIC_NAMES = {name: name for name in GENERIC_COLUMNS}


def _status_from_words(*, paid: bool, words: str, refunded: Decimal, amount: Decimal) -> str:
    """A channel's status words and refund amounts as paid / cancelled / refunded / partial."""
    if "退款成功" in words or "已退款" in words or (amount > 0 and refunded >= amount):
        return "refunded"
    if "部分退款" in words or refunded > 0:
        return "partially_refunded"
    if not paid or any(w in words for w in ("已取消", "取消", "交易关闭", "已关闭", "关闭")):
        return "cancelled" if not paid else ("refunded" if refunded else "cancelled")
    return "paid"


def _count(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text.replace(",", "") or "0")
    except InvalidOperation:
        return Decimal("0")


def _jd(raw: dict) -> tuple[dict, dict]:
    paid = bool(raw.get("付款确认时间"))
    amount = _decimal(raw.get("应付金额", ""))
    fields = {
        "order_id": raw.get("订单号", ""),
        "channel": "jd",
        "status": _status_from_words(
            paid=paid, words=raw.get("订单状态", ""), refunded=Decimal(0), amount=amount
        ),
        "paid_at": raw.get("付款确认时间", ""),
        "buyer_phone": raw.get("联系电话", ""),
        "buyer_id": raw.get("下单帐号", ""),
        "buyer_name": raw.get("客户姓名", ""),
        "sku": raw.get("商家SKUID", ""),
        "product_name": raw.get("商品名称", ""),
        "quantity": raw.get("订购数量", ""),
        "unit_price": raw.get("京东价", ""),
        "line_amount": raw.get("应付金额", ""),
        "refund_amount": "0",
    }
    names = {
        **GENERIC_NAMES,
        "order_id": "订单号",
        "status": "订单状态",
        "paid_at": "付款确认时间",
        "buyer_phone": "联系电话",
        "sku": "商家SKUID",
        "quantity": "订购数量",
        "unit_price": "京东价",
        "line_amount": "应付金额",
        "refund_amount": "应付金额",
        "channel": "订单号",
    }
    return fields, names


def _douyin(raw: dict) -> tuple[dict, dict]:
    paid = bool(raw.get("支付完成时间"))
    amount = _decimal(raw.get("订单应付金额", ""))
    after_sale = raw.get("售后状态", "")
    refunded = amount if "退款成功" in after_sale else Decimal(0)
    quantity = raw.get("商品数量", "")
    unit = _decimal(raw.get("商品金额", "")) / (_count(quantity) or 1)
    fields = {
        "order_id": raw.get("子订单编号", ""),
        "parent_order_id": raw.get("主订单编号", ""),
        "channel": "douyin",
        "status": _status_from_words(
            paid=paid, words=raw.get("订单状态", "") + after_sale, refunded=refunded, amount=amount
        ),
        "paid_at": raw.get("支付完成时间", ""),
        "buyer_phone": raw.get("收件人手机号", ""),
        "buyer_name": raw.get("收件人", ""),
        "sku": raw.get("商家编码", ""),
        "product_name": raw.get("选购商品", ""),
        "quantity": quantity,
        "unit_price": f"{unit:.2f}",
        "line_amount": raw.get("订单应付金额", ""),
        "refund_amount": f"{refunded:.2f}",
    }
    names = {
        **GENERIC_NAMES,
        "order_id": "子订单编号",
        "status": "订单状态",
        "paid_at": "支付完成时间",
        "buyer_phone": "收件人手机号",
        "sku": "商家编码",
        "quantity": "商品数量",
        "unit_price": "商品金额",
        "line_amount": "订单应付金额",
        "refund_amount": "售后状态",
        "channel": "子订单编号",
    }
    return fields, names


def _youzan(raw: dict) -> tuple[dict, dict]:
    paid = bool(raw.get("付款时间"))
    amount = _decimal(raw.get("订单实付金额", ""))
    refund_words = raw.get("退款状态", "")
    refunded = amount if "退款成功" in refund_words or "全额退款" in refund_words else Decimal(0)
    fields = {
        "order_id": raw.get("订单号", ""),
        "channel": "youzan",
        "status": _status_from_words(
            paid=paid,
            words=raw.get("订单状态", "") + refund_words,
            refunded=refunded,
            amount=amount,
        ),
        "paid_at": raw.get("付款时间", ""),
        "buyer_phone": raw.get("买家手机号", ""),
        "buyer_name": raw.get("粉丝昵称", ""),
        "sku": raw.get("商品编码", ""),
        "product_name": raw.get("商品名称", ""),
        "quantity": raw.get("数量", ""),
        "unit_price": raw.get("单价", ""),
        "line_amount": raw.get("订单实付金额", ""),
        "refund_amount": f"{refunded:.2f}",
    }
    names = {
        **GENERIC_NAMES,
        "order_id": "订单号",
        "status": "订单状态",
        "paid_at": "付款时间",
        "buyer_phone": "买家手机号",
        "sku": "商品编码",
        "quantity": "数量",
        "unit_price": "单价",
        "line_amount": "订单实付金额",
        "refund_amount": "退款状态",
        "channel": "订单号",
    }
    return fields, names


def _tmall_lines(
    order_paths: list[Path], item_paths: list[Path]
) -> Iterator[tuple[str, int, dict, dict]]:
    """Tmall's item report joined to its order report by order number. The order's refund
    is spread over its lines in proportion to their amounts (the last line takes the rest)."""
    orders: dict[str, dict] = {}
    for path in order_paths:
        rows = _read(path)
        next(rows)
        for _, raw in rows:
            orders[raw.get("订单编号", "")] = raw
    for path in item_paths:
        rows = _read(path)
        next(rows)
        pending: list[tuple[int, dict]] = []
        for number, raw in rows:
            if pending and pending[-1][1].get("订单编号") != raw.get("订单编号"):
                yield from _tmall_order(path.name, pending, orders)
                pending = []
            pending.append((number, raw))
        if pending:
            yield from _tmall_order(path.name, pending, orders)


def _tmall_order(source: str, items: list[tuple[int, dict]], orders: dict[str, dict]):
    order_id = items[0][1].get("订单编号", "")
    order = orders.get(order_id, {})
    amounts = [_decimal(raw.get("价格", "")) * _count(raw.get("购买数量", "")) for _, raw in items]
    total = sum(amounts) or Decimal(1)
    refund_total = _decimal(order.get("退款金额", ""))
    spread, given = [], Decimal(0)
    for index, amount in enumerate(amounts):
        share = (
            refund_total - given
            if index == len(amounts) - 1
            else (refund_total * amount / total).quantize(Decimal("0.01"))
        )
        spread.append(min(share, amount))
        given += share
    paid = bool(order.get("订单付款时间"))
    for (number, raw), amount, refund in zip(items, amounts, spread, strict=True):
        words = order.get("订单状态", "") or raw.get("订单状态", "")
        fields = {
            "order_id": order_id,
            "channel": "tmall",
            "status": _status_from_words(paid=paid, words=words, refunded=refund, amount=amount),
            "paid_at": order.get("订单付款时间", ""),
            "buyer_phone": order.get("联系手机", ""),
            "buyer_id": order.get("买家会员名", ""),
            "buyer_name": order.get("收货人姓名", ""),
            "sku": raw.get("商家编码", ""),
            "product_name": raw.get("标题", ""),
            "quantity": raw.get("购买数量", ""),
            "unit_price": raw.get("价格", ""),
            "line_amount": f"{amount:.2f}",
            "refund_amount": f"{refund:.2f}",
        }
        names = {
            **GENERIC_NAMES,
            "order_id": "订单编号",
            "status": "订单状态",
            "paid_at": "订单付款时间",
            "buyer_phone": "联系手机",
            "sku": "商家编码",
            "quantity": "购买数量",
            "unit_price": "价格",
            "line_amount": "价格",
            "refund_amount": "退款金额",
            "channel": "订单编号",
        }
        if not order:
            yield (
                source,
                number,
                None,
                {
                    "order_id": order_id,
                    "column": "订单编号",
                    "reason": f"宝贝报表中的订单 {order_id} 在订单报表中找不到",
                },
            )
            continue
        yield source, number, fields, names


MAPPINGS = {"jd": _jd, "douyin": _douyin, "youzan": _youzan}


def read_orders(paths: list[Path], channel: str | None = None) -> Iterator[OrderLine | RowError]:
    """Every line of the files as an OrderLine, or the RowErrors of a row that is not valid.

    Duplicate lines (one order's sku twice in a file) are found by the loader in
    its staging table, so reading holds nothing per row.
    """
    kinds: dict[str, list[Path]] = {}
    for path in paths:
        header = _header(path)
        kind = _kind(header)
        if kind is None or (channel and not kind.startswith(channel)):
            expected = channel or "通用格式、天猫、京东、抖音或有赞"
            raise OrderFileError(
                f"{path.name}：表头与{expected}的导出格式不符，请检查文件或渠道选择"
            )
        if kind == "generic":
            missing = [column for column in GENERIC_REQUIRED if column not in header]
            if missing:
                raise OrderFileError(f"{path.name}：缺少必需的列 {', '.join(missing)}")
        kinds.setdefault(kind, []).append(path)
    if ("tmall_orders" in kinds) != ("tmall_items" in kinds):
        raise OrderFileError("天猫导入需要同时选择订单报表和宝贝报表两个文件")

    def emit(source: str, number: int, fields: dict, names: dict) -> Iterator[OrderLine | RowError]:
        result = _generic_line(fields, source, number, names)
        if isinstance(result, list):
            yield from result
        else:
            yield result

    for kind, kind_paths in kinds.items():
        if kind == "tmall_items":
            continue
        if kind == "tmall_orders":
            for source, number, fields, names in _tmall_lines(kind_paths, kinds["tmall_items"]):
                if fields is None:
                    yield RowError(
                        source, number, names["column"], names["reason"], names["order_id"]
                    )
                else:
                    yield from emit(source, number, fields, names)
            continue
        for path in kind_paths:
            rows = _read(path)
            next(rows)
            for number, raw in rows:
                if kind == "generic":
                    yield from emit(path.name, number, raw, GENERIC_NAMES)
                else:
                    fields, names = MAPPINGS[kind](raw)
                    yield from emit(path.name, number, fields, names)
