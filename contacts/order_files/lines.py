"""What a valid order line is: the generic format's contract (DESIGN.md, "Order files").

Every channel's rows are mapped onto the generic fields and checked here, so
one set of rules decides what is valid. Each problem becomes one `RowError`
whose reason an operator can act on, in Simplified Chinese.

This is the hot path of a million-line import: fields are parsed with cheap
string tests first, money and quantities through small caches (a file has few
distinct prices), and an `OrderLine` is built without the frozen dataclass's
slow `__init__` (see `_line`).
"""

import re
from dataclasses import dataclass, fields, make_dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from zoneinfo import ZoneInfo

from django.utils.translation import gettext_noop

from contacts.phones import phone_cell_mask
from scrm.reasons import Reason

ORDER_CHANNELS = ("tmall", "jd", "douyin", "youzan", "miniapp", "pos", "other")
STATUSES = ("paid", "cancelled", "refunded", "partially_refunded")
# A paid, refunded or partially refunded order was paid, so it has a payment time.
PAID_STATUSES = frozenset(("paid", "refunded", "partially_refunded"))
STATUS_NAMES = {
    "paid": gettext_noop("已付款"),
    "cancelled": gettext_noop("已取消"),
    "refunded": gettext_noop("已退款"),
    "partially_refunded": gettext_noop("部分退款"),
}
SHANGHAI = ZoneInfo("Asia/Shanghai")

# The generic format's columns, in file order.
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
BUYER_COLUMNS = ["buyer_phone", "buyer_unionid", "buyer_id"]
# Each generic field is reported under its own name in a generic file.
GENERIC_NAMES = {name: name for name in GENERIC_COLUMNS}

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("9999999999.99")  # numeric(12, 2)
MAX_QUANTITY = 2_147_483_647  # integer
# The longest text of each text field: that of the column it is stored in
# (contacts.models.Order, OrderLine; a test holds them to it).
TEXT_LIMITS = {
    "order_id": 64,
    "parent_order_id": 64,
    "buyer_unionid": 64,
    "buyer_id": 100,
    "buyer_name": 100,
    "sku": 64,
    "product_name": 200,
    "category": 50,
    "material": 50,
    "style": 50,
    "store_code": 32,
    "guide_userid": 64,
}
_SHORTEST_LIMIT = min(TEXT_LIMITS.values())
_texts_of = itemgetter(*(GENERIC_COLUMNS.index(field) for field in TEXT_LIMITS))


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One order line in the generic format, parsed and valid."""

    row: int  # 1-based row in its source file; the header is row 1
    source: str  # file name
    channel: str  # one of ORDER_CHANNELS
    order_id: str  # for Douyin the sub-order; parent_order_id is the checkout
    parent_order_id: str
    status: str  # one of STATUSES
    paid_at: datetime | None  # aware; None only when not paid
    buyer_phone: str  # 11 digits, or masked like 138****5601; "" if none
    buyer_unionid: str
    buyer_id: str  # the channel's own buyer id (Tmall 买家会员名, JD 下单帐号)
    buyer_name: str
    sku: str
    product_name: str
    category: str
    material: str
    style: str
    quantity: int
    unit_price: Decimal  # 2 places
    line_amount: Decimal  # what was paid for the line, 2 places
    refund_amount: Decimal  # 0 when none; never above line_amount
    store_code: str
    guide_userid: str
    # category, material and style were read from the product name (the export has
    # no such columns): the product catalogue's values win over them.
    attributes_guessed: bool = False


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem of one row; a row may have several."""

    source: str
    row: int
    column: str  # as in the file's header ("" when the problem is the row's shape)
    reason: str  # Simplified Chinese, for an operator
    order_id: str  # "" if unknown; the loader rejects the whole order
    # The order's channel; "" if unknown: the order number is then at fault in every channel.
    channel: str
    # Rejected only because its order is (the row itself is fine): not one at fault.
    follows: bool = False


class OrderFileError(Exception):
    """A whole file cannot be read: unknown format, missing columns, bad encoding.
    The message is in Chinese and names the file."""


# A frozen dataclass's generated __init__ sets each field through
# object.__setattr__: 2.8 µs for OrderLine's 22 fields, a third of the cost of
# reading a line. The draft has the same slots in the same order and no
# frozen check; an instance built as a draft then becomes an OrderLine by
# __class__ assignment (allowed between classes of identical layout), 0.5 µs.
_OrderLineDraft = make_dataclass(
    "_OrderLineDraft", [(field.name, field.type) for field in fields(OrderLine)], slots=True
)


def _line(*values) -> OrderLine:
    line = _OrderLineDraft(*values)
    line.__class__ = OrderLine
    return line


class Invalid:
    """Stands for a field a channel mapping found invalid and already reported."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = Invalid()


class FieldError(ValueError):
    """A field's value is not acceptable; the message (a `Reason`) is the reason for the
    operator."""


# -- fields ------------------------------------------------------------------------

_MONEY_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]*)?|-?\.[0-9]+")
_money_cache: dict[str, Decimal] = {}  # valid amounts only: a reason names its column


def parse_money(text: str, label: str) -> Decimal:
    """A non-negative amount in yuan with at most 2 decimal places, as Decimal(…, 2 places).

    `label` names the amount in the reason ("单价"). Thousands separators and a
    leading ¥ are accepted, as Excel writes them.
    """
    amount = _money_cache.get(text)
    if amount is not None:
        return amount
    plain = text.replace(",", "").replace("，", "").lstrip("¥￥").strip()
    if not _MONEY_TEXT.fullmatch(plain):
        raise FieldError(
            Reason(
                "{label}不是有效金额：{text}（应为 89.00 这样最多两位小数的数字）",
                label=label,
                text=text,
            )
        )
    try:
        amount = Decimal(plain)
    except InvalidOperation as error:  # pragma: no cover - the pattern admits only numbers
        raise FieldError(Reason("{label}不是有效金额：{text}", label=label, text=text)) from error
    if amount < 0:
        raise FieldError(Reason("{label}不能为负数：{text}", label=label, text=text))
    if amount > MAX_AMOUNT:
        raise FieldError(
            Reason(
                "{label}超出范围：{text}（最大 {most}）", label=label, text=text, most=MAX_AMOUNT
            )
        )
    rounded = amount.quantize(CENT)
    if rounded != amount:
        raise FieldError(Reason("{label}最多两位小数：{text}", label=label, text=text))
    if len(_money_cache) < 50_000:  # a file has few distinct prices; the cap bounds memory
        _money_cache[text] = rounded
    return rounded


def parse_quantity(text: str) -> int:
    """A positive whole number ("2", or "2.0" as spreadsheets write it)."""
    if text.isascii() and text.isdigit():
        quantity = int(text)
    else:
        whole, dot, fraction = text.partition(".")
        if not (dot and whole.isascii() and whole.isdigit() and fraction.strip("0") == ""):
            raise FieldError(Reason("数量必须是正整数：{text}", text=text or Reason("（空）")))
        quantity = int(whole)
    if quantity <= 0:
        raise FieldError(Reason("数量必须是正整数：{text}", text=text))
    if quantity > MAX_QUANTITY:
        raise FieldError(Reason("数量超出范围：{text}", text=text))
    return quantity


# Dates as people and exports write them when not ISO 8601: 2026/3/4 18:15:29,
# 2026.03.04 18:15, 2026年3月4日 18:15:29.
_LOOSE_TIME = re.compile(
    r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)


def parse_time(text: str) -> datetime:
    """ISO 8601 with or without offset, 2026/03/04 18:15:29 and the like; a time without an
    offset is Asia/Shanghai. Always timezone-aware."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = _loose_time(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value


def _loose_time(text: str) -> datetime:
    match = _LOOSE_TIME.fullmatch(text)
    if match is None:
        raise FieldError(text)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    iso = f"{year}-{int(month):02d}-{int(day):02d}"
    if hour is not None:
        iso += f"T{int(hour):02d}:{int(minute):02d}:{int(second or 0):02d}"
        if fraction:
            iso += "." + fraction.ljust(6, "0")
    if offset:
        iso += "+00:00" if offset == "Z" else offset
    try:
        return datetime.fromisoformat(iso)
    except ValueError as error:  # month 13, 25 o'clock, …
        raise FieldError(text) from error


_PHONE = re.compile(r"1[0-9]{10}")
_MASKED_PHONE = re.compile(r"1[0-9]{2}\*{4}[0-9]{4}")
_PHONE_NOISE = re.compile(r"[\s\-()（）]")


def parse_phone(text: str) -> str:
    """A mainland mobile number as its 11 digits, or kept masked like 138****5601.

    Spaces, dashes and a +86 / 0086 prefix are dropped.
    """
    if len(text) == 11 and text.isascii() and text.isdigit() and text[0] == "1":
        return text
    digits = _PHONE_NOISE.sub("", text).replace("＊", "*")
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    if _PHONE.fullmatch(digits) or _MASKED_PHONE.fullmatch(digits):
        return digits
    raise FieldError(
        Reason(
            "手机号格式不正确：{text}（应为 11 位手机号，或 138****5601 这样的打码号码）",
            text=phone_cell_mask(text),
        )
    )


def time_reason(text: str) -> Reason:
    return Reason("付款时间无法识别：{text}（应为 2026-03-01 20:42:39 这样的日期时间）", text=text)


# -- one line ------------------------------------------------------------------------


class DuplicateIndex:
    """The skus of the order being read, to report a line given twice.

    Every export we know lists the lines of an order one after the other, so
    only the order being read is held (memory stays flat however long the
    file). A repeat whose lines lie apart, another order between them, is found
    by the loader in the stage (`order_import._reject_repeated_lines`).
    """

    def __init__(self) -> None:
        self.order: tuple[str, str] | None = None
        self.rows: dict[str, int] = {}

    def earlier_row(self, order: tuple[str, str], sku: str, row: int) -> int | None:
        """`order` is (channel, order number)."""
        if order != self.order:
            self.order = order
            self.rows = {}
        first = self.rows.setdefault(sku, row)
        return None if first == row else first


_ORDER_CHANNEL_SET = frozenset(ORDER_CHANNELS)
_STATUS_SET = frozenset(STATUSES)
_QUANTITIES = {str(n): n for n in range(1, 100)}  # parse_quantity of the usual ones
money_cache_get = _money_cache.get
fromisoformat = datetime.fromisoformat


def _check_texts(texts: tuple, columns: dict[str, str], problems: list) -> None:
    """Text too long for its column, or with a NUL (which no text column can hold)."""
    for (field, limit), text in zip(TEXT_LIMITS.items(), texts, strict=True):
        if "\0" in text:
            problems.append(
                (columns[field], Reason("含有空字符（\\0），无法保存：导出的文件可能已损坏"))
            )
        elif len(text) > limit:
            problems.append(
                (
                    columns[field],
                    Reason("最多 {limit} 个字，这里有 {count} 个", limit=limit, count=len(text)),
                )
            )


# A long number Excel showed in scientific notation and saved so (3.86132E+17): the
# digits after the first six are gone, and two orders can end up one number.
_EXCEL_NUMBER = re.compile(r"\d(\.\d+)?[eE]\+\d+")
_EXCEL_NUMBER_REASON = gettext_noop(
    "订单号 {text} 是被 Excel 改成科学计数法的数字，后面的位数已经丢失："
    "请用原始导出文件，或在 Excel 里把这一列设为文本后重新导出"
)


def build_line(
    source: str,
    row: int,
    values: tuple,
    columns: dict[str, str],
    duplicates: DuplicateIndex,
    problems: list[tuple[str, str]] | None = None,
    *,
    guessed: bool = False,
) -> OrderLine | list[RowError]:
    """The line, or one RowError per problem.

    `values` holds the generic fields in GENERIC_COLUMNS order: text as read
    from a file, or a value a channel mapping already parsed (Decimal, int,
    datetime), or INVALID for one it found invalid and put in `problems`
    (column, reason). `columns` names each field's column in the file, for the
    report. `guessed`: the attributes were read from the product name.
    """
    (
        order_id,
        channel,
        parent_order_id,
        status,
        paid_at,
        phone,
        unionid,
        buyer_id,
        buyer_name,
        sku,
        product_name,
        category,
        material,
        style,
        quantity,
        unit_price,
        line_amount,
        refund_amount,
        store_code,
        guide_userid,
    ) = values
    problems = problems if problems is not None else []
    texts = _texts_of(values)
    if max(map(len, texts)) > _SHORTEST_LIMIT or "\0" in "".join(texts):  # rare: 0.6 µs
        _check_texts(texts, columns, problems)
    if not order_id:
        problems.append((columns["order_id"], Reason("订单号为空")))
    for name, number in (("order_id", order_id), ("parent_order_id", parent_order_id)):
        if type(number) is str and "E+" in number.upper() and _EXCEL_NUMBER.fullmatch(number):
            problems.append((columns[name], Reason(_EXCEL_NUMBER_REASON, text=number)))
    if channel not in _ORDER_CHANNEL_SET and channel is not INVALID:
        if channel.lower() in _ORDER_CHANNEL_SET:
            channel = channel.lower()
        else:
            problems.append(
                (
                    columns["channel"],
                    Reason(
                        "渠道无法识别：{text}（应为 {choices} 之一）",
                        text=channel or Reason("（空）"),
                        choices=list(ORDER_CHANNELS),
                    ),
                )
            )
    if status not in _STATUS_SET and status is not INVALID:
        if status.lower() in _STATUS_SET:
            status = status.lower()
        else:
            problems.append(
                (
                    columns["status"],
                    Reason(
                        "订单状态无法识别：{text}（应为 {choices} 之一）",
                        text=status or Reason("（空）"),
                        choices=list(STATUSES),
                    ),
                )
            )
    if type(paid_at) is str:
        if paid_at:
            try:
                paid_at = fromisoformat(paid_at)  # parse_time, inlined for the usual form
                if paid_at.tzinfo is None:
                    paid_at = paid_at.replace(tzinfo=SHANGHAI)
            except ValueError:
                try:
                    paid_at = parse_time(paid_at)
                except FieldError:
                    problems.append((columns["paid_at"], time_reason(paid_at)))
                    paid_at = INVALID
        else:
            paid_at = None
    if paid_at is None and status in PAID_STATUSES:
        problems.append(
            (
                columns["paid_at"],
                Reason(
                    "付款时间为空：{name}（{status}）的订单必须有付款时间",
                    name=Reason(STATUS_NAMES[status]),
                    status=status,
                ),
            )
        )
    if phone and type(phone) is str:
        try:
            phone = parse_phone(phone)
        except FieldError as error:
            problems.append((columns["buyer_phone"], error.args[0]))
            phone = INVALID
    if not (phone or unionid or buyer_id):
        problems.append(
            (columns["buyer_phone"], Reason("缺少买家：手机号、UnionID、买家账号至少要有一项"))
        )
    if not sku:
        problems.append((columns["sku"], Reason("商品编码（sku）为空")))
    # Quantities and amounts are looked up in the caches first: a file has few
    # distinct ones (a call to the parser cost 0.2 µs more each).
    if type(quantity) is str:
        known = _QUANTITIES.get(quantity)
        if known is not None:
            quantity = known
        else:
            try:
                quantity = parse_quantity(quantity)
            except FieldError as error:
                problems.append((columns["quantity"], error.args[0]))
                quantity = INVALID
    if type(unit_price) is str:
        known = money_cache_get(unit_price)
        if known is not None:
            unit_price = known
        else:
            try:
                unit_price = parse_money(unit_price, Reason("单价"))
            except FieldError as error:
                problems.append((columns["unit_price"], error.args[0]))
                unit_price = INVALID
    if type(line_amount) is str:
        known = money_cache_get(line_amount)
        if known is not None:
            line_amount = known
        else:
            try:
                line_amount = parse_money(line_amount, Reason("实付金额"))
            except FieldError as error:
                problems.append((columns["line_amount"], error.args[0]))
                line_amount = INVALID
    if type(refund_amount) is str:
        known = money_cache_get(refund_amount)
        if known is not None:
            refund_amount = known
        elif refund_amount:
            try:
                refund_amount = parse_money(refund_amount, Reason("退款金额"))
            except FieldError as error:
                problems.append((columns["refund_amount"], error.args[0]))
                refund_amount = INVALID
        else:
            refund_amount = ZERO
        # A line refunded without an amount (or 0) was refunded in full, as a channel
        # closes a paid order only once it has refunded it (`channels.order_status`);
        # one refunded less than its amount was refunded in part, as a channel's is
        # (left `refunded`, the part kept would have left net sales).
        if status == "refunded" and type(line_amount) is Decimal:
            if not refund_amount:
                refund_amount = line_amount
            elif type(refund_amount) is Decimal and refund_amount < line_amount:
                status = "partially_refunded"
    if (
        type(refund_amount) is Decimal
        and type(line_amount) is Decimal
        and refund_amount > line_amount
    ):
        problems.append(
            (
                columns["refund_amount"],
                Reason(
                    "退款金额 {refund} 大于实付金额 {paid}", refund=refund_amount, paid=line_amount
                ),
            )
        )
    if order_id and sku and type(sku) is str:
        earlier = duplicates.earlier_row((channel, order_id), sku, row)
        if earlier is not None:
            problems.append(
                (
                    columns["sku"],
                    Reason(
                        "与第 {row} 行重复：订单 {order} 的商品 {sku} 在同一文件中出现两次",
                        row=earlier,
                        order=order_id,
                        sku=sku,
                    ),
                )
            )
    if problems:
        known = channel if channel in _ORDER_CHANNEL_SET else ""
        return [
            RowError(source, row, column, reason, order_id, known) for column, reason in problems
        ]
    return _line(
        row,
        source,
        channel,
        order_id,
        parent_order_id,
        status,
        paid_at,
        phone,
        unionid,
        buyer_id,
        buyer_name,
        sku,
        product_name,
        category,
        material,
        style,
        quantity,
        unit_price,
        line_amount,
        refund_amount,
        store_code,
        guide_userid,
        guessed,
    )
