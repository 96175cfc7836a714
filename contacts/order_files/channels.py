"""Each export's rows mapped onto generic order lines (`lines.build_line` checks them).

The generic format maps one to one. The channels need more:

- Tmall: the order report (buyer, status, payment time, paid and refunded
  amounts) is held by order number; the item report (one row per line) is
  streamed and joined to it. An order's paid amount (less postage) and its
  refund are spread over its lines (`allocate`, `refund_shares`). Rows of one
  product (商家编码) in other sizes or colours are one line (`_tmall_variants`).
- JD: one row per line; 应付金额 is the line's amount, unless each row of an order
  repeats the order's (`_jd_order_amounts`): then it is spread over its lines.
- Douyin: one row per sub-order (子订单编号 is the order id, 主订单编号 the
  checkout it was split from); refunds in 售后状态.
- Youzan: one row per line; 订单实付金额 is the order's, spread over its lines.

Status words and their meaning are in `words`. Rows of one order must be
consecutive in the Tmall item report and in Youzan exports (both channels
write them so); an order met again further down is reported.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from operator import itemgetter
from pathlib import Path

from contacts.order_files.lines import (
    BUYER_COLUMNS,
    CENT,
    GENERIC_COLUMNS,
    GENERIC_NAMES,
    GENERIC_REQUIRED,
    INVALID,
    ZERO,
    DuplicateIndex,
    FieldError,
    OrderLine,
    RowError,
    build_line,
    parse_money,
    parse_phone,
    parse_quantity,
    parse_time,
    time_reason,
)
from contacts.order_files.sources import Table
from contacts.order_files.words import (
    AFTER_SALE_WORDS,
    CLOSED,
    FULL_REFUND,
    ORDER_STATUS_WORDS,
    PAID,
    PARTIAL_REFUND,
    REFUNDED,
    UNPAID,
    normalise_word,
    product_attributes,
)
from scrm.reasons import Reason

OVERFLOW_REASON = Reason("这一行的格子比表头多：可能有没加引号的逗号，整行无法对齐到列")


@dataclass(frozen=True)
class Format:
    """An export's shape: recognised by any of its signatures (columns the header
    contains), readable when it has all `required` columns and one of each `one_of`."""

    kind: str
    channel: str  # the --channel choice it belongs to
    title: Reason  # for messages
    signatures: tuple[frozenset[str], ...]
    required: tuple[str, ...]
    one_of: tuple[tuple[str, ...], ...] = ()

    def missing(self, header: list[str]) -> list[str]:
        columns = set(header)
        missing = [name for name in self.required if name not in columns]
        missing += ["／".join(names) for names in self.one_of if columns.isdisjoint(names)]
        return missing


# In the order they are tried.
FORMATS = [
    Format(
        "generic",
        "generic",
        Reason("通用格式"),
        (frozenset({"order_id"}),),
        tuple(GENERIC_REQUIRED),
        (tuple(BUYER_COLUMNS),),
    ),
    Format(
        "tmall_orders",
        "tmall",
        Reason("天猫订单报表"),
        (frozenset({"订单编号", "买家会员名"}),),
        ("订单编号", "买家会员名", "买家实际支付金额", "订单状态", "订单付款时间"),
    ),
    Format(
        "tmall_items",
        "tmall",
        Reason("天猫宝贝报表"),
        (frozenset({"订单编号", "标题", "购买数量"}),),
        ("订单编号", "标题", "价格", "购买数量", "商家编码"),
    ),
    Format(
        "jd",
        "jd",
        Reason("京东订单导出"),
        (frozenset({"订单号", "京东价"}),),
        (
            "订单号",
            "商品名称",
            "订购数量",
            "京东价",
            "应付金额",
            "订单状态",
            "付款确认时间",
            "商家SKUID",
        ),
    ),
    Format(
        "douyin",
        "douyin",
        Reason("抖店订单导出"),
        (frozenset({"主订单编号", "子订单编号"}),),
        (
            "子订单编号",
            "选购商品",
            "商品数量",
            "商家编码",
            "订单应付金额",
            "订单状态",
            "支付完成时间",
        ),
        (("商品单价", "商品金额"),),
    ),
    Format(
        "youzan",
        "youzan",
        Reason("有赞订单导出"),
        (frozenset({"订单号", "粉丝昵称"}), frozenset({"订单号", "订单实付金额"})),
        ("订单号", "订单状态", "付款时间", "商品名称", "单价", "数量", "商品编码"),
        (("订单实付金额", "商品实付金额", "商品实际成交金额"),),
    ),
]


def format_of(header: list[str]) -> Format | None:
    columns = set(header)
    for candidate in FORMATS:
        if any(signature <= columns for signature in candidate.signatures):
            return candidate
    return None


# -- money spread over lines ---------------------------------------------------------


def allocate(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`total` split over lines in proportion to `weights`, in whole cents that add up
    to it exactly (largest remainder first, earlier lines first among equals). No share
    exceeds its weight when the total does not exceed their sum."""
    cents = int(total * 100)
    parts = [int(weight * 100) for weight in weights]
    whole = sum(parts)
    if whole == 0:
        parts, whole = [1] * len(parts), len(parts)
    shares = [cents * part // whole for part in parts]
    by_remainder = sorted(range(len(parts)), key=lambda i: -(cents * parts[i] % whole))
    for i in by_remainder[: cents - sum(shares)]:
        shares[i] += 1
    return [(Decimal(share) / 100).quantize(CENT) for share in shares]


def refund_shares(refund: Decimal, amounts: list[Decimal]) -> list[Decimal]:
    """An order's refund over its lines: all of each line when it is the whole amount;
    else the one line whose amount it equals (one item sent back); else in proportion."""
    if not refund:
        return [ZERO] * len(amounts)
    if refund >= sum(amounts):
        return list(amounts)
    for index, amount in enumerate(amounts):
        if amount == refund:
            return [refund if i == index else ZERO for i in range(len(amounts))]
    return allocate(refund, amounts)


def order_status(state: str, *, paid: bool, refund: Decimal, amount: Decimal):
    """(status, refund) from what the status word says, whether it was paid and the refund.

    A platform closes a paid order only once it has refunded it, so a closed paid
    order with no refund amount was refunded in full.
    """
    if state == CLOSED and not paid:
        return "cancelled", ZERO
    if state in (CLOSED, REFUNDED) and not refund:
        return "refunded", amount
    if not refund:
        return "paid", ZERO
    return ("partially_refunded" if refund < amount else "refunded"), refund


def _state(channel: str, word: str, column: str, problems: list) -> str | None:
    """The status word's meaning, or None with the problem noted."""
    words = ORDER_STATUS_WORDS[channel]
    state = words.get(normalise_word(word))
    if state is None:
        known = [w for w, s in words.items() if s != UNPAID]
        reason = Reason(
            "订单状态无法识别：{text}（应为 {choices} 之一）",
            text=word or Reason("（空）"),
            choices=known,
        )
        problems.append((column, reason))
    elif state == UNPAID:
        reason = Reason("订单状态为「{word}」：还没付款的订单不导入，付款后再导入", word=word)
        problems.append((column, reason))
        return None
    return state


def _money(text: str, column: str, problems: list, *, empty_is_zero: bool = False):
    if empty_is_zero and not text:
        return ZERO
    try:
        return parse_money(text, column)
    except FieldError as error:
        problems.append((column, error.args[0]))
        return INVALID


def _quantity(text: str, column: str, problems: list):
    try:
        return parse_quantity(text)
    except FieldError as error:
        problems.append((column, error.args[0]))
        return INVALID


def _emit(result: OrderLine | list[RowError]) -> Iterator[OrderLine | RowError]:
    if type(result) is OrderLine:
        yield result
    else:
        yield from result


# -- generic ---------------------------------------------------------------------------


def read_generic(table: Table) -> Iterator[OrderLine | RowError]:
    """The platform's own format: fields as given (attributes are not inferred: a file
    that leaves them empty gets them from the product catalogue)."""
    width = table.width
    positions = [table.index.get(name, width) for name in GENERIC_COLUMNS]
    pad = width in positions  # a missing optional column reads as one empty cell past the end
    pick = itemgetter(*positions)
    duplicates = DuplicateIndex()
    source = table.name
    for number, cells, overflow in table.rows():
        if pad:
            cells.append("")
        problems = [("", OVERFLOW_REASON)] if overflow else None
        result = build_line(source, number, pick(cells), GENERIC_NAMES, duplicates, problems)
        if type(result) is OrderLine:
            yield result
        else:
            yield from result


# -- JD ----------------------------------------------------------------------------------

JD_COLUMNS = GENERIC_NAMES | {
    "order_id": "订单号",
    "status": "订单状态",
    "paid_at": "付款确认时间",
    "buyer_phone": "联系电话",
    "buyer_id": "下单帐号",
    "sku": "商家SKUID",
    "quantity": "订购数量",
    "unit_price": "京东价",
    "line_amount": "应付金额",
    "refund_amount": "退款金额",
}


def read_jd(table: Table) -> Iterator[OrderLine | RowError]:
    duplicates = DuplicateIndex()
    for _, group, _ in _consecutive(table, "订单号", set()):
        problems = [[("", OVERFLOW_REASON)] if overflow else [] for _, _, overflow in group]
        amounts = [
            _money(row["应付金额"], "应付金额", p)
            for (_, row, _), p in zip(group, problems, strict=True)
        ]
        refunds = [
            _money(row.get("退款金额", ""), "退款金额", p, empty_is_zero=True)
            for (_, row, _), p in zip(group, problems, strict=True)
        ]
        amounts, refunds = _jd_order_amounts(group, amounts, refunds)
        for (number, row, _), amount, refund, row_problems in zip(
            group, amounts, refunds, problems, strict=True
        ):
            state = _state("jd", row["订单状态"], "订单状态", row_problems)
            status = INVALID
            if state is not None and amount is not INVALID and refund is not INVALID:
                status, refund = order_status(
                    state, paid=bool(row["付款确认时间"]), refund=refund, amount=amount
                )
            name = row["商品名称"]
            values = (
                row["订单号"],
                "jd",
                "",
                status,
                row["付款确认时间"],
                row.get("联系电话", ""),
                "",
                row.get("下单帐号", ""),
                row.get("客户姓名", ""),
                row["商家SKUID"],
                name,
                *product_attributes(name),
                row["订购数量"],
                row["京东价"],
                amount,
                refund,
                "",
                "",
            )
            yield from _emit(
                build_line(
                    table.name, number, values, JD_COLUMNS, duplicates, row_problems, guessed=True
                )
            )


def _jd_order_amounts(group, amounts: list, refunds: list) -> tuple[list, list]:
    """The lines' amounts and refunds of one JD order's rows. 应付金额 is a line's own,
    except where JD repeats the order's on each of its rows: all rows say the same and
    it is more than a row's 京东价 × 订购数量 (a line pays at most that). Then it is
    spread over the lines by those, as is a refund the rows repeat likewise."""
    if len(group) < 2 or INVALID in amounts or len(set(amounts)) > 1:
        return amounts, refunds
    unchecked: list = []  # the rows' own problems are found when each line is built
    prices = [_money(row["京东价"], "京东价", unchecked) for _, row, _ in group]
    quantities = [_quantity(row["订购数量"], "订购数量", unchecked) for _, row, _ in group]
    if unchecked:
        return amounts, refunds
    gross = [price * quantity for price, quantity in zip(prices, quantities, strict=True)]
    if not any(amounts[0] > line for line in gross):
        return amounts, refunds
    amounts = allocate(amounts[0], gross)
    if INVALID not in refunds and len(set(refunds)) == 1:
        refunds = refund_shares(refunds[0], amounts)
    return amounts, refunds


# -- Douyin ------------------------------------------------------------------------------

DOUYIN_COLUMNS = GENERIC_NAMES | {
    "order_id": "子订单编号",
    "parent_order_id": "主订单编号",
    "status": "订单状态",
    "paid_at": "支付完成时间",
    "buyer_phone": "收件人手机号",
    "sku": "商家编码",
    "quantity": "商品数量",
    "unit_price": "商品单价",
    "line_amount": "订单应付金额",
    "refund_amount": "售后状态",
}


def _after_sale(channel: str, word: str, column: str, problems: list) -> str | None:
    words = AFTER_SALE_WORDS[channel]
    meaning = words.get(normalise_word(word))
    if meaning is None:
        known = [w for w in words if w]
        reason = Reason(
            "{column}无法识别：{text}（应为 {choices} 之一）",
            column=column,
            text=word,
            choices=known,
        )
        problems.append((column, reason))
    return meaning


def _refund(
    after_sale: str | None, given, amount, column: str, problems: list
) -> tuple[object, object]:
    """(refund, whether the after-sale says refunded) for one line, from its after-sale word
    and the refund amount column when the export has one (`given` is None when not)."""
    if after_sale is None or amount is INVALID or given is INVALID:
        return INVALID, False
    if after_sale == FULL_REFUND:
        return (given or amount), True
    if after_sale == PARTIAL_REFUND and given is None:
        reason = Reason(
            "{column}为部分退款，但文件里没有退款金额列，无法知道退了多少", column=column
        )
        problems.append((column, reason))
        return INVALID, False
    return (given or ZERO), False


def read_douyin(table: Table) -> Iterator[OrderLine | RowError]:
    duplicates = DuplicateIndex()
    has_refund_column = "退款金额" in table.index
    unit_column = "商品单价" if "商品单价" in table.index else "商品金额"
    columns = DOUYIN_COLUMNS | {"unit_price": unit_column}
    for number, cells, overflow in table.rows():
        row = dict(zip(table.header, cells, strict=True))
        problems: list[tuple[str, str]] = [("", OVERFLOW_REASON)] if overflow else []
        state = _state("douyin", row["订单状态"], "订单状态", problems)
        after_sale = _after_sale("douyin", row.get("售后状态", ""), "售后状态", problems)
        amount = _money(row["订单应付金额"], "订单应付金额", problems)
        quantity = _quantity(row["商品数量"], "商品数量", problems)
        unit_price = _money(row[unit_column], unit_column, problems)
        if unit_column == "商品金额" and unit_price is not INVALID and quantity is not INVALID:
            # 商品金额 is the line's goods value: price × quantity
            unit_price = (unit_price / quantity).quantize(CENT, rounding=ROUND_HALF_UP)
        given = None
        if has_refund_column:
            given = _money(row["退款金额"], "退款金额", problems, empty_is_zero=True)
        refund, refunded = _refund(after_sale, given, amount, "售后状态", problems)
        status = INVALID
        if state is not None and refund is not INVALID:
            status, refund = order_status(
                REFUNDED if refunded and state == PAID else state,
                paid=bool(row["支付完成时间"]),
                refund=refund,
                amount=amount,
            )
        order_id, parent = row["子订单编号"], row.get("主订单编号", "")
        name = row["选购商品"]
        values = (
            order_id,
            "douyin",
            "" if parent == order_id else parent,
            status,
            row["支付完成时间"],
            row.get("收件人手机号", ""),
            "",
            "",
            row.get("收件人", ""),
            row["商家编码"],
            name,
            *product_attributes(name),
            quantity,
            unit_price,
            amount,
            refund,
            "",
            "",
        )
        yield from _emit(
            build_line(table.name, number, values, columns, duplicates, problems, guessed=True)
        )


# -- Youzan ------------------------------------------------------------------------------

YOUZAN_COLUMNS = GENERIC_NAMES | {
    "order_id": "订单号",
    "status": "订单状态",
    "paid_at": "付款时间",
    "buyer_phone": "买家手机号",
    "sku": "商品编码",
    "quantity": "数量",
    "unit_price": "单价",
    "line_amount": "订单实付金额",
    "refund_amount": "退款状态",
}


def _consecutive(
    table: Table, column: str, finished: set[str]
) -> Iterator[tuple[str, list[tuple[int, dict, bool]], bool]]:
    """The rows of each order as they come, grouped while the order number stays the
    same: (order id, rows, met before)."""
    group: list[tuple[int, dict, bool]] = []
    current = ""
    for number, cells, overflow in table.rows():
        row = dict(zip(table.header, cells, strict=True))
        if group and row[column] != current:
            yield current, group, current in finished
            finished.add(current)
            group = []
        current = row[column]
        group.append((number, row, overflow))
    if group:
        yield current, group, current in finished
        finished.add(current)


def _scattered(source: str, channel: str, order_id: str, group, column: str) -> Iterator[RowError]:
    for number, _, _ in group:
        yield RowError(
            source,
            number,
            column,
            Reason(
                "订单 {order} 的行不连续（前面已出现过）：请按订单号排序后重新导出", order=order_id
            ),
            order_id,
            channel,
        )


def read_youzan(table: Table) -> Iterator[OrderLine | RowError]:
    duplicates = DuplicateIndex()
    line_column = next(
        (name for name in ("商品实付金额", "商品实际成交金额") if name in table.index), None
    )
    columns = YOUZAN_COLUMNS | ({"line_amount": line_column} if line_column else {})
    has_refund_column = "退款金额" in table.index
    finished: set[str] = set()
    for order_id, group, scattered in _consecutive(table, "订单号", finished):
        if scattered and order_id:
            yield from _scattered(table.name, "youzan", order_id, group, "订单号")
            continue
        problems = [[("", OVERFLOW_REASON)] if overflow else [] for _, _, overflow in group]
        quantities = [
            _quantity(r["数量"], "数量", p) for (_, r, _), p in zip(group, problems, strict=True)
        ]
        prices = [
            _money(r["单价"], "单价", p) for (_, r, _), p in zip(group, problems, strict=True)
        ]
        if line_column:
            amounts = [
                _money(r[line_column], line_column, p)
                for (_, r, _), p in zip(group, problems, strict=True)
            ]
        else:
            # 订单实付金额 is the order's: spread over its lines by price × quantity.
            paid = _money(group[0][1]["订单实付金额"], "订单实付金额", problems[0])
            weights = [
                q * p if q is not INVALID and p is not INVALID else INVALID
                for q, p in zip(quantities, prices, strict=True)
            ]
            if paid is INVALID or INVALID in weights:
                amounts = [INVALID] * len(group)
            elif len(group) == 1:
                amounts = [paid]
            else:
                amounts = allocate(paid, weights)
        at_fault = [number for (number, _, _), p in zip(group, problems, strict=True) if p]
        for (number, row, _), quantity, price, amount, row_problems in zip(
            group, quantities, prices, amounts, problems, strict=True
        ):
            if amount is INVALID and not row_problems:  # its share is not known: another
                # row of the order is wrong (the order's amount, a price, a quantity)
                reason = Reason(
                    "订单 {order} 的{rows}有错误，整单未导入",
                    order=order_id,
                    rows=Reason("第 {rows} 行", rows=at_fault),
                )
                yield RowError(table.name, number, "订单号", reason, order_id, "youzan", True)
                continue
            state = _state("youzan", row["订单状态"], "订单状态", row_problems)
            after_sale = _after_sale("youzan", row.get("退款状态", ""), "退款状态", row_problems)
            given = None
            if has_refund_column:
                given = _money(row["退款金额"], "退款金额", row_problems, empty_is_zero=True)
            refund, refunded = _refund(after_sale, given, amount, "退款状态", row_problems)
            status = INVALID
            if state is not None and refund is not INVALID:
                status, refund = order_status(
                    REFUNDED if refunded and state == PAID else state,
                    paid=bool(row["付款时间"]),
                    refund=refund,
                    amount=amount,
                )
            name = row["商品名称"]
            values = (
                order_id,
                "youzan",
                "",
                status,
                row["付款时间"],
                row.get("买家手机号", ""),
                "",
                "",
                row.get("粉丝昵称", "") or row.get("收货人姓名", ""),
                row["商品编码"],
                name,
                *product_attributes(name),
                quantity,
                price,
                amount,
                refund,
                "",
                "",
            )
            yield from _emit(
                build_line(
                    table.name, number, values, columns, duplicates, row_problems, guessed=True
                )
            )


# -- Tmall -------------------------------------------------------------------------------

TMALL_COLUMNS = GENERIC_NAMES | {
    "order_id": "订单编号",
    "status": "订单状态",
    "paid_at": "订单付款时间",
    "buyer_phone": "联系手机",
    "buyer_id": "买家会员名",
    "sku": "商家编码",
    "quantity": "购买数量",
    "unit_price": "价格",
    "line_amount": "价格",
    "refund_amount": "退款金额",
}


@dataclass(slots=True)
class TmallOrder:
    """What the order report says of one order; its lines come from the item report."""

    source: str
    row: int
    order_id: str
    is_valid: bool
    state: str | None = None
    paid_at: datetime | None = None
    phone: str = ""
    buyer_id: str = ""
    buyer_name: str = ""
    paid: Decimal = ZERO  # 买家实际支付金额, postage included
    postage: Decimal = ZERO
    refund: Decimal = ZERO
    has_items: bool = False
    row_rejected: bool = False  # its row went with its rejected item rows (`_order_row`)


def _tmall_order(source: str, number: int, row: dict, problems: list) -> TmallOrder:
    order = TmallOrder(source, number, row["订单编号"], is_valid=False)
    order.state = _state("tmall", row["订单状态"], "订单状态", problems)
    paid_text = row["订单付款时间"]
    if paid_text:
        try:
            order.paid_at = parse_time(paid_text)
        except FieldError:
            problems.append(("订单付款时间", time_reason(paid_text)))
    elif order.state in (PAID, REFUNDED):
        problems.append(
            (
                "订单付款时间",
                Reason(
                    "付款时间为空：订单状态为「{word}」的订单必须有付款时间", word=row["订单状态"]
                ),
            )
        )
    if row.get("联系手机"):
        try:
            order.phone = parse_phone(row["联系手机"])
        except FieldError as error:
            problems.append(("联系手机", error.args[0]))
    order.buyer_id, order.buyer_name = row["买家会员名"], row.get("收货人姓名", "")
    if not (row.get("联系手机") or order.buyer_id):
        problems.append(("买家会员名", Reason("缺少买家：手机号、UnionID、买家账号至少要有一项")))
    paid = _money(row["买家实际支付金额"], "买家实际支付金额", problems)
    postage = _money(row.get("买家应付邮费", ""), "买家应付邮费", problems, empty_is_zero=True)
    refund = _money(row.get("退款金额", ""), "退款金额", problems, empty_is_zero=True)
    if INVALID not in (paid, postage, refund):
        if postage > paid:
            reason = Reason(
                "邮费 {postage} 大于买家实际支付金额 {paid}", postage=postage, paid=paid
            )
            problems.append(("买家应付邮费", reason))
        if refund > paid:
            reason = Reason(
                "退款金额 {refund} 大于买家实际支付金额 {paid}", refund=refund, paid=paid
            )
            problems.append(("退款金额", reason))
        order.paid, order.postage, order.refund = paid, postage, refund
    order.is_valid = not problems
    return order


def _tmall_orders(tables: list[Table], orders: dict[str, TmallOrder]) -> Iterator[RowError]:
    """Fills `orders` from the order reports; yields the problems of their rows."""
    for table in tables:
        for number, cells, overflow in table.rows():
            row = dict(zip(table.header, cells, strict=True))
            problems: list[tuple[str, str]] = [("", OVERFLOW_REASON)] if overflow else []
            order_id = row["订单编号"]
            if not order_id:
                yield RowError(table.name, number, "订单编号", Reason("订单号为空"), "", "tmall")
                continue
            order = _tmall_order(table.name, number, row, problems)
            earlier = orders.get(order_id)
            if earlier is not None:
                earlier.is_valid = False
                problems.append(
                    (
                        "订单编号",
                        Reason(
                            "与第 {row} 行重复：订单 {order} 在订单报表中出现两次",
                            row=earlier.row,
                            order=order_id,
                        ),
                    )
                )
            else:
                orders[order_id] = order
            for column, reason in problems:
                yield RowError(table.name, number, column, reason, order_id, "tmall")


def read_tmall(order_paths: list[Path], item_paths: list[Path]) -> Iterator[OrderLine | RowError]:
    """The item reports joined to the order reports by order number."""
    orders: dict[str, TmallOrder] = {}
    for path in order_paths:
        with Table(path) as table:
            yield from _tmall_orders([table], orders)
    finished: set[str] = set()
    for path in item_paths:
        with Table(path) as table:
            duplicates = DuplicateIndex()
            for order_id, group, scattered in _consecutive(table, "订单编号", finished):
                yield from _tmall_lines(
                    table.name, order_id, group, scattered, orders.get(order_id), duplicates
                )
    for order in orders.values():
        if order.is_valid and not order.has_items:
            yield RowError(
                order.source,
                order.row,
                "订单编号",
                Reason(
                    "订单 {order} 在宝贝报表中没有宝贝行（两份报表应来自同一次导出）",
                    order=order.order_id,
                ),
                order.order_id,
                "tmall",
            )


def _tmall_lines(
    source: str,
    order_id: str,
    group: list[tuple[int, dict, bool]],
    scattered: bool,
    order: TmallOrder | None,
    duplicates: DuplicateIndex,
) -> Iterator[OrderLine | RowError]:
    """The lines of one order: its share of the paid amount and of the refund each."""

    def every_row(reason: Reason, follows: bool = False) -> Iterator[RowError]:
        for number, _, _ in group:
            yield RowError(source, number, "订单编号", reason, order_id, "tmall", follows)

    if not order_id:
        yield from every_row(Reason("订单号为空"))
        return
    if scattered:
        yield from _scattered(source, "tmall", order_id, group, "订单编号")
        if order is not None:
            yield from _order_row(order, source, [number for number, _, _ in group])
        return
    if order is None:
        yield from every_row(
            Reason("订单 {order} 在订单报表中找不到（两份报表应来自同一次导出）", order=order_id)
        )
        return
    order.has_items = True
    if not order.is_valid:
        yield from every_row(
            Reason(
                "订单报表第 {row} 行（订单 {order}）有错误，整单未导入",
                row=order.row,
                order=order_id,
            ),
            follows=True,
        )
        return
    problems = [[("", OVERFLOW_REASON)] if overflow else [] for _, _, overflow in group]
    quantities = [
        _quantity(r["购买数量"], "购买数量", p)
        for (_, r, _), p in zip(group, problems, strict=True)
    ]
    prices = [_money(r["价格"], "价格", p) for (_, r, _), p in zip(group, problems, strict=True)]
    group, quantities, prices, problems, merged = _tmall_variants(
        group, quantities, prices, problems
    )
    valid = [i for i in range(len(group)) if INVALID not in (quantities[i], prices[i])]
    gross = [quantities[i] * prices[i] for i in valid]
    goods_paid = order.paid - order.postage
    # Without discounts the lines add up to what was paid; with them, the payment is
    # spread over the lines by their value.
    paid_shares = gross if goods_paid == sum(gross) or not gross else allocate(goods_paid, gross)
    total = sum(paid_shares, ZERO)
    # A refund above the lines' total gave the postage back too.
    status, refund = order_status(
        order.state, paid=order.paid_at is not None, refund=min(order.refund, total), amount=total
    )
    amounts: list = [INVALID] * len(group)
    refunds: list = [INVALID] * len(group)
    for i, amount, share in zip(
        valid, paid_shares, refund_shares(refund, paid_shares), strict=True
    ):
        amounts[i], refunds[i] = amount, share
    at_fault = []
    for (number, row, _), quantity, price, amount, share, row_problems in zip(
        group, quantities, prices, amounts, refunds, problems, strict=True
    ):
        name = row["标题"]
        values = (
            order_id,
            "tmall",
            "",
            status,
            order.paid_at,
            order.phone,
            "",
            order.buyer_id,
            order.buyer_name,
            row["商家编码"],
            name,
            *product_attributes(name),
            quantity,
            price,
            amount,
            share,
            "",
            "",
        )
        result = build_line(
            source, number, values, TMALL_COLUMNS, duplicates, row_problems, guessed=True
        )
        if type(result) is OrderLine:
            yield result
        else:
            at_fault.append(number)
            yield from result
            for other in merged.get(number, []):  # its other sizes went into this line
                at_fault.append(other)
                reason = Reason(
                    "与第 {row} 行是同一商品 {sku} 的另一款式，合为一行，一起未导入",
                    row=number,
                    sku=row["商家编码"],
                )
                yield RowError(source, other, "商家编码", reason, order_id, "tmall", True)
    if at_fault:
        yield from _order_row(order, source, sorted(at_fault))


def _tmall_variants(group, quantities, prices, problems):
    """An order's rows of one product (商家编码) in other sizes or colours (商品属性)
    made one line, their quantities and values added up: 商家编码 names the product,
    not its size, and a line is one product of an order. Rows alike in both are left
    apart (a row repeated: `build_line` reports it). Returns the rows, quantities,
    prices and problems of the lines, and the rows merged into each line's first."""
    kept: dict[str, int] = {}  # 商家编码 → its line
    variants: dict[int, set[str]] = {}  # line → the 商品属性 it has
    merged: dict[int, list[int]] = {}
    rows, counts, values, notes = [], [], [], []
    for (number, row, overflow), quantity, price, note in zip(
        group, quantities, prices, problems, strict=True
    ):
        sku, variant = row["商家编码"], row.get("商品属性", "")
        line = kept.get(sku)
        readable = INVALID not in (quantity, price) and not note
        if (
            line is not None
            and readable
            and variant not in variants[line]
            and INVALID not in (counts[line], values[line])
            and not notes[line]
        ):
            counts[line] += quantity
            values[line] += quantity * price
            variants[line].add(variant)
            merged.setdefault(rows[line][0], []).append(number)
            continue
        if line is None and sku:
            kept[sku] = len(rows)
            variants[len(rows)] = {variant}
        rows.append((number, row, overflow))
        counts.append(quantity)
        values.append(quantity * price if INVALID not in (quantity, price) else INVALID)
        notes.append(note)
    # a line's price: the one its rows share, or what its quantity cost on average
    unit = [
        INVALID
        if INVALID in (value, count)
        else (value / count).quantize(CENT, rounding=ROUND_HALF_UP)
        for value, count in zip(values, counts, strict=True)
    ]
    return rows, counts, unit, notes, merged


def _order_row(order: TmallOrder, source: str, at_fault: list[int]) -> Iterator[RowError]:
    """The order's row in the order report goes with its rejected item rows (once), so
    that the rejected rows of both reports, corrected, import again together."""
    if order.row_rejected or not order.is_valid:  # an invalid row is reported already
        return
    order.row_rejected = True
    yield RowError(
        order.source,
        order.row,
        "订单编号",
        Reason(
            "订单 {order} 在宝贝报表 {file} 第 {rows} 行有错误，整单未导入",
            order=order.order_id,
            file=source,
            rows=at_fault,
        ),
        order.order_id,
        "tmall",
        follows=True,
    )


# Where each export's order numbers are (both of Tmall's reports: 订单编号).
ORDER_NUMBER_COLUMNS = {
    "generic": GENERIC_NAMES["order_id"],
    "tmall": TMALL_COLUMNS["order_id"],
    "jd": JD_COLUMNS["order_id"],
    "douyin": DOUYIN_COLUMNS["order_id"],
    "youzan": YOUZAN_COLUMNS["order_id"],
}
READERS = {"generic": read_generic, "jd": read_jd, "douyin": read_douyin, "youzan": read_youzan}
