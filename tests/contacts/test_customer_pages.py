"""Customer list and 360° pages, and the customer API: who sees what, and paging."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contacts.models import Customer, CustomerIdentity, Guide
from contacts.phones import phone_hash, phone_mask, phone_normalise
from tests.contacts.factories import OrderFactory, RelationshipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def book(guide_user, other_guide_user):
    """Three customers of guide1, two of guide2, one who deleted guide1."""
    mine = Guide.objects.get(wecom_userid="guide0001")
    theirs = Guide.objects.get(wecom_userid="guide0002")
    own = [RelationshipFactory(guide=mine).customer for _ in range(3)]
    other = [RelationshipFactory(guide=theirs).customer for _ in range(2)]
    churned = RelationshipFactory(guide=mine, is_active=False, ended_by="customer").customer
    churned.is_member = False
    churned.save()
    return {"own": own, "other": other, "churned": churned}


def _names(response) -> set[str]:
    return {customer.name for customer in response.context["customers"]}


def test_operator_sees_every_customer(client_for, operator, book):
    response = client_for(operator).get(reverse("customers"))
    assert response.status_code == 200
    assert response.context["total"] == 6


def test_guide_list_shows_only_their_live_customers(client_for, guide_user, book):
    response = client_for(guide_user).get(reverse("guide_customers"))
    assert _names(response) == {c.name for c in book["own"]}


def test_guide_cannot_open_another_guides_customer(client_for, guide_user, book):
    client = client_for(guide_user)
    assert (
        client.get(reverse("guide_customer_detail", args=[book["other"][0].pk])).status_code == 404
    )
    assert (
        client.get(reverse("guide_customer_detail", args=[book["churned"].pk])).status_code == 404
    )
    assert client.get(reverse("guide_customer_detail", args=[book["own"][0].pk])).status_code == 200
    assert client.get(reverse("customer_detail", args=[book["own"][0].pk])).status_code == 403


def test_api_scopes_guides_to_their_customers(client_for, guide_user, book):
    client = client_for(guide_user)
    listing = client.get(reverse("customer-list")).json()
    assert {row["id"] for row in listing["results"]} == {c.pk for c in book["own"]}
    assert client.get(reverse("customer-detail", args=[book["other"][0].pk])).status_code == 404


def test_api_gives_operator_everything_with_detail(client_for, operator, book):
    client = client_for(operator)
    assert client.get(reverse("customer-list")).json()["count"] == 6
    detail = client.get(reverse("customer-detail", args=[book["churned"].pk])).json()
    assert detail["relationships"][0]["is_active"] is False
    assert detail["relationships"][0]["guide_userid"] == "guide0001"


def test_filters(client_for, operator, book):
    client = client_for(operator)
    mine = Guide.objects.get(wecom_userid="guide0001")
    by_guide = client.get(reverse("customers"), {"guide": mine.pk})
    assert _names(by_guide) == {c.name for c in book["own"]}
    churned = client.get(reverse("customers"), {"status": "churned"})
    assert _names(churned) == {book["churned"].name}
    members = client.get(reverse("customers"), {"status": "member"})
    assert len(members.context["customers"]) == 5


def test_search_by_phone_shows_it_masked(client_for, operator, book):
    customer = book["own"][1]
    e164 = phone_normalise("138 0013 5601")
    CustomerIdentity.objects.create(
        customer=customer, kind="phone_hash", value=phone_hash(e164), display=phone_mask(e164)
    )
    client = client_for(operator)
    found = client.get(reverse("customers"), {"q": "13800135601"})
    assert _names(found) == {customer.name}
    page = client.get(reverse("customer_detail", args=[customer.pk])).content.decode()
    assert "138****5601" in page and "13800135601" not in page


def test_a_guide_cannot_try_out_the_numbers_a_masked_phone_may_be(
    client_for, guide_user, operator, book
):
    """A guide sees 138****5601; searching the 10,000 numbers it may be would give the
    full number away. Past the hour's phone searches, the API and the page refuse."""
    from contacts.listing import GUIDE_PHONE_SEARCHES

    customer = book["own"][0]
    e164 = phone_normalise("13800135601")
    CustomerIdentity.objects.create(
        customer=customer, kind="phone_hash", value=phone_hash(e164), display=phone_mask(e164)
    )
    client = client_for(guide_user)
    url = reverse("customer-list")
    for n in range(GUIDE_PHONE_SEARCHES.per_hour):
        assert client.get(url, {"q": f"1380013{n:04d}"}).status_code == 200
    refused = client.get(url, {"q": "13800135601"})
    assert refused.status_code == 429 and "Retry-After" in refused
    assert "一小时内最多按手机号搜索" in refused.json()["detail"]
    page = client.get(reverse("guide_customers"), {"q": "138 0013 5601"})
    assert _names(page) == set() and "一小时内最多按手机号搜索" in page.content.decode()
    # searching by name goes on; an operator's phone searches are not limited
    assert client.get(url, {"q": customer.name}).json()["count"] >= 1
    found = client_for(operator).get(url, {"q": "13800135601"}).json()
    assert [row["id"] for row in found["results"]] == [customer.pk]


def test_search_by_name_and_external_id(client_for, operator, book):
    client = client_for(operator)
    customer = book["other"][0]
    assert _names(client.get(reverse("customers"), {"q": customer.name[1:]})) >= {customer.name}
    assert _names(client.get(reverse("customers"), {"q": customer.external_userid})) == {
        customer.name
    }


@pytest.mark.parametrize("sort", ["-joined_at", "joined_at", "name", "-created_at"])
def test_keyset_paging_walks_every_customer_once(client_for, operator, guide_user, sort):
    guide = Guide.objects.get(wecom_userid="guide0001")
    expected = {RelationshipFactory(guide=guide).customer.pk for _ in range(120)}
    # Some customers share a join and creation time, and one has none: the tie-breaks.
    tied = sorted(expected)[:5]
    first = Customer.objects.get(pk=tied[0])
    Customer.objects.filter(pk__in=tied).update(
        joined_at=first.joined_at, created_at=first.created_at, name=first.name
    )
    Customer.objects.filter(pk=sorted(expected)[5]).update(joined_at=None)
    client = client_for(operator)
    seen: list[int] = []
    url = reverse("customers") + f"?sort={sort}"
    pages = 0
    while url:
        response = client.get(url)
        seen += [customer.pk for customer in response.context["customers"]]
        cursor = response.context["next_cursor"]
        url = reverse("customers") + f"?sort={sort}&after={cursor}" if cursor else None
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == expected


def test_list_page_query_count_does_not_grow_with_rows(client_for, operator, guide_user):
    guide = Guide.objects.get(wecom_userid="guide0001")
    for _ in range(60):
        RelationshipFactory(guide=guide)
    client = client_for(operator)
    client.get(reverse("customers"))  # warm the session and permission caches
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("customers")).status_code == 200
    # a fixed number: the page, its count, its facts, phones and guides, the filters' lists
    # and the manual tags the operator may add to the customers the filters select
    assert len(queries) <= 14, [q["sql"][:80] for q in queries]


def test_search_by_order_number_finds_its_customer(client_for, operator, guide_user, book):
    mine, theirs = book["own"][0], book["other"][0]
    OrderFactory(customer=mine, channel="douyin", channel_order_id="6945267915516643351")
    OrderFactory(customer=theirs, channel="jd", channel_order_id="JD0001")
    client = client_for(operator)
    assert _names(client.get(reverse("customers"), {"q": "6945267915516643351"})) == {mine.name}
    assert _names(client.get(reverse("customers"), {"q": "JD0001"})) == {theirs.name}
    assert _names(client.get(reverse("customers"), {"q": "JD000"})) == set()  # exact only
    OrderFactory(customer=theirs, channel="pos", channel_order_id="T13812345678")
    assert _names(client.get(reverse("customers"), {"q": "T13812345678"})) == {theirs.name}
    guide = client_for(guide_user)  # a guide finds only their own customers
    assert _names(guide.get(reverse("guide_customers"), {"q": "JD0001"})) == set()
    assert _names(guide.get(reverse("guide_customers"), {"q": "6945267915516643351"})) == {
        mine.name
    }


def test_search_by_unionid_and_channel_buyer_id(client_for, operator, guide_user, book):
    mine, theirs = book["own"][0], book["other"][0]
    CustomerIdentity.objects.create(customer=mine, kind="unionid", value="oUnion_wf01")
    CustomerIdentity.objects.create(customer=theirs, kind="buyer_id", value="tmall:tb_00003125")
    client = client_for(operator)
    assert _names(client.get(reverse("customers"), {"q": "oUnion_wf01"})) == {mine.name}
    assert _names(client.get(reverse("customers"), {"q": "tb_00003125"})) == {theirs.name}
    assert _names(client.get(reverse("customers"), {"q": "tb_0000312"})) == set()  # exact only
    guide = client_for(guide_user)
    assert _names(guide.get(reverse("guide_customers"), {"q": "tb_00003125"})) == set()


def test_an_unmatched_order_number_points_to_the_unmatched_orders(client_for, operator, book):
    OrderFactory(customer=None, channel="douyin", channel_order_id="6945267915516643351")
    page = client_for(operator).get(reverse("customers"), {"q": "6945267915516643351"})
    body = page.content.decode()
    assert _names(page) == set()
    assert "抖音订单 6945267915516643351 还没有匹配到客户" in body
    link = f'href="{reverse("unmatched_orders")}?q=6945267915516643351#orders"'
    assert link in body
    # where the order itself is listed
    listed = client_for(operator).get(reverse("unmatched_orders"), {"q": "6945267915516643351"})
    assert ">6945267915516643351<" in listed.content.decode()


def test_the_customer_page_sums_up_what_they_bought(client_for, operator, guide_user, book):
    from datetime import UTC, datetime
    from decimal import Decimal

    from contacts.facts import facts_refresh

    mine = book["own"][0]
    for day, amount, refund in ((3, "300.00", "0"), (10, "200.00", "50.00"), (10, "99.00", "0")):
        OrderFactory(
            customer=mine,
            paid_at=datetime(2026, 3, day, 4, tzinfo=UTC),
            amount=Decimal(amount),
            refund_amount=Decimal(refund),
            status="partially_refunded" if refund != "0" else "paid",
        )
    facts_refresh(customer_ids=[mine.pk])
    for user, url in (
        (operator, reverse("customer_detail", args=[mine.pk])),
        (guide_user, reverse("guide_customer_detail", args=[mine.pk])),
    ):
        page = client_for(user).get(url).content.decode()
        card = page.split('id="customer-value"')[1].split("</section>")[0]
        # 300 + (200 - 50) + 99 over three orders on two days, 2026-03-03 and -10
        assert "¥549.00" in card and "<dd>3</dd>" in card and "<dd>2</dd>" in card
        assert "¥183.00" in card and "2026-03-03" in card and "2026-03-10" in card
    empty = client_for(operator).get(reverse("customer_detail", args=[book["other"][0].pk]))
    assert 'id="customer-value"' not in empty.content.decode()  # no purchase, no summary


def test_a_guide_sees_a_colleagues_relationship_but_not_their_notes(
    client_for, operator, guide_user, book
):
    shared = book["own"][0]
    theirs = Guide.objects.get(wecom_userid="guide0002")
    RelationshipFactory(customer=shared, guide=theirs, remark="同事的私人备注", description="VIP")
    mine = shared.relationships.get(guide__wecom_userid="guide0001")
    mine.remark = "我的备注"
    mine.save()
    page = client_for(guide_user).get(reverse("guide_customer_detail", args=[shared.pk]))
    body = page.content.decode()
    assert theirs.name in body and "我的备注" in body
    assert "同事的私人备注" not in body and "VIP" not in body
    api = client_for(guide_user).get(reverse("customer-detail", args=[shared.pk])).json()
    notes = {r["guide_userid"]: (r["remark"], r["description"]) for r in api["relationships"]}
    assert notes["guide0002"] == (None, None) and notes["guide0001"][0] == "我的备注"
    console = client_for(operator).get(reverse("customer_detail", args=[shared.pk]))
    assert "同事的私人备注" in console.content.decode()  # operators see every note
    api = client_for(operator).get(reverse("customer-detail", args=[shared.pk])).json()
    assert "同事的私人备注" in {r["remark"] for r in api["relationships"]}


def test_a_guide_sees_the_masked_phone_but_not_the_platforms_ids(
    client_for, operator, guide_user, book
):
    from contacts.models import CustomerIdentity

    mine = book["own"][0]
    CustomerIdentity.objects.create(customer=mine, kind="unionid", value="oUNION_secret_1")
    CustomerIdentity.objects.create(customer=mine, kind="buyer_id", value="tmall:tb_nick_9")
    CustomerIdentity.objects.create(
        customer=mine, kind="phone_hash", value="f" * 64, display="138****5601"
    )
    guide = client_for(guide_user).get(reverse("guide_customer_detail", args=[mine.pk]))
    text = guide.content.decode()
    assert "138****5601" in text and "已关联" in text
    for hidden in ("oUNION_secret_1", "tb_nick_9", mine.external_userid, "f" * 64):
        assert hidden not in text
    console = client_for(operator).get(reverse("customer_detail", args=[mine.pk])).content.decode()
    assert "oUNION_secret_1" in console and "tmall:tb_nick_9" in console
    assert mine.external_userid in console


def test_the_list_tells_namesakes_apart(client_for, operator, guide_user, book):
    """Two customers of one name: their masked phones, guides and purchases differ."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from contacts.facts import facts_refresh

    a, b = book["own"][0], book["other"][0]
    Customer.objects.filter(pk__in=[a.pk, b.pk]).update(name="潘瑶")
    e164 = phone_normalise("13800135601")
    CustomerIdentity.objects.create(
        customer=a, kind="phone_hash", value=phone_hash(e164), display=phone_mask(e164)
    )
    OrderFactory(customer=b, paid_at=datetime(2026, 3, 9, 4, tzinfo=UTC), amount=Decimal("88.50"))
    facts_refresh()
    response = client_for(operator).get(reverse("customers"), {"q": "潘瑶"})
    rows = {c.pk: c for c in response.context["customers"]}
    assert set(rows) == {a.pk, b.pk}
    assert (rows[a.pk].phone, rows[a.pk].guide_names) == ("138****5601", ["张晓"])
    assert (rows[b.pk].phone, rows[b.pk].guide_names) == ("", ["陈静"])
    assert rows[b.pk].summary.net_revenue == Decimal("88.50")
    text = response.content.decode()
    assert "138****5601" in text and "¥88.50" in text and "2026-03-09" in text
    assert "13800135601" not in text


def test_the_api_gives_guides_the_masked_phone_but_not_the_platforms_ids(
    client_for, operator, guide_user, book
):
    from contacts.models import CustomerIdentity

    mine = book["own"][0]
    CustomerIdentity.objects.create(customer=mine, kind="unionid", value="oUNION_secret_2")
    CustomerIdentity.objects.create(
        customer=mine, kind="phone_hash", value="e" * 64, display="139****0001"
    )
    url = reverse("customer-detail", args=[mine.pk])

    def values(user) -> dict:
        identities = client_for(user).get(url).json()["identities"]
        return {row["kind"]: row["value"] for row in identities}

    assert values(guide_user) == {"unionid": "", "phone_hash": "139****0001"}
    assert values(operator) == {"unionid": "oUNION_secret_2", "phone_hash": "139****0001"}


def test_a_sub_order_names_the_checkout_it_was_split_from(client_for, operator, book):
    customer = book["own"][0]
    OrderFactory(
        customer=customer, channel="douyin", channel_order_id="DY-7-1", parent_order_id="DY-7"
    )
    page = client_for(operator).get(reverse("customer_detail", args=[customer.pk])).content.decode()
    row = page.split("DY-7-1")[1].split("</td>")[0]
    assert "拆自订单 DY-7" in row


def test_the_customer_page_shows_every_order_a_page_at_a_time(
    client_for, operator, guide_user, book, monkeypatch
):
    from datetime import UTC, datetime, timedelta

    from contacts import views

    monkeypatch.setattr(views, "ORDERS_PER_PAGE", 2)
    customer = book["own"][0]
    first = datetime(2025, 1, 1, 4, tzinfo=UTC)
    numbers = [f"T-{n}" for n in range(5)]  # T-4 is the newest
    for n, number in enumerate(numbers):
        OrderFactory(customer=customer, channel_order_id=number, paid_at=first + timedelta(days=n))
    OrderFactory(customer=book["own"][1], channel_order_id="NOT-HERS")
    for user, name in ((operator, "customer_detail"), (guide_user, "guide_customer_detail")):
        client, url = client_for(user), reverse(name, args=[customer.pk])
        seen = []
        for page in ("1", "2", "3"):
            response = client.get(url, {"page": page})
            seen += [order.channel_order_id for order in response.context["orders"]]
            assert "共 5 条" in response.content.decode()
        assert seen == numbers[::-1]
        last = client.get(url, {"page": "99"})  # past the end: the last page, not an error
        assert [o.channel_order_id for o in last.context["orders"]] == ["T-0"]
        assert 'id="orders-pager"' in last.content.decode()
