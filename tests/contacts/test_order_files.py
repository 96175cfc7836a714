"""Reading and validating order files (contacts.order_files); no database.

Expected counts and totals are computed without the module: by hand (the
table below, each number with how it was counted) and, where that is a plain
sum or count, again by reading the raw files with the csv module / openpyxl in
the simplest way (`test_hand_counts_agree_with_the_raw_files`).
"""

import csv
import io
import re
import tracemalloc
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.order_files import (
    CHANNELS,
    GENERIC_COLUMNS,
    ORDER_CHANNELS,
    OrderFileError,
    OrderLine,
    RowError,
    detect_channel,
    read_orders,
)
from contacts.order_files.channels import allocate, refund_shares
from contacts.order_files.lines import FieldError, parse_phone
from contacts.order_files.sources import clean, guard, sniff_encoding

# Copies of ../shared/data/orders (the channels' sample exports), byte for byte.
DATA = Path(__file__).resolve().parents[1] / "data" / "orders"
SHANGHAI = timezone(timedelta(hours=8))


def _read(*names: str, channel: str | None = None) -> tuple[list[OrderLine], list[RowError]]:
    lines, errors = [], []
    for item in read_orders([DATA / name for name in names], channel):
        (lines if isinstance(item, OrderLine) else errors).append(item)
    return lines, errors


def _raw_csv(name: str, encoding: str) -> list[dict]:
    """Raw rows the plainest way, text guards removed by hand (no code shared with the reader)."""
    with open(DATA / name, encoding=encoding, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: v.strip().removeprefix('="').removesuffix('"').lstrip("'") for k, v in r.items()}
        for r in rows
    ]


def _raw_jd() -> list[dict]:
    rows = list(openpyxl.load_workbook(DATA / "jd_orders.xlsx").worksheets[0].values)
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


# -- every sample file: counts, statuses, totals --------------------------------------

# Counted by hand from the files (line = one data row; for Tmall one row of the
# item report; for Douyin one sub-order, which is also the order).
EXPECTED = {
    # 30 rows, order ids POS-00-00 … POS-11-03 all distinct, every status "paid",
    # refund_amount 0 everywhere; line_amount summed: 4680.00.
    "generic": {
        "files": ["generic_orders.csv"],
        "lines": 30,
        "orders": 30,
        "orders_by_status": {"paid": 30},
        "line_amount": Decimal("4680.00"),
        "refund_amount": Decimal("0.00"),
    },
    # Order report: 15 orders. 2 are 交易关闭 with no 订单付款时间 (384931161934377143,
    # 384317530918117120): cancelled. 383678155004081806 is 交易成功 with 退款金额 259.00
    # = its 买家实际支付金额: refunded. 385660725877103121 (49.00 of 108.00) and
    # 387137411344187316 (79.00 of 338.00): partially refunded. The other 10: paid.
    # Item report: 23 rows; 价格 × 购买数量 summed = 4107.00 (= Σ 买家实际支付金额, no
    # postage, no discount); refunds 49 + 259 + 79 = 387.00.
    "tmall": {
        "files": ["tmall_orders.csv", "tmall_items.csv"],
        "lines": 23,
        "orders": 15,
        "orders_by_status": {
            "paid": 10,
            "cancelled": 2,
            "refunded": 1,
            "partially_refunded": 2,
        },
        "line_amount": Decimal("4107.00"),
        "refund_amount": Decimal("387.00"),
    },
    # 11 rows, 11 distinct 订单号. 2 are 已取消 without 付款确认时间: cancelled; 9 完成: paid.
    # 应付金额 summed: 89+158+79+59+98+49+399+518+259+89+158 = 1955.
    "jd": {
        "files": ["jd_orders.xlsx"],
        "lines": 11,
        "orders": 11,
        "orders_by_status": {"paid": 9, "cancelled": 2},
        "line_amount": Decimal("1955.00"),
        "refund_amount": Decimal("0.00"),
    },
    # 7 sub-orders of 6 checkouts (6940042196802540883 was split in two). 已关闭
    # without 支付完成时间: cancelled; 已完成 + 售后状态 退款成功 (79.00): refunded;
    # 5 已完成 with 售后状态 "-": paid. 订单应付金额: 89+79+59+59+89+79+59 = 513.00.
    "douyin": {
        "files": ["douyin_orders.csv"],
        "lines": 7,
        "orders": 7,
        "orders_by_status": {"paid": 5, "cancelled": 1, "refunded": 1},
        "line_amount": Decimal("513.00"),
        "refund_amount": Decimal("79.00"),
    },
    # 12 rows, 12 distinct 订单号, all 交易完成 / 无退款. 订单实付金额 summed: 2188.00.
    "youzan": {
        "files": ["youzan_orders.csv"],
        "lines": 12,
        "orders": 12,
        "orders_by_status": {"paid": 12},
        "line_amount": Decimal("2188.00"),
        "refund_amount": Decimal("0.00"),
    },
}


@pytest.mark.parametrize("channel", list(EXPECTED))
def test_each_sample_file_reads_to_the_counts_its_rows_imply(channel):
    expected = EXPECTED[channel]
    lines, errors = _read(*expected["files"], channel=channel)
    assert errors == []
    assert len(lines) == expected["lines"]
    statuses = {line.order_id: line.status for line in lines}
    assert len(statuses) == expected["orders"]
    by_status: dict[str, int] = {}
    for status in statuses.values():
        by_status[status] = by_status.get(status, 0) + 1
    assert by_status == expected["orders_by_status"]
    assert sum(line.line_amount for line in lines) == expected["line_amount"]
    assert sum(line.refund_amount for line in lines) == expected["refund_amount"]
    assert {line.channel for line in lines} == {"pos" if channel == "generic" else channel}
    assert all(line.refund_amount <= line.line_amount for line in lines)
    assert all(line.paid_at is None for line in lines if line.status == "cancelled")
    assert all(line.paid_at.utcoffset() is not None for line in lines if line.paid_at)
    # auto-detection reads the same
    assert _read(*expected["files"]) == (lines, [])


def test_hand_counts_agree_with_the_raw_files():
    generic = _raw_csv("generic_orders.csv", "utf-8")
    tmall_orders = _raw_csv("tmall_orders.csv", "gb18030")
    tmall_items = _raw_csv("tmall_items.csv", "gb18030")
    jd = _raw_jd()
    douyin = _raw_csv("douyin_orders.csv", "utf-8-sig")
    youzan = _raw_csv("youzan_orders.csv", "utf-8")
    raw = {
        "generic": (
            len(generic),
            len({r["order_id"] for r in generic}),
            sum(Decimal(r["line_amount"]) for r in generic),
            sum(Decimal(r["refund_amount"]) for r in generic),
        ),
        "tmall": (
            len(tmall_items),
            len(tmall_orders),
            sum(Decimal(r["价格"]) * int(r["购买数量"]) for r in tmall_items),
            sum(Decimal(r["退款金额"]) for r in tmall_orders),
        ),
        "jd": (len(jd), len({r["订单号"] for r in jd}), sum(Decimal(r["应付金额"]) for r in jd), 0),
        "douyin": (
            len(douyin),
            len({r["子订单编号"] for r in douyin}),
            sum(Decimal(r["订单应付金额"]) for r in douyin),
            sum(Decimal(r["订单应付金额"]) for r in douyin if r["售后状态"] == "退款成功"),
        ),
        "youzan": (
            len(youzan),
            len({r["订单号"] for r in youzan}),
            sum(Decimal(r["订单实付金额"]) for r in youzan),
            0,
        ),
    }
    for channel, (lines, orders, line_amount, refund_amount) in raw.items():
        expected = EXPECTED[channel]
        assert (lines, orders, line_amount, refund_amount) == (
            expected["lines"],
            expected["orders"],
            expected["line_amount"],
            expected["refund_amount"],
        ), channel
    # Tmall: no postage and no discount, so the lines add up to what was paid
    assert (
        sum(Decimal(r["买家实际支付金额"]) for r in tmall_orders)
        == EXPECTED["tmall"]["line_amount"]
    )
    # statuses counted from the raw words
    assert sum(not r["订单付款时间"] for r in tmall_orders) == 2
    assert sum(r["订单状态"] == "已取消" and not r["付款确认时间"] for r in jd) == 2
    assert sum(r["订单状态"] == "已关闭" and not r["支付完成时间"] for r in douyin) == 1


# -- the bad-rows file -------------------------------------------------------------------


def test_bad_rows_file_yields_its_good_order_and_an_error_for_every_other_row():
    lines, errors = _read("generic_orders_with_bad_rows.csv")
    raw = _raw_csv("generic_orders_with_bad_rows.csv", "utf-8")
    good_rows = [n for n, r in enumerate(raw, start=2) if r["order_id"].startswith("GOOD")]
    assert (
        [(line.row, line.order_id) for line in lines]
        == [(11, "GOOD-10")]
        == [(n, raw[n - 2]["order_id"]) for n in good_rows]
    )
    good = lines[0]
    assert (good.quantity, good.unit_price, good.line_amount, good.buyer_unionid) == (
        2,
        Decimal("59.00"),
        Decimal("118.00"),
        "oUnion_wf01",
    )
    assert [(e.row, e.column, e.order_id) for e in errors] == [
        (2, "order_id", ""),  # no order id
        (3, "paid_at", "BAD-02"),  # 2026-13-45 25:61:00
        (4, "quantity", "BAD-03"),  # -2
        (4, "line_amount", "BAD-03"),  # -178.00
        (5, "buyer_phone", "BAD-04"),  # no phone, unionid or buyer id
        (6, "unit_price", "BAD-05"),  # 8x.00
        (7, "channel", "BAD-06"),  # mars
        (8, "status", "BAD-07"),  # shipped?
        (9, "buyer_phone", "BAD-08"),  # 12345
        (10, "refund_amount", "BAD-09"),  # 120.00 refunded of 89.00
    ]
    assert all(e.source == "generic_orders_with_bad_rows.csv" for e in errors)
    for error in errors:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in error.reason), error.reason
    by_row = {e.row: e.reason for e in errors}
    assert (
        by_row[3]
        == "付款时间无法识别：2026-13-45 25:61:00（应为 2026-03-01 20:42:39 这样的日期时间）"
    )
    assert "mars" in by_row[7] and "shipped?" in by_row[8] and "12345" in by_row[9]
    assert "120.00" in by_row[10] and "89.00" in by_row[10]


# -- detecting the channel and refusing unreadable files ---------------------------------


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("generic_orders.csv", "generic"),
        ("generic_orders_with_bad_rows.csv", "generic"),
        ("tmall_orders.csv", "tmall"),
        ("tmall_items.csv", "tmall"),
        ("jd_orders.xlsx", "jd"),
        ("douyin_orders.csv", "douyin"),
        ("youzan_orders.csv", "youzan"),
    ],
)
def test_channel_is_detected_from_the_header(name, channel):
    assert detect_channel(DATA / name) == channel
    assert channel in CHANNELS


def test_unknown_header_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "nonsense.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(OrderFileError, match="nonsense.csv：无法从表头识别"):
        detect_channel(path)
    with pytest.raises(OrderFileError, match="nonsense.csv"):
        read_orders([path])  # at once, before any row is read


def test_a_file_of_another_channel_than_chosen_is_refused():
    with pytest.raises(OrderFileError, match="youzan_orders.csv：表头是「有赞订单导出」的，.*天猫"):
        read_orders([DATA / "youzan_orders.csv"], "tmall")


def test_missing_required_columns_are_named(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(
        "order_id,channel,status,sku,buyer_phone\nA,pos,paid,S,13812345601\n", encoding="utf-8"
    )
    with pytest.raises(
        OrderFileError, match="short.csv：通用格式缺少必需的列：quantity、unit_price、line_amount"
    ):
        read_orders([path])
    no_buyer = tmp_path / "no_buyer.csv"
    no_buyer.write_text(
        "order_id,channel,status,sku,quantity,unit_price,line_amount\n", encoding="utf-8"
    )
    with pytest.raises(OrderFileError, match="buyer_phone／buyer_unionid／buyer_id"):
        read_orders([no_buyer])


def test_tmall_needs_both_reports():
    with pytest.raises(OrderFileError, match="缺少宝贝报表"):
        read_orders([DATA / "tmall_orders.csv"], "tmall")
    with pytest.raises(OrderFileError, match="缺少订单报表"):
        read_orders([DATA / "tmall_items.csv"])


def test_empty_and_old_excel_files_are_refused(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(OrderFileError, match="empty.csv：文件是空的"):
        read_orders([empty])
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(OrderFileError, match="old.xls：这是旧版 Excel"):
        read_orders([xls])


def test_what_is_no_order_file_is_named_for_what_it_is(tmp_path):
    """A folder, an image or an archive given as an export: said so, in Chinese (no
    library's English), whatever channel was chosen."""
    import zipfile

    folder = tmp_path / "exports"
    folder.mkdir()
    with pytest.raises(OrderFileError, match="exports：这是文件夹"):
        read_orders([folder], "generic")
    image = tmp_path / "photo.csv"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    for channel in (None, "generic"):
        with pytest.raises(OrderFileError, match="photo.csv：不是 CSV 或 Excel 表格"):
            read_orders([image], channel)
    archive = tmp_path / "orders.csv"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("orders.csv", "order_id\n1\n")
    with pytest.raises(
        OrderFileError, match=r"orders.csv：无法作为 Excel（\.xlsx）文件打开"
    ) as error:
        read_orders([archive])
    assert set(re.findall("[A-Za-z]+", str(error.value))) <= {
        "orders",
        "csv",
        "Excel",
        "xlsx",
        "CSV",
    }


# -- encodings and text guards -------------------------------------------------------------


def test_encodings_of_the_samples_are_detected():
    assert sniff_encoding(DATA / "tmall_orders.csv") == "gb18030"
    assert sniff_encoding(DATA / "tmall_items.csv") == "gb18030"
    assert sniff_encoding(DATA / "douyin_orders.csv") == "utf-8-sig"
    assert sniff_encoding(DATA / "youzan_orders.csv") == "utf-8"
    assert sniff_encoding(DATA / "generic_orders.csv") == "utf-8"


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-16"])
def test_the_generic_file_in_other_encodings_reads_the_same(tmp_path, encoding):
    text = (DATA / "generic_orders.csv").read_text(encoding="utf-8")
    path = tmp_path / "generic_orders.csv"
    path.write_bytes(text.encode(encoding))
    original, _ = _read("generic_orders.csv")
    again = [item for item in read_orders([path]) if isinstance(item, OrderLine)]
    assert again == original
    assert {line.buyer_name for line in again} >= {"王芳", "徐静怡"}


def test_gb18030_after_a_megabyte_of_ascii_is_still_gb18030(tmp_path):
    header = ",".join(GENERIC_COLUMNS)
    ascii_row = "A{n},pos,,paid,2026-03-01 10:00:00,13812345601,,,Wang,S1,x,,,,1,1.00,1.00,0,,"
    rows = [ascii_row.format(n=n) for n in range(20_000)]  # > 1 MB
    rows.append(
        "B1,pos,,paid,2026-03-01 10:00:00,13812345601,,,王芳,S1,冰丝文胸,,,,1,1.00,1.00,0,,"
    )
    path = tmp_path / "late_chinese.csv"
    path.write_bytes("\r\n".join([header, *rows]).encode("gb18030"))
    assert path.stat().st_size > 1 << 20
    assert sniff_encoding(path) == "gb18030"
    last = list(read_orders([path]))[-1]
    assert (last.order_id, last.buyer_name, last.product_name) == ("B1", "王芳", "冰丝文胸")


def test_undecodable_bytes_further_down_are_a_file_error_naming_the_row(tmp_path):
    header = ",".join(GENERIC_COLUMNS).encode()
    good = "A1,pos,,paid,2026-03-01 10:00:00,13812345601,,,王芳,S1,x,,,,1,1.00,1.00,0,,".encode()
    bad = b"A2,pos,,paid,2026-03-01 10:00:00,13812345601,,,\xff\xfe,S1,x,,,,1,1.00,1.00,0,,"
    path = tmp_path / "broken.csv"
    path.write_bytes(b"\r\n".join([header, good, bad]))
    with pytest.raises(OrderFileError, match="broken.csv：第 3 行有无法识别的字符"):
        list(read_orders([path]))


def test_tmall_gb18030_text_and_excel_guards_are_read_clean():
    lines, _ = _read("tmall_orders.csv", "tmall_items.csv")
    raw_bytes = (DATA / "tmall_orders.csv").read_bytes()
    assert b'"=""386131588164925948"""' in raw_bytes and b",'13812345601," in raw_bytes
    first = lines[0]
    assert first.order_id == "386131588164925948"
    assert first.buyer_phone == "13812345601"
    assert first.buyer_id == "tb_王芳_0" and first.buyer_name == "王芳"
    assert all(line.order_id.isdigit() for line in lines)


def test_text_guards_and_spaces_are_stripped_in_a_generic_file(tmp_path):
    path = tmp_path / "guarded.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([" order_id ", *GENERIC_COLUMNS[1:]])
        writer.writerow(
            ['="POS-9"', "pos", "", " paid", "2026-03-01 20:42:39 ", "'13812345601", "", "",
             "王芳", "  BRA-ICE-01", "冰丝无痕文胸 基础款", "", "", "", "'2", "89.00",
             '="178.00"', "", "", ""]
        )  # fmt: skip
    (line,) = read_orders([path])
    assert (line.order_id, line.status, line.buyer_phone, line.sku) == (
        "POS-9",
        "paid",
        "13812345601",
        "BRA-ICE-01",
    )
    assert (line.quantity, line.line_amount, line.refund_amount) == (
        2,
        Decimal("178.00"),
        Decimal("0.00"),
    )
    assert line.paid_at == datetime(2026, 3, 1, 12, 42, 39, tzinfo=UTC)


def test_a_generic_line_refunded_without_an_amount_was_refunded_in_full_and_with_less_in_part(
    tmp_path,
):
    path = tmp_path / "refunds.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GENERIC_COLUMNS)
        for number, (status, refund) in enumerate(
            (("refunded", ""), ("REFUNDED", "0"), ("refunded", "30.00"), ("paid", ""),
             ("partially_refunded", "20.00")),
        ):  # fmt: skip
            row = dict.fromkeys(GENERIC_COLUMNS, "")
            row.update(order_id=f"R-{number}", channel="pos", status=status, sku="S",
                       paid_at="2026-03-01 20:42:39", buyer_phone="13812345601",
                       quantity="2", unit_price="44.50", line_amount="89.00",
                       refund_amount=refund)  # fmt: skip
            writer.writerow(row.values())
    lines = list(read_orders([path]))
    refunds = [line.refund_amount for line in lines]
    assert refunds == [Decimal("89.00"), Decimal("89.00"), Decimal("30.00"), 0, 20]
    statuses = [line.status for line in lines]
    # 30.00 of 89.00 refunded: 59.00 kept, which a refunded line would leave out of sales
    assert statuses == ["refunded", "refunded", "partially_refunded", "paid", "partially_refunded"]


@given(st.text(alphabet=st.sampled_from("0123456789=+-@'\" a王"), max_size=25))
def test_a_guarded_cell_reads_back_as_it_was(text):
    cell = clean(text)  # a cell as read
    assert clean(guard(cell)) == cell


def test_guards_keep_long_numbers_and_formulas_as_text():
    assert guard("4032198765432109876") == '="4032198765432109876"'
    assert guard("007") == '="007"' and guard("13812345601") == "13812345601"
    assert guard("=1+1") == "'=1+1" and guard("-x") == "'-x" and guard("王芳") == "王芳"
    assert guard("-2") == "-2" and guard("-178.00") == "-178.00" and guard("-") == "-"
    assert guard("'-") == "''-"  # read back as '-
    # a spreadsheet would save a date in its own format (3/1/2026 20:42)
    assert guard("2026-03-01 20:42:39") == '="2026-03-01 20:42:39"'
    assert guard("2026/3/1") == '="2026/3/1"' and guard("20260301") == "20260301"
    assert guard('2026-3 "新款"') == '2026-3 "新款"'  # a quote would end the ="…" early


# -- channel specifics ------------------------------------------------------------------------


def test_masked_phones_stay_masked():
    douyin, _ = _read("douyin_orders.csv")
    raw = _raw_csv("douyin_orders.csv", "utf-8-sig")
    assert [line.buyer_phone for line in douyin] == [r["收件人手机号"] for r in raw]
    assert all("****" in line.buyer_phone for line in douyin)
    assert douyin[0].buyer_phone == "186****5607" and douyin[0].buyer_name == "赵**"
    jd, _ = _read("jd_orders.xlsx")
    assert {line.buyer_phone for line in jd if "*" in line.buyer_phone} == {
        "151****5605",
        "186****5607",
        "188****5609",
    }


def test_douyin_sub_orders_of_one_checkout_share_their_parent():
    lines, _ = _read("douyin_orders.csv")
    split = [line for line in lines if line.parent_order_id == "6940042196802540883"]
    assert [(line.order_id, line.sku) for line in split] == [
        ("6940042196802540881", "BRA-COT-02"),
        ("6940042196802540882", "PAN-ICE-03"),
    ]
    assert len({line.paid_at for line in split}) == 1
    assert all(line.parent_order_id for line in lines)
    assert len({line.parent_order_id for line in lines}) == 6
    refunded = next(line for line in lines if line.status == "refunded")
    assert (refunded.order_id, refunded.refund_amount) == ("6914084417944853171", Decimal("79.00"))


def test_tmall_lines_carry_their_orders_buyer_status_and_payment_time():
    lines, _ = _read("tmall_items.csv", "tmall_orders.csv")  # either order of the two paths
    orders = {r["订单编号"]: r for r in _raw_csv("tmall_orders.csv", "gb18030")}
    items = _raw_csv("tmall_items.csv", "gb18030")
    assert [(line.order_id, line.sku) for line in lines] == [
        (r["订单编号"], r["商家编码"]) for r in items
    ]
    for line in lines:
        order = orders[line.order_id]
        assert line.source == "tmall_items.csv"
        assert (line.buyer_id, line.buyer_name, line.buyer_phone) == (
            order["买家会员名"],
            order["收货人姓名"],
            order["联系手机"],
        )
        paid = order["订单付款时间"]
        assert line.paid_at == (
            datetime.fromisoformat(paid).replace(tzinfo=SHANGHAI) if paid else None
        )
    for order_id, order in orders.items():
        own = [line for line in lines if line.order_id == order_id]
        assert len({line.status for line in own}) == 1
        assert sum(line.refund_amount for line in own) == Decimal(order["退款金额"])
        assert sum(line.line_amount for line in own) == Decimal(order["买家实际支付金额"])
    # a refund equal to one line's amount is that line's (one item sent back)
    refunded = {
        (line.order_id, line.sku): line.refund_amount for line in lines if line.refund_amount
    }
    assert refunded == {
        ("385660725877103121", "PAN-COT-04"): Decimal("49.00"),
        ("383678155004081806", "SLP-COT-06"): Decimal("259.00"),
        ("387137411344187316", "BRA-COT-02"): Decimal("79.00"),
    }


def test_inferred_attributes_match_the_brands_own_for_every_sku():
    """Channel exports give no category / material / style: they are read from the
    product name, and must agree with what the generic file says of the same sku."""
    generic, _ = _read("generic_orders.csv")
    known = {line.sku: (line.category, line.material, line.style) for line in generic}
    for files in (
        ["tmall_orders.csv", "tmall_items.csv"],
        ["jd_orders.xlsx"],
        ["douyin_orders.csv"],
        ["youzan_orders.csv"],
    ):
        lines, _ = _read(*files)
        for line in lines:
            assert (line.category, line.material, line.style) == known[line.sku], line


def test_jd_numbers_from_excel_cells_are_exact_text():
    lines, _ = _read("jd_orders.xlsx")
    first = lines[0]
    assert (first.order_id, first.buyer_id, first.unit_price) == (
        "295817071098",
        "jd_5604",
        Decimal("89.00"),
    )
    assert str(lines[1].line_amount) == "158.00" and lines[1].quantity == 2


def test_a_jd_order_total_repeated_on_each_of_its_rows_is_spread_over_them(tmp_path):
    """JD writes an order of two products as two rows, each with the order's 应付金额
    (148 = 89 + 59): counted once, spread by 京东价 × 订购数量, the refund likewise. Rows
    whose amounts are each their own (two lines of 89, or 89 and 59) stay as they are."""
    header = list(openpyxl.load_workbook(DATA / "jd_orders.xlsx").worksheets[0].values)[0]
    header = [*header, "退款金额"]

    def row(order, sku, price, quantity, amount, refund=0):
        cells = dict(zip(header, [None] * len(header), strict=True)) | {
            "订单号": order, "商品ID": 1, "商品名称": "冰丝无痕文胸 基础款", "订购数量": quantity,
            "京东价": price, "应付金额": amount, "订单状态": "完成",
            "下单时间": "2026-04-05 13:31:58", "付款确认时间": "2026-04-05 13:33:58",
            "下单帐号": "jd_1", "客户姓名": "刘洋", "联系电话": "15012345604",
            "商家SKUID": sku, "退款金额": refund,
        }  # fmt: skip
        return [cells[name] for name in header]

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(header)
    for cells in (
        row(1, "BRA-ICE-01", 89, 1, 148, 59),  # the order's 148 and its refund, twice
        row(1, "PAN-ICE-03", 59, 1, 148, 59),
        row(2, "BRA-ICE-01", 89, 1, 89),  # two lines of 89 each
        row(2, "BRA-COT-02", 89, 1, 89),
        row(3, "BRA-ICE-01", 89, 1, 89),  # their own amounts
        row(3, "PAN-ICE-03", 59, 1, 59),
        row(4, "BRA-ICE-01", 80, 2, 150),  # one line, a discount: its own
    ):
        sheet.append(cells)
    path = tmp_path / "jd.xlsx"
    workbook.save(path)
    lines, errors = _read(str(path), channel="jd")
    assert errors == []
    got = [(ln.order_id, ln.sku, ln.line_amount, ln.refund_amount) for ln in lines]
    d = Decimal
    assert got == [
        ("1", "BRA-ICE-01", d("89.00"), d("0")),
        ("1", "PAN-ICE-03", d("59.00"), d("59.00")),  # the one item sent back
        ("2", "BRA-ICE-01", d("89.00"), d("0")),
        ("2", "BRA-COT-02", d("89.00"), d("0")),
        ("3", "BRA-ICE-01", d("89.00"), d("0")),
        ("3", "PAN-ICE-03", d("59.00"), d("0")),
        ("4", "BRA-ICE-01", d("150.00"), d("0")),
    ]
    assert {ln.status for ln in lines if ln.order_id == "1"} == {"paid", "refunded"}


def test_xlsx_cells_of_every_type(tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(GENERIC_COLUMNS)
    sheet.append(
        [295817071098.0, "pos", None, "paid", datetime(2026, 3, 4, 18, 15, 29), 13812345601,  # noqa: DTZ001 - Excel times are naive
         None, None, "王芳", "BRA-ICE-01", "冰丝文胸", None, None, None, 2.0, 89.9, 179.8, 0,
         None, None]
    )  # fmt: skip
    sheet.append([None] * 20)  # a blank row is skipped, and still counted
    sheet.append(["A2", "pos", "", "cancelled", None, "138****5601", "", "", "", "S", "", "",
                  "", "", 1, 10, 10, None, "", ""])  # fmt: skip
    path = tmp_path / "orders.xlsx"
    workbook.save(path)
    first, second = read_orders([path])
    assert first.order_id == "295817071098" and first.buyer_phone == "13812345601"
    assert first.paid_at == datetime(2026, 3, 4, 10, 15, 29, tzinfo=UTC)
    assert (first.quantity, first.unit_price, first.line_amount) == (
        2,
        Decimal("89.90"),
        Decimal("179.80"),
    )
    assert (second.row, second.status, second.paid_at, second.buyer_phone) == (
        4,
        "cancelled",
        None,
        "138****5601",
    )


# -- validation rules -----------------------------------------------------------------------


def _generic_file(tmp_path: Path, rows: list[dict], name: str = "orders.csv") -> Path:
    base = {
        "order_id": "A1",
        "channel": "pos",
        "status": "paid",
        "paid_at": "2026-03-01 20:42:39",
        "buyer_phone": "13812345601",
        "sku": "S1",
        "quantity": "1",
        "unit_price": "89.00",
        "line_amount": "89.00",
    }
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=GENERIC_COLUMNS)
        writer.writeheader()
        writer.writerows({**base, **row} for row in rows)
    return path


def _problems(path: Path) -> list[tuple[int, str, str]]:
    return [(e.row, e.column, e.reason) for e in read_orders([path]) if isinstance(e, RowError)]


def test_a_line_given_twice_is_reported_on_the_later_row(tmp_path):
    path = _generic_file(tmp_path, [{}, {"sku": "S2"}, {}, {"order_id": "A2"}])
    assert _problems(path) == [(4, "sku", "与第 2 行重复：订单 A1 的商品 S1 在同一文件中出现两次")]


def test_accepted_spellings_of_money_quantity_time_and_phone(tmp_path):
    path = _generic_file(
        tmp_path,
        [
            {"unit_price": "1,299.00", "line_amount": "¥1299", "quantity": "1.0"},
            {"order_id": "A2", "paid_at": "2026/3/4 18:15:29", "buyer_phone": "+86 138-1234-5601"},
            {"order_id": "A3", "paid_at": "2026-03-01T12:42:39Z", "refund_amount": "89"},
            {"order_id": "A4", "paid_at": "2026年3月4日 18:15", "status": "Paid"},
        ],
    )
    a1, a2, a3, a4 = read_orders([path])
    assert (a1.unit_price, a1.line_amount, a1.quantity) == (
        Decimal("1299.00"),
        Decimal("1299.00"),
        1,
    )
    assert a2.paid_at == datetime(2026, 3, 4, 18, 15, 29, tzinfo=SHANGHAI)
    assert a2.buyer_phone == "13812345601"
    assert a3.paid_at == datetime(2026, 3, 1, 12, 42, 39, tzinfo=UTC)
    assert str(a3.refund_amount) == "89.00"
    assert a4.paid_at == datetime(2026, 3, 4, 18, 15, tzinfo=SHANGHAI) and a4.status == "paid"


def test_rejected_spellings_each_get_a_reason(tmp_path):
    path = _generic_file(
        tmp_path,
        [
            {"order_id": "A1", "unit_price": "89.001"},
            {"order_id": "A2", "unit_price": "NaN"},
            {"order_id": "A3", "line_amount": "1e3"},
            {"order_id": "A4", "quantity": "1.5"},
            {"order_id": "A5", "quantity": "0"},
            {"order_id": "A6", "paid_at": ""},
            {"order_id": "A7", "sku": ""},
            {"order_id": "A8", "line_amount": "99999999999.00"},
            {"order_id": "A9", "buyer_phone": "138****560"},
            {"order_id": "A10", "status": "cancelled", "paid_at": "", "refund_amount": "-1"},
            {"order_id": "3.86132E+17"},  # Excel's, saved as it showed it
            {"order_id": "A12", "parent_order_id": "6.94E+18"},
        ],
    )
    assert _problems(path) == [
        (2, "unit_price", "单价最多两位小数：89.001"),
        (3, "unit_price", "单价不是有效金额：NaN（应为 89.00 这样最多两位小数的数字）"),
        (4, "line_amount", "实付金额不是有效金额：1e3（应为 89.00 这样最多两位小数的数字）"),
        (5, "quantity", "数量必须是正整数：1.5"),
        (6, "quantity", "数量必须是正整数：0"),
        (7, "paid_at", "付款时间为空：已付款（paid）的订单必须有付款时间"),
        (8, "sku", "商品编码（sku）为空"),
        (9, "line_amount", "实付金额超出范围：99999999999.00（最大 9999999999.99）"),
        (
            10,
            "buyer_phone",
            "手机号格式不正确：138****560（应为 11 位手机号，或 138****5601 这样的打码号码）",
        ),
        (11, "refund_amount", "退款金额不能为负数：-1"),
        (
            12,
            "order_id",
            "订单号 3.86132E+17 是被 Excel 改成科学计数法的数字，后面的位数已经丢失："
            "请用原始导出文件，或在 Excel 里把这一列设为文本后重新导出",
        ),
        (
            13,
            "parent_order_id",
            "订单号 6.94E+18 是被 Excel 改成科学计数法的数字，后面的位数已经丢失："
            "请用原始导出文件，或在 Excel 里把这一列设为文本后重新导出",
        ),
    ]


def test_a_row_wider_than_the_header_is_an_error_and_blank_rows_count(tmp_path):
    path = tmp_path / "wide.csv"
    row = "A1,pos,,paid,2026-03-01 20:42:39,13812345601,,,王芳,S1,x,,,,1,89.00,89.00,0,,"
    lines = [",".join(GENERIC_COLUMNS), "", row + ",extra", ",,,"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [(e.row, e.column, e.order_id) for e in read_orders([path])] == [(3, "", "A1")]


# Youzan's columns (youzan_orders.csv), for files made up in the tests below.
YOUZAN_HEADER = (
    "订单号,订单状态,下单时间,付款时间,买家手机号,粉丝昵称,商品名称,规格,单价,数量,"
    "订单实付金额,退款状态,商品编码"
)
ORDERED = "2026-03-21 14:49:54"
PAID = "2026-03-21 14:50:34"


def test_unpaid_and_unknown_channel_status_words_are_reported(tmp_path):
    rows = [
        f"E1,待付款,{ORDERED},,13812345601,王芳,冰丝无痕文胸 基础款,M,89.00,1,89.00,无退款,S",
        f"E2,发货了吗,{ORDERED},{PAID},13812345601,王芳,x,M,89.00,1,89.00,无退款,S",
        f"E3,交易完成,{ORDERED},{PAID},13812345601,王芳,x,M,89.00,1,89.00,退款成功,S",
        f"E4,交易关闭,{ORDERED},{PAID},13812345601,王芳,x,M,89.00,1,89.00,无退款,S",
    ]
    path = tmp_path / "youzan.csv"
    path.write_text("\n".join([YOUZAN_HEADER, *rows]), encoding="utf-8")
    items = list(read_orders([path]))
    errors = [e for e in items if isinstance(e, RowError)]
    assert [(e.row, e.column, e.order_id) for e in errors] == [
        (2, "订单状态", "E1"),
        (3, "订单状态", "E2"),
    ]
    assert errors[0].reason == "订单状态为「待付款」：还没付款的订单不导入，付款后再导入"
    assert errors[1].reason.startswith("订单状态无法识别：发货了吗（应为 ")
    assert "交易完成" in errors[1].reason
    e3, e4 = (line for line in items if isinstance(line, OrderLine))
    assert (e3.status, e3.refund_amount) == ("refunded", Decimal("89.00"))
    # closed after payment: the platform refunded it
    assert (e4.status, e4.refund_amount) == ("refunded", Decimal("89.00"))


def test_youzan_order_amount_is_spread_over_its_lines(tmp_path):
    paid = f"交易完成,{ORDERED},{PAID},13812345601,王芳"
    rows = [
        f"E1,{paid},冰丝无痕文胸 基础款,M,89.00,1,130.00,无退款,BRA-ICE-01",
        f"E1,{paid},冰丝无痕内裤 三条装,M,59.00,1,130.00,无退款,PAN-ICE-03",
        f"E2,{paid},冰丝无痕内裤 三条装,M,59.00,1,59.00,无退款,PAN-ICE-03",
        f"E1,{paid},纯棉抗菌内裤 三条装,M,49.00,1,130.00,无退款,PAN-COT-04",
    ]
    path = tmp_path / "youzan.csv"
    path.write_text("\n".join([YOUZAN_HEADER, *rows]), encoding="utf-8")
    items = list(read_orders([path], "youzan"))
    lines = [i for i in items if isinstance(i, OrderLine)]
    # 130.00 paid for 89 + 59 of goods: by value, in cents that add up
    assert [(line.order_id, line.line_amount) for line in lines] == [
        ("E1", Decimal("78.18")),
        ("E1", Decimal("51.82")),
        ("E2", Decimal("59.00")),
    ]
    # E1 met again further down: reported, so the loader rejects the order whole
    assert [(e.row, e.order_id) for e in items if isinstance(e, RowError)] == [(5, "E1")]


def test_two_sizes_of_one_tmall_product_are_one_line_and_a_repeated_row_is_reported(tmp_path):
    """商家编码 names the product: two sizes in one order are one line of both; a row
    repeated as it was (same 商品属性) is still reported."""
    orders = (DATA / "tmall_orders.csv").read_bytes().decode("gb18030").splitlines()
    items = (DATA / "tmall_items.csv").read_bytes().decode("gb18030").splitlines()
    first = items[1]  # order 386131588164925948's silk pyjamas, 399.00, its 2 items 478.00
    other_size = first.replace("尺码:75B", "尺码:80B")
    (tmp_path / "o.csv").write_bytes("\r\n".join(orders[:3]).encode("gb18030"))
    (tmp_path / "i.csv").write_bytes(
        "\r\n".join([items[0], first, other_size, items[2], items[3], items[3]]).encode("gb18030")
    )
    result = list(read_orders([tmp_path / "o.csv", tmp_path / "i.csv"]))
    lines = [x for x in result if isinstance(x, OrderLine)]
    assert [(ln.order_id, ln.sku, ln.quantity, ln.unit_price) for ln in lines] == [
        ("386131588164925948", "SLP-SLK-05", 2, Decimal("399.00")),
        ("386131588164925948", "BRA-COT-02", 1, Decimal("79.00")),
        ("381562086820511244", "SLP-COT-06", 1, Decimal("259.00")),  # rejected by the loader
    ]
    # 478.00 was paid for 399 + 79 of goods listed: spread over 798 + 79 by value
    assert sum(ln.line_amount for ln in lines[:2]) == Decimal("478.00")
    errors = [(x.source, x.row, x.order_id) for x in result if isinstance(x, RowError)]
    assert errors[0] == ("i.csv", 6, "381562086820511244")  # the repeated row
    assert "与第 5 行重复" in next(x for x in result if isinstance(x, RowError)).reason
    assert not [e for e in errors if e[2] == "386131588164925948"]
    # the line of both sizes rejected: both rows are reported, and the order's row
    long_sku = "X" * 65
    (tmp_path / "i.csv").write_bytes(
        "\r\n".join(
            [items[0], *(row.replace("SLP-SLK-05", long_sku) for row in (first, other_size))]
        ).encode("gb18030")
    )
    result = list(read_orders([tmp_path / "o.csv", tmp_path / "i.csv"]))
    rows = [(x.source, x.row) for x in result if isinstance(x, RowError)]
    assert ("i.csv", 2) in rows and ("i.csv", 3) in rows and ("o.csv", 2) in rows
    said = next(x.reason for x in result if isinstance(x, RowError) and x.row == 3)
    assert said == f"与第 2 行是同一商品 {long_sku} 的另一款式，合为一行，一起未导入"


def test_tmall_orders_without_items_and_items_without_orders_are_reported(tmp_path):
    orders = (DATA / "tmall_orders.csv").read_bytes().decode("gb18030").splitlines()
    items = (DATA / "tmall_items.csv").read_bytes().decode("gb18030").splitlines()
    (tmp_path / "o.csv").write_bytes("\r\n".join(orders[:3]).encode("gb18030"))
    (tmp_path / "i.csv").write_bytes("\r\n".join([items[0], *items[4:6]]).encode("gb18030"))
    result = list(read_orders([tmp_path / "o.csv", tmp_path / "i.csv"]))
    assert [(type(x).__name__, x.source, x.row, x.order_id) for x in result] == [
        ("RowError", "i.csv", 2, "384933890131042790"),  # not in the order report
        ("RowError", "i.csv", 3, "384933890131042790"),
        ("RowError", "o.csv", 2, "386131588164925948"),  # no items
        ("RowError", "o.csv", 3, "381562086820511244"),
    ]
    assert "在订单报表中找不到" in result[0].reason and "没有宝贝行" in result[2].reason


def test_lines_are_immutable_order_lines():
    (line, *_), _ = _read("youzan_orders.csv")
    assert type(line) is OrderLine
    with pytest.raises(FrozenInstanceError):
        line.status = "cancelled"  # type: ignore[misc]
    fields = [getattr(line, name) for name in OrderLine.__slots__]
    assert OrderLine(*fields) == line and hash(OrderLine(*fields)) == hash(line)


# The sample exports with cells spoilt: what each channel's reader must survive.
SPOILT_CELLS = ["", "abc", "-1", "8x.00", "0", "1e3", "x" * 300, "2026-13-45", "交易关闭",
                "部分退款", "99999999999", "138****5601", " ", "3.86E+17"]  # fmt: skip
SPOILABLE = [
    ("generic_orders.csv", "utf-8", "sku"),
    ("douyin_orders.csv", "utf-8", None),
    ("youzan_orders.csv", "utf-8", "商品编码"),
    ("tmall_items.csv", "gb18030", "商家编码"),
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_spoilt_exports_give_errors_never_a_line_with_a_value_missing(tmp_path_factory, data):
    """A cell spoilt in an order of two lines (an amount, a price, a status) makes errors
    of its rows, and of the order's others whatever they lack because of it: never a
    line read with a value not known (the import failed on such a Youzan line)."""
    from contacts.order_files.lines import INVALID

    name, encoding, sku_column = data.draw(st.sampled_from(SPOILABLE))
    with open(DATA / name, encoding=encoding, newline="") as handle:
        rows = list(csv.reader(handle))
    if sku_column:  # a second line of one of the orders
        at = data.draw(st.integers(1, len(rows) - 1))
        rows.insert(at + 1, [*rows[at]])
        rows[at + 1][rows[0].index(sku_column)] = "ZZ-1"
    for _ in range(data.draw(st.integers(1, 3))):
        row, column = (
            data.draw(st.integers(1, len(rows) - 1)),
            data.draw(st.integers(0, len(rows[0]) - 1)),
        )
        rows[row][column] = data.draw(st.sampled_from(SPOILT_CELLS))
    folder = tmp_path_factory.mktemp("spoilt")
    with open(folder / name, "w", encoding=encoding, newline="") as handle:
        csv.writer(handle).writerows(rows)
    paths = [folder / name]
    if name == "tmall_items.csv":
        paths.append(DATA / "tmall_orders.csv")
    try:
        items = list(read_orders(paths))
    except OrderFileError:  # the header spoilt: the file is refused whole, with a reason
        return
    for item in items:
        if isinstance(item, OrderLine):
            missing = [f for f in OrderLine.__slots__ if getattr(item, f) is INVALID]
            assert not missing, (item, missing)


# -- money spread over lines ---------------------------------------------------------------

cents = st.integers(min_value=0, max_value=10**9).map(lambda c: Decimal(c) / 100)


@given(weights=st.lists(cents, min_size=1, max_size=8), data=st.data())
def test_allocation_adds_up_exactly_and_never_exceeds_a_line(weights, data):
    total = data.draw(st.integers(0, int(sum(weights) * 100)).map(lambda c: Decimal(c) / 100))
    shares = allocate(total, weights)
    assert sum(shares) == total
    assert all(share.as_tuple().exponent == -2 for share in shares)
    if sum(weights):
        assert all(0 <= share <= weight for share, weight in zip(shares, weights, strict=True))
    refunds = refund_shares(total, weights)
    assert sum(refunds) == total
    assert all(0 <= r <= w for r, w in zip(refunds, weights, strict=True)) or not sum(weights)


# -- streaming: memory and speed ----------------------------------------------------------------

STREAM_LINES = 200_000


@pytest.fixture(scope="module")
def big_generic_file(tmp_path_factory) -> Path:
    """200,000 generic lines of 40,000 buyers, written with the csv module."""
    path = tmp_path_factory.mktemp("orders") / "big.csv"
    skus = [
        ("BRA-ICE-01", "冰丝无痕文胸 基础款", "89.00"),
        ("SLP-SLK-05", "真丝睡衣 国风主题款", "399.00"),
    ]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GENERIC_COLUMNS)
        for n in range(STREAM_LINES):
            sku, name, price = skus[n % 2]
            writer.writerow(
                [f"ORD{n // 2:09d}", "miniapp", "", "paid",
                 f"2026-{n % 12 + 1:02d}-{n % 28 + 1:02d}T{n % 24:02d}:15:29+08:00",
                 f"138{n % 40_000:08d}", f"oUnion{n % 40_000:06d}", "", "王芳", sku, name,
                 "文胸", "冰丝", "基础款", "1", price, price, "0.00", "SH01", "guide_001"]
            )  # fmt: skip
    return path


def test_a_large_file_streams_in_flat_memory(big_generic_file):
    tracemalloc.start()
    try:
        count = sum(1 for item in read_orders([big_generic_file]) if isinstance(item, OrderLine))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\nread_orders: peak {peak / 1e6:.1f} MB traced for {count:,} lines")  # noqa: T201
    assert count == STREAM_LINES
    # The file is 33 MB; what is held is one row and the skus of one order at a time.
    assert peak < 10e6


# -- property: a valid generic row round-trips ----------------------------------------------------

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
    max_size=12,
).filter(lambda s: s == s.strip() and not s.startswith(("'", "=")))
ids = text.filter(bool)
amounts = st.integers(min_value=0, max_value=10**12 - 1).map(lambda c: Decimal(c) / 100)
phones = st.one_of(
    st.just(""),
    st.from_regex(r"1[0-9]{10}", fullmatch=True),
    st.from_regex(r"1[0-9]{2}\*{4}[0-9]{4}", fullmatch=True),
)
# naive bounds, as hypothesis wants them; the time zone is drawn below
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))  # noqa: DTZ001
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@st.composite
def generic_lines(draw, row: int, order_id: str, sku: str) -> OrderLine:
    status = draw(st.sampled_from(["paid", "cancelled", "refunded", "partially_refunded"]))
    paid_at = draw(st.one_of(st.none(), moments)) if status == "cancelled" else draw(moments)
    if paid_at is not None:
        paid_at = paid_at.replace(tzinfo=draw(st.one_of(st.none(), offsets)))
    line_amount = draw(amounts)
    refund = draw(amounts.filter(lambda a: a <= line_amount))
    buyer = draw(st.tuples(phones, text, text).filter(any))
    return OrderLine(
        row=row,
        source="roundtrip.csv",
        channel=draw(st.sampled_from(ORDER_CHANNELS)),
        order_id=order_id,
        parent_order_id=draw(text),
        status=status,
        paid_at=paid_at,
        buyer_phone=buyer[0],
        buyer_unionid=buyer[1],
        buyer_id=buyer[2],
        buyer_name=draw(text),
        sku=sku,
        product_name=draw(text),
        category=draw(text),
        material=draw(text),
        style=draw(text),
        quantity=draw(st.integers(min_value=1, max_value=2_147_483_647)),
        unit_price=draw(amounts),
        line_amount=line_amount,
        # a refunded line is refunded in full: one without an amount reads so, one with
        # less as partially refunded (`build_line`)
        refund_amount=line_amount if status == "refunded" else refund,
        store_code=draw(text),
        guide_userid=draw(text),
    )


@st.composite
def generic_files(draw) -> list[OrderLine]:
    keys = draw(st.lists(st.tuples(ids, ids), min_size=1, max_size=4, unique=True))
    return [draw(generic_lines(row, *key)) for row, key in enumerate(keys, start=2)]


def _as_cell(line: OrderLine, name: str) -> str:
    value = getattr(line, name)
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=generic_files(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_valid_generic_rows_round_trip_unchanged(tmp_path_factory, lines, encoding):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(GENERIC_COLUMNS)
    for line in lines:
        writer.writerow([_as_cell(line, name) for name in GENERIC_COLUMNS])
    try:
        data = buffer.getvalue().encode(encoding)
    except UnicodeEncodeError:
        return  # GB18030 covers all of Unicode but unpaired surrogates, excluded above
    path = tmp_path_factory.mktemp("roundtrip") / "roundtrip.csv"
    path.write_bytes(data)
    expected = [
        line
        if line.paid_at is None or line.paid_at.tzinfo
        else OrderLine(**{**_fields(line), "paid_at": line.paid_at.replace(tzinfo=SHANGHAI)})
        for line in lines
    ]
    assert list(read_orders([path], "generic")) == expected


def _fields(line: OrderLine) -> dict:
    return {name: getattr(line, name) for name in OrderLine.__slots__}


@pytest.mark.parametrize(
    "cell", ["13811112222/13933334444", "138 1111 2222 3", "+86 1381111222", "861381111222x"]
)
def test_an_unreadable_phone_is_quoted_masked(cell):
    """Managers read the error report; only operators may see the row's full cells."""
    with pytest.raises(FieldError) as raised:
        parse_phone(cell)
    reason = str(raised.value.args[0])
    quoted = reason.split("：", 1)[1].split("（")[0]
    digits = [c for c in cell if c.isdigit()]
    assert [c for c in quoted if c.isdigit()] == digits[:3] + digits[-4:]
    # Everything but the digits stays as written, the digits hidden one for one.
    shape = "".join("#" if c.isdigit() or c == "*" else c for c in quoted)
    assert shape == "".join("#" if c.isdigit() else c for c in cell)
