"""Tag rules as data: a JSON condition tree, validated, and compiled to one SQL predicate.

A condition is a group or a leaf:

    {"all": [cond, ...]}   every one holds        {"any": [cond, ...]}   at least one
    {"not": cond}          the opposite
    {"fact": NAME, "op": OP, "value": V, ...}     a test of one customer fact

Facts (`FACTS` below, with their labels for the editor) come from
`contacts.CustomerFacts`, `CustomerPurchaseDay` (windowed counts) and
`CustomerAttributeShare` (shares by category, material, style). Number and date
facts take `=`, `!=`, `>`, `>=`, `<`, `<=` or `between` ([low, high], both
included); `purchase_days` and `net_revenue` take an optional `days` window
(the last N days up to and including today, Asia/Shanghai). Share facts take a
`key` (the value, e.g. 冰丝) and `by` (`lines` or `revenue`). Sets (`channel`,
`guide`, `store`) take `any_of`, `all_of` or `none_of` a list; `is_member` takes
`is` true / false; `tag` takes `has` / `lacks` a tag id.

A fact a customer lacks (no purchase yet: no average order value, no last
purchase) makes a comparison false, and `not` is the plain opposite of its
child: every leaf compiles to `coalesce(test, false)`.

The compiled predicate reads the facts row as `f` and today's date from a
parameter, so one statement evaluates a rule over every customer at once.
"""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

NUMBER_OPS = {"=": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
SET_OPS = ("any_of", "all_of", "none_of")
MAX_DEPTH = 8
MAX_LEAVES = 50
MAX_WINDOW_DAYS = 3650


class RuleError(ValueError):
    """A condition that cannot be evaluated, with the reason an operator can act on."""


@dataclass(frozen=True)
class Fact:
    label: str
    kind: str  # number | date | share | set | bool | tag
    sql: str = ""  # the column or expression (number, date, bool facts)
    windowed: bool = False


FACTS: dict[str, Fact] = {
    "purchase_days": Fact("购买天数", "number", "f.purchase_days", windowed=True),
    "net_revenue": Fact("净销售额（元）", "number", "f.net_revenue", windowed=True),
    "avg_order_value": Fact("客单价（元）", "number", "f.avg_order_value"),
    "days_since_last_purchase": Fact(
        "距最近购买天数", "number", "(%(today)s::date - f.last_purchase_on)"
    ),
    "first_purchase_on": Fact("首次购买日期", "date", "f.first_purchase_on"),
    "median_interval_days": Fact("购买间隔中位数（天）", "number", "f.median_interval_days"),
    "category_share": Fact("品类占比", "share"),
    "material_share": Fact("材质占比", "share"),
    "style_share": Fact("款式占比", "share"),
    "channel": Fact("购买渠道", "set"),
    "is_member": Fact("私域会员", "bool", "f.is_member"),
    "guide": Fact("跟进导购", "set"),
    "store": Fact("门店", "set"),
    "joined_on": Fact("入会日期", "date", "(f.joined_at AT TIME ZONE 'Asia/Shanghai')::date"),
    "tag": Fact("标签", "tag"),
}

_WINDOWED_SQL = {
    "purchase_days": (
        "(SELECT count(*) FROM contacts_customerpurchaseday d"
        " WHERE d.customer_id = f.customer_id AND d.day > %(today)s::date - {days}"
        " AND d.day <= %(today)s::date)"
    ),
    "net_revenue": (
        "coalesce((SELECT sum(d.net_revenue) FROM contacts_customerpurchaseday d"
        " WHERE d.customer_id = f.customer_id AND d.day > %(today)s::date - {days}"
        " AND d.day <= %(today)s::date), 0)"
    ),
}


@dataclass
class Compiled:
    """A predicate over the facts row `f`, with named parameters (`today` is added by
    the caller), and the tags it reads (for evaluation order)."""

    sql: str
    params: dict = field(default_factory=dict)
    tag_ids: set[int] = field(default_factory=set)


class _Compiler:
    def __init__(self, resolve) -> None:
        self.resolve = resolve  # (kind, values) -> ids; raises RuleError for unknown ones
        self.params: dict = {}
        self.tag_ids: set[int] = set()
        self.leaves = 0

    def param(self, value) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def node(self, condition, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise RuleError(f"条件嵌套太深（最多 {MAX_DEPTH} 层）")
        if not isinstance(condition, dict):
            raise RuleError("每个条件都应是一个对象（{…}）")
        groups = [key for key in ("all", "any", "not") if key in condition]
        if groups:
            if len(condition) != 1:
                raise RuleError("组合条件只能有 all、any 或 not 中的一个键")
            key = groups[0]
            if key == "not":
                return f"NOT ({self.node(condition['not'], depth + 1)})"
            children = condition[key]
            if not isinstance(children, list) or not children:
                raise RuleError(f"「{key}」需要至少一个子条件的列表")
            joiner = " AND " if key == "all" else " OR "
            return "(" + joiner.join(self.node(child, depth + 1) for child in children) + ")"
        return f"coalesce({self.leaf(condition)}, false)"

    def leaf(self, condition: dict) -> str:
        self.leaves += 1
        if self.leaves > MAX_LEAVES:
            raise RuleError(f"条件太多（最多 {MAX_LEAVES} 个）")
        name = condition.get("fact")
        fact = FACTS.get(name)
        if fact is None:
            known = "、".join(FACTS)
            raise RuleError(f"未知的条件项「{name}」（可用：{known}）")
        op = condition.get("op")
        value = condition.get("value")
        allowed_keys = {"fact", "op", "value"}
        if fact.kind == "number":
            expression = fact.sql
            if fact.windowed and "days" in condition:
                allowed_keys.add("days")
                expression = _WINDOWED_SQL[name].format(days=self.param(_days(condition["days"])))
            sql = self.compare(fact, expression, op, value, _number)
        elif fact.kind == "date":
            sql = self.compare(fact, fact.sql, op, value, _date)
        elif fact.kind == "share":
            allowed_keys |= {"key", "by"}
            sql = self.share(name, fact, condition, op, value)
        elif fact.kind == "bool":
            if op != "is" or not isinstance(value, bool):
                raise RuleError(f"「{fact.label}」的写法是 op「is」，value 为 true 或 false")
            sql = f"{fact.sql} = {self.param(value)}"
        elif fact.kind == "set":
            sql = self.set_test(name, fact, op, value)
        else:
            sql = self.tag_test(fact, op, value)
        extra = set(condition) - allowed_keys
        if extra:
            raise RuleError(f"「{fact.label}」不认识这些键：{'、'.join(sorted(extra))}")
        return sql

    def compare(self, fact: Fact, expression: str, op, value, parse) -> str:
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise RuleError(f"「{fact.label}」between 需要 [下限, 上限] 两个值")
            low, high = parse(fact, value[0]), parse(fact, value[1])
            if low > high:
                raise RuleError(f"「{fact.label}」between 的下限大于上限")
            return f"{expression} BETWEEN {self.param(low)} AND {self.param(high)}"
        if op not in NUMBER_OPS:
            raise RuleError(
                f"「{fact.label}」不支持运算「{op}」（可用：{'、'.join(NUMBER_OPS)}、between）"
            )
        return f"{expression} {NUMBER_OPS[op]} {self.param(parse(fact, value))}"

    def share(self, name: str, fact: Fact, condition: dict, op, value) -> str:
        key = condition.get("key")
        if not isinstance(key, str) or not key.strip():
            raise RuleError(f"「{fact.label}」需要 key：要计算占比的值，例如「冰丝」")
        by = condition.get("by", "lines")
        if by not in ("lines", "revenue"):
            raise RuleError(f"「{fact.label}」的 by 只能是 lines（按件数）或 revenue（按金额）")
        if op == "between" and isinstance(value, list) and len(value) == 2:
            shares = [_number(fact, bound) for bound in value]
        else:
            shares = [] if op == "between" else [_number(fact, value)]
        if not all(0 <= share <= 1 for share in shares):
            raise RuleError(f"「{fact.label}」是 0 到 1 之间的比例，例如 0.5 表示一半")
        numerator, denominator = (
            ("a.lines", "f.lines") if by == "lines" else ("a.net_revenue", "f.line_revenue")
        )
        kind = name.removesuffix("_share")
        expression = (
            f"(coalesce((SELECT {numerator} FROM contacts_customerattributeshare a"
            f" WHERE a.customer_id = f.customer_id AND a.kind = {self.param(kind)}"
            f" AND a.value = {self.param(key.strip())}), 0)::float"
            f" / nullif({denominator}, 0)::float)"
        )
        return self.compare(fact, expression, op, value, _number)

    def set_test(self, name: str, fact: Fact, op, value) -> str:
        if op not in SET_OPS:
            raise RuleError(f"「{fact.label}」的运算是 any_of、all_of 或 none_of")
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise RuleError(f"「{fact.label}」需要一个非空的列表")
        if name == "channel":
            column, items, cast = "f.channels", sorted(set(value)), "varchar[]"
        else:
            column = "f.guide_ids" if name == "guide" else "f.store_ids"
            items, cast = self.resolve(name, value), "bigint[]"
        array = f"{self.param(items)}::{cast}"
        if op == "any_of":
            return f"{column} && {array}"
        if op == "all_of":
            return f"{column} @> {array}"
        return f"NOT ({column} && {array})"

    def tag_test(self, fact: Fact, op, value) -> str:
        if op not in ("has", "lacks"):
            raise RuleError("「标签」的运算是 has（有）或 lacks（没有）")
        if not isinstance(value, int) or isinstance(value, bool):
            raise RuleError("「标签」的 value 是标签的 id")
        (tag_id,) = self.resolve("tag", [value])
        self.tag_ids.add(tag_id)
        exists = (
            "EXISTS (SELECT 1 FROM tagging_customertag t"
            f" WHERE t.customer_id = f.customer_id AND t.tag_id = {self.param(tag_id)})"
        )
        return exists if op == "has" else f"NOT {exists}"


def _number(fact: Fact, value) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RuleError(f"「{fact.label}」需要一个数字，收到的是 {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise RuleError(f"「{fact.label}」需要一个数字，收到的是 {value!r}") from None
    if not number.is_finite():
        raise RuleError(f"「{fact.label}」需要一个有限的数字")
    return number


def _date(fact: Fact, value) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise RuleError(f"「{fact.label}」需要 YYYY-MM-DD 格式的日期，收到的是 {value!r}") from None


def _days(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WINDOW_DAYS:
        raise RuleError(f"时间窗口 days 应是 1 到 {MAX_WINDOW_DAYS} 之间的整数天数")
    return value


def compile_condition(condition, *, resolve) -> Compiled:
    """The SQL predicate of a condition; RuleError names the first problem found.

    `resolve(kind, values)` turns guide userids, store codes and tag ids into row ids
    and raises RuleError for unknown ones (tagging.services.resolve_ids).
    """
    compiler = _Compiler(resolve)
    sql = compiler.node(condition, 1)
    return Compiled(sql=sql, params=compiler.params, tag_ids=compiler.tag_ids)
