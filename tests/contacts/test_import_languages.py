"""An import's reasons are made on a worker and read in the browser: each is stored with
how it was made, and shown in the reader's language."""

import csv
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import translation

from contacts import services
from contacts.models import MergeSuggestion, Order, OrderImport
from contacts.order_files import OrderFileError
from contacts.order_files.words import ORDER_STATUS_WORDS
from scrm.reasons import Reason, reason_text

DATA = Path(__file__).resolve().parents[1] / "data" / "orders"
CJK = re.compile(r"[\u4e00-\u9fff]")
GENERIC = (
    "order_id,channel,parent_order_id,status,paid_at,buyer_phone,buyer_unionid,buyer_id,"
    "buyer_name,sku,product_name,category,material,style,quantity,unit_price,line_amount,"
    "refund_amount,store_code,guide_userid"
)


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([GENERIC, *rows]) + "\n", encoding="utf-8")
    return path


def test_a_reason_made_again_from_its_spec_is_the_same_text():
    reason = Reason(
        "订单 {order} 的{rows}有错误，整单未导入",
        order="T1",
        rows=Reason("{rows}等 {count} 行", rows=[Reason("第 {rows} 行", rows=[3, 4])], count=7),
    )
    assert reason == "订单 T1 的第 3、4 行等 7 行有错误，整单未导入"
    with translation.override("zh-hans"):
        assert reason_text(reason.spec()) == reason
    with translation.override("en"):
        english = reason_text(reason.spec())
    assert english == (
        "Order T1 has errors in row 3, 4 and others, 7 rows in all:"
        " the whole order was not imported"
    )


@pytest.mark.django_db
def test_every_stored_reason_reads_back_as_made_and_in_english_without_chinese(tmp_path):
    long_order = _write(
        tmp_path / "long.csv",
        [
            "L1,pos,,paid,2026-04-01T10:00:00+08:00,13812345601,,,x,A,x,,,,1,9.00,9.00,0,,",
            *(
                f"L1,pos,,paid,2026-04-01T10:00:00+08:00,13812345601,,,x,B{n},x,,,,0,9.00,9.00,0,,"
                for n in range(6)
            ),
        ],
    )
    paths = [DATA / "generic_orders_with_bad_rows.csv", long_order]
    record, report = services.orders_import(paths=paths, channel="generic")
    assert report.rejected == 9 + 7
    for error in record.errors:
        assert error["reason_spec"], error  # every reason keeps how it was made
        with translation.override("zh-hans"):
            assert reason_text(error["reason_spec"]) == error["reason"]
    with translation.override("en"):
        english = [error["reason"] for error in record.errors_by_row]
    # what is left in Chinese is the file's own text: the cells quoted
    with open(paths[0], encoding="utf-8", newline="") as handle:
        chinese_cells = {cell for row in csv.reader(handle) for cell in row if CJK.search(cell)}
    for reason in english:
        for cell in chinese_cells:
            reason = reason.replace(cell, "")
        assert not CJK.search(reason), reason
    assert any(r.startswith("Unit price is not a valid amount: 8x.00 (should be") for r in english)
    assert any(r.startswith("Order L1 has errors in row 3, 4, 5, 6, 7 and others") for r in english)


@pytest.mark.django_db
def test_the_import_page_and_its_download_speak_the_readers_language(client_for, operator):
    record, _ = services.orders_import(
        paths=[DATA / "generic_orders_with_bad_rows.csv"], channel="generic"
    )
    client = client_for(operator)
    page = reverse("import_detail", args=[record.pk])
    english = client.get(page, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    chinese = client.get(page, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    wanted = "Channel not recognised: mars (should be one of tmall, jd, douyin, youzan, miniapp"
    assert wanted in english and "渠道无法识别" not in english
    assert "渠道无法识别：mars（应为 tmall、jd、douyin、youzan、miniapp" in chinese
    download = client.get(
        reverse("import_rejected_rows", args=[record.pk, 0]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode("utf-8-sig")
    assert "quantity: The quantity must be a positive whole number: -2" in download
    errors = client.get(reverse("import_errors", args=[record.pk]), HTTP_ACCEPT_LANGUAGE="en")
    header = next(csv.reader(errors.content.decode("utf-8-sig").splitlines()))
    assert header == ["File", "Row", "Order number", "Column", "Reason"]
    # the language switcher names each language in itself, whichever the page is in
    for text in (english, chinese):
        assert '<option value="en" lang="en"' in text and ">English</option>" in text
        assert ">简体中文</option>" in text and "英语" not in text


@pytest.mark.django_db
def test_a_failed_import_says_why_in_the_readers_language(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(OrderFileError):
        services.orders_import(paths=[empty], channel=None)
    record = OrderImport.objects.get()
    assert record.failure == "empty.csv：文件是空的"
    with translation.override("en"):
        assert record.failure_text == "empty.csv: the file is empty"


@pytest.mark.django_db
@pytest.mark.parametrize("blank_rows", [0, 3])
def test_a_file_of_a_header_alone_fails_and_says_so(tmp_path, blank_rows):
    path = _write(tmp_path / "nothing.csv", [","] * blank_rows)
    with pytest.raises(OrderFileError):
        services.orders_import(paths=[path], channel="generic")
    record = OrderImport.objects.get()
    assert record.status == OrderImport.Status.FAILED
    assert record.failure == "nothing.csv：只有表头，没有订单行（导出时选的时间范围里可能没有订单）"
    with translation.override("en"):
        assert record.failure_text.startswith("nothing.csv: a header and no order rows")
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_unmatched_and_suggestion_reasons_in_english(client_for, operator, tmp_path):
    known = "K1,pos,,paid,2026-04-01T10:00:00+08:00,13812345601,,,王芳,A,x,,,,1,9.00,9.00,0,,"
    services.orders_import(paths=[_write(tmp_path / "known.csv", [known])], channel="generic")
    masked = "M1,pos,,paid,2026-04-02T10:00:00+08:00,138****5601,,,王*,A,x,,,,1,9.00,9.00,0,,"
    services.orders_import(paths=[_write(tmp_path / "masked.csv", [masked])], channel="generic")
    order = Order.objects.get(channel_order_id="M1")
    assert order.unmatched_reason == "只有打码手机号，无法自动识别买家"
    suggestion = MergeSuggestion.objects.get(order=order)
    assert suggestion.reason == "打码手机号 138****5601 与姓名 王* 只匹配到这一位客户"
    body = (
        client_for(operator)
        .get(reverse("unmatched_orders"), HTTP_ACCEPT_LANGUAGE="en")
        .content.decode()
    )
    assert "Only a masked phone number: the buyer cannot be recognised automatically" in body
    assert "The masked phone 138****5601 and the name 王* fit this customer only" in body


@pytest.mark.django_db
def test_a_channel_exports_reasons_in_english_keep_only_the_files_words(tmp_path):
    """Tmall's reasons name its columns, quote its cells and list its status words,
    which stay as Tmall writes them; the rest is English."""
    with open(DATA / "tmall_items.csv", encoding="gb18030", newline="") as handle:
        items = list(csv.reader(handle))
    with open(DATA / "tmall_orders.csv", encoding="gb18030", newline="") as handle:
        orders = list(csv.reader(handle))
    items[1][3] = "两件"  # 购买数量
    orders[2][5] = "待发货?"  # 订单状态
    for name, rows in (("tmall_items.csv", items), ("tmall_orders.csv", orders)):
        with open(tmp_path / name, "w", encoding="gb18030", newline="") as handle:
            csv.writer(handle).writerows(rows)
    record, report = services.orders_import(
        paths=[tmp_path / "tmall_orders.csv", tmp_path / "tmall_items.csv"], channel="tmall"
    )
    assert report.rejected >= 4
    words = {word for row in items + orders for word in row if CJK.search(word)}
    words |= set(ORDER_STATUS_WORDS["tmall"])  # the words a Tmall export may use
    with translation.override("en"):
        english = [error["reason"] for error in record.errors_by_row]
    for reason in english:
        for word in sorted(words, key=len, reverse=True):
            reason = reason.replace(word, "")
        assert not CJK.search(reason), reason
    assert any(r.startswith("Order status not recognised: 待发货?") for r in english)
