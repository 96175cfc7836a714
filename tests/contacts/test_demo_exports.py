"""The demo's channel exports, through the real importer: a store's export with mistakes
(its good orders load, every bad row is reported, an order with one bad line is rejected
whole) and a Douyin export with masked receivers (known customers' orders become merge
suggestions, strangers' orders wait in the unmatched list). Expected counts are worked
out from the rows written, not from the importer."""

import csv
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from contacts import services
from contacts.models import CustomerIdentity, MergeSuggestion, Order
from contacts.order_generator import (
    DOUYIN_EXPORT_COLUMNS,
    GENERIC_COLUMNS,
    STORE_MISTAKES,
    douyin_export_rows,
    make_buyers,
    store_export_rows,
)
from contacts.phones import phone_hash, phone_normalise

pytestmark = pytest.mark.django_db

END = datetime(2026, 11, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


def _write(path: Path, columns: list[str], rows, encoding: str = "utf-8") -> list[dict]:
    rows = list(rows)
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rows


@pytest.fixture
def buyers():
    return make_buyers(seed=3, count=12, stores=["S01"])


@pytest.fixture
def store_import(tmp_path, buyers):
    rows = _write(tmp_path / "门店手工登记.csv", GENERIC_COLUMNS, store_export_rows(
        seed=3, buyers=buyers, end=END
    ))  # fmt: skip
    record, report = services.orders_import(paths=[tmp_path / "门店手工登记.csv"], channel=None)
    return rows, record, report


def test_a_store_export_loads_its_good_orders_and_reports_every_bad_row(store_import, buyers):
    rows, record, report = store_import
    bad = {}  # file row (the header is row 1) → the column at fault
    for number, row in enumerate(rows, start=2):
        for column, value in STORE_MISTAKES:
            if row[column] == value:
                bad[number] = column
    sibling = {  # the good line of an order that has a bad one
        number
        for number, row in enumerate(rows, start=2)
        if number not in bad and any(rows[n - 2]["order_id"] == row["order_id"] for n in bad)
    }
    assert len(bad) == len(STORE_MISTAKES) and len(sibling) == 1
    assert record.channel == "generic" and report.inserted == len(buyers)  # detected
    assert report.rejected == len(bad) + len(sibling)
    reported = {error["row"]: error["column"] for error in report.errors}
    assert reported == bad | {number: "order_id" for number in sibling}
    assert all(error["reason"] for error in report.errors)
    assert [error["row"] for error in record.errors_by_row] == sorted(reported)  # as in the file
    assert Order.objects.filter(channel="pos").count() == len(buyers)
    assert not Order.objects.filter(channel_order_id__startswith="POSX").exists()


def test_a_douyin_export_suggests_merges_for_known_customers_and_lists_strangers(
    tmp_path, store_import, buyers, client_for, operator
):
    customer_of = dict(
        CustomerIdentity.objects.filter(
            kind="phone_hash",
            value__in=[phone_hash(phone_normalise(b.phone)) for b in buyers],
        ).values_list("value", "customer_id")
    )
    assert len(customer_of) == len(buyers)  # each of them is a customer with a phone
    path = tmp_path / "抖音订单导出.csv"
    rows = _write(path, DOUYIN_EXPORT_COLUMNS, douyin_export_rows(
        seed=3, buyers=buyers, strangers=5, end=END
    ), encoding="utf-8-sig")  # fmt: skip
    masked = {f"{b.phone[:3]}****{b.phone[7:]}": b for b in buyers}
    expected = {  # sub-order → the customer it should be suggested for
        row["子订单编号"]: customer_of[
            phone_hash(phone_normalise(masked[row["收件人手机号"]].phone))
        ]
        for row in rows
        if row["收件人手机号"] in masked
    }
    strangers = {row["子订单编号"] for row in rows} - set(expected)
    assert expected and strangers

    record, report = services.orders_import(paths=[path], channel=None)
    assert record.channel == "douyin" and report.rejected == 0  # detected
    listing = client_for(operator).get(reverse("import_list")).content.decode()
    assert f'href="{reverse("import_detail", args=[record.pk])}"' in listing
    assert "<td>抖音</td>" in listing and "<td>通用格式</td>" in listing
    assert report.inserted == len(expected) + len(strangers)
    orders = Order.objects.filter(channel="douyin")
    assert not orders.filter(customer__isnull=False).exists()  # a masked phone links nothing
    suggested = dict(
        MergeSuggestion.objects.filter(status="pending").values_list(
            "order__channel_order_id", "customer_id"
        )
    )
    assert suggested == expected
    for order in orders.filter(channel_order_id__in=strangers):
        assert order.unmatched_reason == "只有打码手机号，无法自动识别买家"

    _, again = services.orders_import(paths=[path], channel=None)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, report.inserted)
    assert MergeSuggestion.objects.count() == len(expected)
