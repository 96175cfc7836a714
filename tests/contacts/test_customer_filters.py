"""The console customer list's filters by what customers bought and by our own tags:
each against customers whose orders say the answer, bad input, paging and its cost."""

from datetime import datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts import views
from contacts.facts import facts_refresh
from contacts.models import Customer, Guide
from tagging.models import CustomerTag, Tag, TagGroup
from tests.contacts.factories import OrderFactory, RelationshipFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _bought(customer: Customer, *, days_ago: int, amount: str, channel: str = "tmall") -> None:
    today = timezone.now().astimezone(SHANGHAI).date()
    OrderFactory(
        customer=customer,
        channel=channel,
        paid_at=datetime.combine(today - timedelta(days=days_ago), time(12), tzinfo=SHANGHAI),
        amount=Decimal(amount),
    )


@pytest.fixture
def buyers(guide_user):
    """Five customers whose orders fix every answer below (days ago, yuan, channel):

    a: 3 days 500 tmall, 40 days 300 jd   → 2 purchase days, ¥800, last 3 days ago
    b: 100 days 120 douyin                 → 1, ¥120, last 100 days ago
    c: 10 / 200 / 400 days, 2000+1000+50 pos → 3, ¥3,050, last 10 days ago
    d: never bought                        → 0, ¥0
    e: 7 days 80 youzan                    → 1, ¥80, last 7 days ago (not within 7 days)
    """
    guide = Guide.objects.get(wecom_userid="guide0001")
    people = {key: RelationshipFactory(guide=guide).customer for key in "abcde"}
    _bought(people["a"], days_ago=3, amount="500.00")
    _bought(people["a"], days_ago=40, amount="300.00", channel="jd")
    _bought(people["b"], days_ago=100, amount="120.00", channel="douyin")
    for days_ago, amount in ((10, "2000.00"), (200, "1000.00"), (400, "50.00")):
        _bought(people["c"], days_ago=days_ago, amount=amount, channel="pos")
    _bought(people["e"], days_ago=7, amount="80.00", channel="youzan")
    facts_refresh()
    return people


def _found(client, params: dict) -> set[int]:
    response = client.get(reverse("customers"), params)
    assert response.status_code == 200
    return {customer.pk for customer in response.context["customers"]}


def _ids(buyers, keys: str) -> set[int]:
    return {buyers[key].pk for key in keys}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"revenue_min": "500"}, "ac"),
        ({"revenue_min": "800"}, "ac"),  # both ends included
        ({"revenue_min": "800.01"}, "c"),
        ({"revenue_max": "120"}, "bde"),  # d's facts say ¥0
        ({"revenue_min": "100", "revenue_max": "800"}, "ab"),
        ({"purchase_days_min": "2"}, "ac"),
        ({"purchase_days_min": "3"}, "c"),
        ({"bought_within": "7"}, "a"),  # today and the six days before it
        ({"bought_within": "8"}, "ae"),
        ({"bought_within": "11"}, "ace"),
        ({"dormant_for": "7"}, "bce"),  # d never bought: not dormant
        ({"dormant_for": "10"}, "bc"),
        ({"dormant_for": "11"}, "b"),
        ({"bought_within": "365", "dormant_for": "8"}, "bc"),
        ({"channel": "pos"}, "c"),
        ({"channel": "jd"}, "a"),
        ({"channel": "douyin"}, "b"),
        ({"channel": "miniapp"}, ""),
        ({"channel": "tmall", "bought_within": "5", "revenue_min": "800"}, "a"),
    ],
)
def test_purchase_filters(client_for, operator, buyers, params, expected):
    assert _found(client_for(operator), params) == _ids(buyers, expected)


def test_filter_by_our_own_tag_alongside_the_corp_tag(client_for, operator, buyers):
    group = TagGroup.objects.create(name="兴趣")
    tag = Tag.objects.create(group=group, name="冰丝控")
    for key in "ad":
        CustomerTag.objects.create(customer=buyers[key], tag=tag, added_at=timezone.now())
    buyers["d"].relationships.update(wecom_tag_ids=["et_vip"])
    buyers["b"].relationships.update(wecom_tag_ids=["et_vip"])
    client = client_for(operator)
    page = client.get(reverse("customers"))
    assert "兴趣 / 冰丝控" in page.content.decode()
    assert _found(client, {"own_tag": tag.pk}) == _ids(buyers, "ad")
    assert _found(client, {"own_tag": tag.pk, "tag": "et_vip"}) == _ids(buyers, "d")
    assert _found(client, {"own_tag": tag.pk, "revenue_min": "1"}) == _ids(buyers, "a")


def test_built_in_tags_are_offered_by_their_label_and_corp_mirrors_are_not(
    client_for, operator, buyers
):
    lifecycle = TagGroup.objects.create(name="生命周期", system_key="lifecycle")
    active = Tag.objects.create(group=lifecycle, name="活跃", source=Tag.Source.SYSTEM)
    mirrors = TagGroup.objects.create(name="企业微信标签")
    mirrored = Tag.objects.create(group=mirrors, name="老客", source=Tag.Source.WECOM)
    CustomerTag.objects.create(customer=buyers["c"], tag=active, added_at=timezone.now())
    client = client_for(operator)
    choices = dict(client.get(reverse("customers")).context["form"].fields["own_tag"].choices)
    assert choices[active.pk] == f"{active.group.label} / {active.label}"
    assert mirrored.pk not in choices
    assert _found(client, {"own_tag": active.pk}) == _ids(buyers, "c")


@pytest.mark.parametrize(
    ("params", "field_label"),
    [
        ({"revenue_min": "abc"}, "净销售额不低于"),
        ({"revenue_max": "1e999"}, "净销售额不高于"),
        ({"purchase_days_min": "-1"}, "购买天数至少"),
        ({"bought_within": "abc"}, "近 N 天内购买过"),
        ({"dormant_for": "99999999999999999999"}, "N 天以上未购买"),
        ({"channel": "nowhere"}, "购买渠道"),
        ({"own_tag": "999999"}, "本平台标签"),
    ],
)
def test_bad_input_is_ignored_and_named(client_for, operator, buyers, params, field_label):
    client = client_for(operator)
    response = client.get(reverse("customers"), {"channel": "pos"} | params)
    assert response.status_code == 200
    text = response.content.decode()
    assert f"{field_label}：" in text and "这些条件无效，已忽略，按其余条件筛选。" in text
    expected = "abcde" if "channel" in params else "c"  # the other, valid filter still holds
    assert {c.pk for c in response.context["customers"]} == _ids(buyers, expected)


def test_valid_filters_show_no_error(client_for, operator, buyers):
    text = client_for(operator).get(reverse("customers"), {"revenue_min": "1"}).content.decode()
    assert "这些条件无效" not in text


def test_keyset_paging_and_count_cap_hold_under_purchase_filters(
    client_for, operator, guide_user, monkeypatch
):
    guide = Guide.objects.get(wecom_userid="guide0001")
    spenders = set()
    for number in range(120):
        customer = RelationshipFactory(guide=guide).customer
        if number % 3:  # 80 of them spent ¥200 at JD
            _bought(customer, days_ago=number % 50, amount="200.00", channel="jd")
            spenders.add(customer.pk)
    facts_refresh()
    client = client_for(operator)
    seen: list[int] = []
    url = reverse("customers") + "?revenue_min=150&channel=jd"
    first = client.get(url)
    assert first.context["total"] == 80 and not first.context["total_capped"]
    while url:
        response = client.get(url)
        seen += [customer.pk for customer in response.context["customers"]]
        cursor = response.context["next_cursor"]
        url = f"{reverse('customers')}?{response.context['query']}&after={cursor}" if cursor else ""
    assert len(seen) == len(set(seen)) == 80
    assert set(seen) == spenders
    monkeypatch.setattr(views, "COUNT_CAP", 30)
    capped = client.get(reverse("customers"), {"revenue_min": "150"})
    assert capped.context["total"] == 30 and capped.context["total_capped"]


def test_filtered_list_query_count_does_not_grow_with_rows(client_for, operator, buyers):
    group = TagGroup.objects.create(name="兴趣")
    tag = Tag.objects.create(group=group, name="冰丝控")
    guide = Guide.objects.get(wecom_userid="guide0001")
    for _ in range(60):
        customer = RelationshipFactory(guide=guide).customer
        _bought(customer, days_ago=5, amount="900.00", channel="pos")
        CustomerTag.objects.create(customer=customer, tag=tag, added_at=timezone.now())
    facts_refresh()
    params = {
        "own_tag": tag.pk,
        "revenue_min": "100",
        "purchase_days_min": "1",
        "bought_within": "30",
        "channel": "pos",
    }
    client = client_for(operator)
    client.get(reverse("customers"), params)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("customers"), params)
    assert len(response.context["customers"]) == 50
    # the page, its count, facts, phones, guides, the filters' lists and our tags
    assert len(queries) <= 14, [q["sql"][:80] for q in queries]


@pytest.mark.parametrize("params", [{"guide": "abc"}, {"store": "abc"}, {"guide": "99999"}])
def test_a_made_up_guide_or_store_is_not_found(client_for, operator, guide_user, params):
    client = client_for(operator)
    assert client.get(reverse("customers"), params).status_code == 404
    asked = {"query": urlencode(params), "format": "xlsx"}
    assert client.post(reverse("customer_export"), asked).status_code == 404
    assert client_for(guide_user).get(reverse("guide_customers"), params).status_code == 404


def test_a_guide_filters_their_own_customers_by_what_they_bought(
    client_for, guide_user, other_guide_user, buyers
):
    theirs = Guide.objects.get(wecom_userid="guide0002")
    other = RelationshipFactory(guide=theirs).customer
    _bought(other, days_ago=200, amount="90.00")
    facts_refresh()
    client = client_for(guide_user)

    def found(params: dict) -> set[int]:
        response = client.get(reverse("guide_customers"), params)
        assert response.status_code == 200
        return {customer.pk for customer in response.context["customers"]}

    people = buyers
    assert found({"dormant_for": "90"}) == {people["b"].pk}
    assert found({"bought_within": "30"}) == {people["a"].pk, people["c"].pk, people["e"].pk}
    assert found({"revenue_min": "500", "channel": "pos"}) == {people["c"].pk}
    # another guide's dormant customer is not theirs to see; bad input is named, not a 500
    assert other.pk not in found({"dormant_for": "90"})
    page = client.get(reverse("guide_customers"), {"bought_within": "abc", "q": "x"})
    body = page.content.decode()
    assert "这些条件无效" in body and 'value="x"' in body and 'name="own_tag"' not in body


def test_members_since_a_day_and_a_day_that_does_not_exist(
    client_for, operator, guide_user, buyers
):
    day = datetime(2026, 3, 1, tzinfo=SHANGHAI)
    joined = {"a": day - timedelta(minutes=1), "b": day, "c": day + timedelta(days=30)}
    for key, at in joined.items():
        Customer.objects.filter(pk=buyers[key].pk).update(joined_at=at)
    Customer.objects.filter(pk__in=_ids(buyers, "de")).update(joined_at=None)
    client = client_for(operator)
    assert _found(client, {"member_since": "2026-03-01"}) == _ids(buyers, "bc")
    # a date written right that no calendar has: named on the page, and ignored
    response = client.get(reverse("customers"), {"member_since": "2026-13-45", "channel": "pos"})
    assert response.status_code == 200
    assert "入会不早于" in response.content.decode().split('role="alert"')[1]
    assert {c.pk for c in response.context["customers"]} == _ids(buyers, "c")
    guide_list = client_for(guide_user).get(
        reverse("guide_customers"), {"member_since": "2026-03-01"}
    )
    assert {c.pk for c in guide_list.context["customers"]} == _ids(buyers, "bc")
    assert (
        client_for(guide_user)
        .get(reverse("guide_customers"), {"member_since": "2026-13-45"})
        .status_code
        == 200
    )
