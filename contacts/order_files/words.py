"""The channels' words: what each status word says, and the product-name keywords that
give a line its category, material and style when the channel gives none.

Dull tables on purpose: grep for a word to see what it means here. A word
missing from a table is reported on its row (never guessed), so a new word
shows up in the first import that meets it.
"""

from functools import lru_cache

# What an order status word says about the money. The status of a line then
# follows from the payment time and the refund (`order_status`).
PAID = "paid"  # paid: waiting to ship, shipped, received, completed
CLOSED = "closed"  # closed or cancelled: before payment, or after a full refund
REFUNDED = "refunded"  # the word itself says the money went back
UNPAID = "unpaid"  # waiting for payment: not an order yet, reported and not imported

ORDER_STATUS_WORDS: dict[str, dict[str, str]] = {
    # Tmall order report 订单状态 (also on each row of the item report).
    "tmall": {
        "等待买家付款": UNPAID,
        "买家已付款，等待卖家发货": PAID,
        "等待卖家发货": PAID,
        "卖家部分发货": PAID,
        "卖家已发货，等待买家确认": PAID,
        "等待买家确认收货": PAID,
        "交易成功": PAID,
        "交易关闭": CLOSED,
        "付款以后用户退款成功，交易自动关闭": REFUNDED,
    },
    # JD 订单状态.
    "jd": {
        "等待付款": UNPAID,
        "等待付款确认": UNPAID,
        "等待出库": PAID,
        "等待发货": PAID,
        "已发货": PAID,
        "等待确认收货": PAID,
        "锁定": PAID,  # held for a pending after-sale; paid until it is refunded
        "完成": PAID,
        "已完成": PAID,
        "已取消": CLOSED,
        "取消": CLOSED,
    },
    # Douyin (抖店) 订单状态; refunds are in 售后状态 (AFTER_SALE_WORDS).
    "douyin": {
        "待支付": UNPAID,
        "待付款": UNPAID,
        "备货中": PAID,
        "待发货": PAID,
        "部分发货": PAID,
        "已发货": PAID,
        "已签收": PAID,
        "已完成": PAID,
        "已关闭": CLOSED,
        "已取消": CLOSED,
    },
    # Youzan 订单状态; refunds are in 退款状态 (AFTER_SALE_WORDS).
    "youzan": {
        "待付款": UNPAID,
        "等待买家付款": UNPAID,
        "待成团": PAID,
        "待发货": PAID,
        "等待商家发货": PAID,
        "已发货": PAID,
        "商家已发货": PAID,
        "待收货": PAID,
        "已签收": PAID,
        "交易完成": PAID,
        "交易成功": PAID,
        "已完成": PAID,
        "交易关闭": CLOSED,
        "已关闭": CLOSED,
        "已取消": CLOSED,
    },
}

# What an after-sale (售后 / 退款) status word says about one line's refund.
# An after-sale still in progress or turned down refunds nothing (yet).
NO_REFUND = "none"
FULL_REFUND = "full"
PARTIAL_REFUND = "partial"  # the amount must come from a refund amount column

AFTER_SALE_WORDS: dict[str, dict[str, str]] = {
    # Douyin 售后状态
    "douyin": {
        "": NO_REFUND,
        "-": NO_REFUND,
        "无": NO_REFUND,
        "无售后": NO_REFUND,
        "售后中": NO_REFUND,
        "退款中": NO_REFUND,
        "待商家处理": NO_REFUND,
        "待买家退货": NO_REFUND,
        "待商家收货": NO_REFUND,
        "售后关闭": NO_REFUND,
        "退款关闭": NO_REFUND,
        "售后失败": NO_REFUND,
        "拒绝售后": NO_REFUND,
        "退款成功": FULL_REFUND,
        "退货退款成功": FULL_REFUND,
        "已退款": FULL_REFUND,
        "售后完成": FULL_REFUND,
        "部分退款": PARTIAL_REFUND,
    },
    # Youzan 退款状态
    "youzan": {
        "": NO_REFUND,
        "-": NO_REFUND,
        "无退款": NO_REFUND,
        "退款中": NO_REFUND,
        "退款处理中": NO_REFUND,
        "退款关闭": NO_REFUND,
        "退款失败": NO_REFUND,
        "退款成功": FULL_REFUND,
        "全额退款": FULL_REFUND,
        "已退款": FULL_REFUND,
        "部分退款": PARTIAL_REFUND,
        "部分退款成功": PARTIAL_REFUND,
    },
}


def normalise_word(word: str) -> str:
    """Exports differ in the comma and spaces inside a status word."""
    return word.replace(",", "，").replace(" ", "").replace("\u3000", "")


# Product attributes from the product name, for channels that give none. First
# keyword found wins, so a longer keyword comes before one it contains (纯棉
# before 棉). The values are the ones the brand's own data uses (the generic
# sample file): pyjamas are loungewear (家居服), cotton is 棉.
CATEGORY_KEYWORDS = [
    ("文胸", "文胸"),
    ("内裤", "内裤"),
    ("睡衣", "家居服"),
    ("睡裙", "家居服"),
    ("睡袍", "家居服"),
    ("家居服", "家居服"),
    ("袜", "袜子"),
]
MATERIAL_KEYWORDS = [
    ("冰丝", "冰丝"),
    ("桑蚕丝", "真丝"),
    ("真丝", "真丝"),
    ("莫代尔", "莫代尔"),
    ("蕾丝", "蕾丝"),
    ("纯棉", "棉"),
    ("棉", "棉"),
]
STYLE_KEYWORDS = [
    ("主题款", "主题款"),
    ("联名", "主题款"),
    ("基础款", "基础款"),
]
# The catalogue has two styles; a product named without a theme is a basic.
DEFAULT_STYLE = "基础款"


def _first(name: str, keywords: list[tuple[str, str]], default: str = "") -> str:
    return next((value for word, value in keywords if word in name), default)


@lru_cache(maxsize=4096)
def product_attributes(name: str) -> tuple[str, str, str]:
    """(category, material, style) read from a product name; "" where nothing fits."""
    if not name:
        return "", "", ""
    return (
        _first(name, CATEGORY_KEYWORDS),
        _first(name, MATERIAL_KEYWORDS),
        _first(name, STYLE_KEYWORDS, DEFAULT_STYLE),
    )
