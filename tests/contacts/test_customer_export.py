"""The console customer list's export (written by a worker, tests/scrm/test_exports.py):
the filtered rows, masked phones, and who may ask for it."""

import csv
import io
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from django.urls import reverse

from contacts import views
from contacts.facts import facts_refresh
from contacts.models import Customer, CustomerIdentity, Guide
from contacts.phones import phone_hash, phone_mask, phone_normalise
from scrm.models import Export
from tests.contacts.factories import OrderFactory, RelationshipFactory
from tests.helpers import exported

pytestmark = pytest.mark.django_db

HEADER = (
    *("客户ID", "姓名", "手机号", "跟进导购", "私域会员", "入会时间"),
    *("购买天数", "订单数", "净销售额（元）", "最近购买"),
)
NAME = 1  # the name's column


def _phone(customer: Customer, number: str) -> None:
    e164 = phone_normalise(number)
    CustomerIdentity.objects.create(
        customer=customer, kind="phone_hash", value=phone_hash(e164), display=phone_mask(e164)
    )


@pytest.fixture
def book(guide_user, other_guide_user):
    """Three customers: 林一 (both guides, a phone, two purchase days at POS), 林二 (guide1,
    one JD order), 王三 (once guide2's, who was deleted: not a member, never bought)."""
    mine = Guide.objects.get(wecom_userid="guide0001")
    theirs = Guide.objects.get(wecom_userid="guide0002")
    first = RelationshipFactory(guide=mine, customer__name="林一").customer
    RelationshipFactory(guide=theirs, customer=first)
    second = RelationshipFactory(guide=mine, customer__name="林二").customer
    third = RelationshipFactory(
        guide=theirs, customer__name="王三", is_active=False, ended_by="customer"
    ).customer
    Customer.objects.filter(pk=third.pk).update(is_member=False)
    first.relationships.filter(guide=mine).update(added_at=datetime(2025, 6, 1, tzinfo=UTC))
    first.relationships.filter(guide=theirs).update(added_at=datetime(2025, 7, 1, tzinfo=UTC))
    Customer.objects.filter(pk=first.pk).update(joined_at=datetime(2026, 1, 3, tzinfo=UTC))
    Customer.objects.filter(pk=second.pk).update(joined_at=datetime(2026, 1, 2, tzinfo=UTC))
    Customer.objects.filter(pk=third.pk).update(joined_at=datetime(2026, 1, 1, tzinfo=UTC))
    _phone(first, "13800135601")
    for day, amount in ((3, "300.00"), (9, "99.50")):
        OrderFactory(
            customer=first,
            channel="pos",
            paid_at=datetime(2026, 3, day, 4, tzinfo=UTC),
            amount=Decimal(amount),
        )
    OrderFactory(
        customer=second, channel="jd", paid_at=datetime(2026, 2, 1, 4, tzinfo=UTC), amount=89
    )
    facts_refresh()
    return {"first": first, "second": second, "third": third}


def _rows(response) -> list[tuple]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    body = b"".join(response.streaming_content)
    sheet = openpyxl.load_workbook(io.BytesIO(body), read_only=True).active
    # Read-only mode drops a row's trailing empty cells: pad to the header's width.
    return [
        tuple(row) + (None,) * (len(HEADER) - len(row)) for row in sheet.iter_rows(values_only=True)
    ]


def _wall(moment: datetime) -> datetime:
    """Shanghai wall-clock time, as Excel (no zones) shows it."""
    return moment.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)


def _normalised(row: tuple) -> tuple:
    """Cells as Python compares them: money as Decimal, a day as a date; the customer's
    number and join time are checked on their own."""
    _pk, name, phone, guides, member, _joined, days, orders, revenue, last = row
    return (
        name,
        phone,
        guides,
        member,
        days,
        orders,
        Decimal(str(revenue)),
        last.date() if isinstance(last, datetime) else last,
    )


def test_operator_exports_every_listed_customer_newest_member_first(client_for, operator, book):
    rows = _rows(exported(client_for(operator), reverse("customer_export")))
    assert rows[0] == HEADER
    assert [_normalised(row) for row in rows[1:]] == [
        ("林一", "138****5601", "张晓、陈静", "是", 2, 2, Decimal("399.50"), date(2026, 3, 9)),
        ("林二", None, "张晓", "是", 1, 1, Decimal("89"), date(2026, 2, 1)),
        ("王三", None, None, "否", 0, 0, Decimal("0"), None),  # an ended guide is not listed
    ]
    # The customer's number, and when they joined in Shanghai time (Excel has no zones).
    assert [(row[0], row[5]) for row in rows[1:]] == [
        (book["first"].pk, _wall(datetime(2026, 1, 3, tzinfo=UTC))),
        (book["second"].pk, _wall(datetime(2026, 1, 2, tzinfo=UTC))),
        (book["third"].pk, _wall(datetime(2026, 1, 1, tzinfo=UTC))),
    ]


def test_money_is_a_number_in_excels_money_format(client_for, operator, book):
    response = exported(client_for(operator), reverse("customer_export"))
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    assert sheet.cell(row=1, column=9).value == "净销售额（元）"
    cells = [sheet.cell(row=row, column=9) for row in (2, 3, 4)]
    assert [cell.value for cell in cells] == [399.5, 89, 0]
    assert {cell.number_format for cell in cells} == {"#,##0.00"}


def test_the_export_keeps_the_pages_filters_and_sort(client_for, operator, book):
    client = client_for(operator)
    by_channel = _rows(exported(client, reverse("customer_export"), {"channel": "pos"}))
    assert [row[NAME] for row in by_channel[1:]] == ["林一"]
    bought = _rows(
        exported(client, reverse("customer_export"), {"revenue_min": "1", "sort": "joined_at"})
    )
    assert [row[NAME] for row in bought[1:]] == ["林二", "林一"]
    guide = Guide.objects.get(wecom_userid="guide0002")
    followed = _rows(exported(client, reverse("customer_export"), {"guide": guide.pk}))
    assert [row[NAME] for row in followed[1:]] == ["林一"]
    nobody = _rows(exported(client, reverse("customer_export"), {"channel": "miniapp"}))
    assert nobody == [HEADER]


def test_the_list_asks_for_its_export_with_its_filters(client_for, operator, book):
    page = client_for(operator).get(reverse("customers"), {"channel": "pos", "revenue_min": "1"})
    html = page.content.decode()
    assert f'action="{reverse("customer_export")}"' in html
    assert 'name="query" value="channel=pos&amp;revenue_min=1"' in html


def test_csv_holds_the_same_rows(client_for, operator, book):
    response = exported(client_for(operator), reverse("customer_export"), file_format="csv")
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == HEADER
    assert rows[1] == [
        *(str(book["first"].pk), "林一", "138****5601", "张晓、陈静", "是", "2026-01-03 08:00"),
        *("2", "2", "399.50", "2026-03-09"),
    ]
    assert [row[NAME] for row in rows[2:]] == ["林二", "王三"]


def test_the_full_phone_is_nowhere_in_the_file(client_for, operator, book):
    response = exported(client_for(operator), reverse("customer_export"))
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        text = "".join(archive.read(name).decode() for name in archive.namelist())
    assert "138****5601" in text
    assert "13800135601" not in text and "8613800135601" not in text


def test_rows_read_in_chunks_are_each_written_once_with_their_own_summary(
    client_for, operator, book, monkeypatch
):
    monkeypatch.setattr(views, "EXPORT_CHUNK", 2)  # three customers: two chunks
    rows = _rows(exported(client_for(operator), reverse("customer_export")))
    assert [(row[NAME], row[3], row[6]) for row in rows[1:]] == [
        ("林一", "张晓、陈静", 2),
        ("林二", "张晓", 1),
        ("王三", None, 0),
    ]


def test_console_roles_only(client, client_for, manager, guide_user, book):
    assert _rows(exported(client_for(manager), reverse("customer_export")))[0] == HEADER
    client.logout()
    asked = {"query": "", "format": "xlsx"}
    assert client_for(guide_user).post(reverse("customer_export"), asked).status_code == 403
    client.logout()
    anonymous = client.post(reverse("customer_export"), asked)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    assert client_for(manager).get(reverse("customer_export")).status_code == 405


def test_an_unknown_format_or_a_made_up_filter_queues_nothing(client_for, operator, book):
    client = client_for(operator)
    url = reverse("customer_export")
    assert client.post(url, {"query": "", "format": "pdf"}).status_code == 400
    assert client.post(url, {"query": "guide=999999", "format": "csv"}).status_code == 404
    assert client.post(url, {"query": "guide=abc", "format": "csv"}).status_code == 404
    assert not Export.objects.exists()


def test_a_name_that_looks_like_a_formula_is_exported_as_text(client_for, operator, book):
    """Nicknames are anyone's to choose: one beginning with = must not run in Excel."""
    name = '=HYPERLINK("http://example.com/x","点我")'
    Customer.objects.filter(pk=book["second"].pk).update(name=name)
    client = client_for(operator)
    body = b"".join(exported(client, reverse("customer_export")).streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert "<f>" not in archive.read("xl/worksheets/sheet1.xml").decode()
    rows = _rows(exported(client, reverse("customer_export")))
    assert [row[NAME] for row in rows[1:]] == ["林一", name, "王三"]


def test_a_filter_the_list_ignores_exports_nothing(client_for, operator, book):
    """The list names the filter it ignores and shows the rest; an export of "the
    filtered list" would be the whole list: refused until the filter is corrected."""
    client = client_for(operator)
    page = client.get(reverse("customers"), {"revenue_min": "abc"}).content.decode()
    assert "这些条件无效，已忽略" in page and 'id="customer-export"' not in page
    response = client.post(
        reverse("customer_export"), {"query": "revenue_min=abc", "format": "xlsx"}
    )
    assert response["Location"] == reverse("customers") + "?revenue_min=abc"
    assert "筛选条件有误" in client.get(response["Location"]).content.decode()
    assert not Export.objects.exists()


def test_an_export_is_named_in_the_readers_language(client_for, operator, book):
    client = client_for(operator)
    exported(client, reverse("customer_export"), {"channel": "pos"})
    exported(client, reverse("customer_export"), {"sort": "name"})
    english = client.get(reverse("exports"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    chinese = client.get(reverse("exports")).content.decode()
    assert "Filtered list" in english and "All customers" in english
    assert "筛选结果" in chinese and "全部客户" in chinese and "Filtered list" not in chinese
