"""社群 page, its CSV and its API: the numbers of hand-built groups (worked out by hand in
`groups`), what each persona sees (a guide only the groups they own), a bad window, and
the page's query count."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.forms import GROUP_WINDOW_DAYS
from contacts.models import CustomerGroup, CustomerGroupEvent, CustomerGroupMember
from sop.scheduling import _today
from tests.contacts.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db

# (members now, size at start, joins, quits, quit rate, buyers, revenue) in the window
A = {
    "members": 4,
    "customers": 2,
    "size_at_start": 3,
    "joins": 2,
    "quits": 1,
    "quit_rate": 0.2,
    "buyers": 1,
    "revenue": "450.00",
}
B = {
    "members": 2,
    "customers": 1,
    "size_at_start": 2,
    "joins": 0,
    "quits": 0,
    "quit_rate": 0.0,
    "buyers": 1,
    "revenue": "99.00",
}


@pytest.fixture
def groups(guide_user, other_guide_user):
    """D = days ago. The window: the last 10 days, today included.

    会员福利群 (guide0001): guide0001 (staff, from before events were kept), 王芳 joined
    D5, 李娜 joined D40, a stranger (not our customer) joined D2; 赵敏 joined D50 and
    left D3. → 4 members, 2 customers; joins 2, quits 1; at the start guide0001, 李娜
    and 赵敏: 3; quit rate 1 / (3 + 2) = 0.2. Orders: 王芳 D2 ¥300 paid, D1 ¥200
    partially refunded ¥50; 李娜 D3 refunded, D20 ¥80 (before the window); 赵敏 D1 ¥500
    (left the group) → 1 buyer, ¥450.
    老客群 (guide0002): guide0002 and 孙丽 (from before events were kept); 孙丽 D4 ¥99
    → 2 members, no moves, quit rate 0, 1 buyer, ¥99.
    散群 (guide0001): dismissed, not shown."""
    now = timezone.now()

    def ago(days: float):
        return now - timedelta(days=days)

    wang, li, zhao, sun = (CustomerFactory(name=n) for n in ("王芳", "李娜", "赵敏", "孙丽"))
    a = CustomerGroup.objects.create(
        chat_id="wrA", name="会员福利群", owner_userid="guide0001", member_count=4
    )
    b = CustomerGroup.objects.create(
        chat_id="wrB", name="老客群", owner_userid="guide0002", member_count=2
    )
    gone = CustomerGroup.objects.create(
        chat_id="wrC", name="散群", owner_userid="guide0001", is_dismissed=True
    )
    CustomerGroupMember.objects.create(group=gone, userid="guide0001", type=1)

    def member(group, userid, customer=None, *, joined, event=True, staff=False):
        CustomerGroupMember.objects.create(
            group=group, userid=userid, type=1 if staff else 2, customer=customer, join_time=joined
        )
        if event:
            CustomerGroupEvent.objects.create(
                group=group, userid=userid, type=2, customer=customer, kind="joined", at=joined,
                source="sync",
            )  # fmt: skip

    member(a, "guide0001", joined=ago(300), event=False, staff=True)
    member(a, wang.external_userid, wang, joined=ago(5))
    member(a, li.external_userid, li, joined=ago(40))
    member(a, "wmstranger", joined=ago(2))
    for kind, at in (("joined", ago(50)), ("left", ago(3))):
        CustomerGroupEvent.objects.create(
            group=a, userid=zhao.external_userid, type=2, customer=zhao, kind=kind, at=at,
            source="callback",
        )  # fmt: skip
    member(b, "guide0002", joined=ago(300), event=False, staff=True)
    member(b, sun.external_userid, sun, joined=ago(100), event=False)
    OrderFactory(customer=wang, paid_at=ago(2), amount=Decimal("300"))
    OrderFactory(
        customer=wang,
        paid_at=ago(1),
        amount=Decimal("200"),
        status="partially_refunded",
        refund_amount=Decimal("50"),
    )
    OrderFactory(customer=li, paid_at=ago(3), amount=Decimal("120"), status="refunded")
    OrderFactory(customer=li, paid_at=ago(20), amount=Decimal("80"))
    OrderFactory(customer=zhao, paid_at=ago(1), amount=Decimal("500"))
    OrderFactory(customer=sun, paid_at=ago(4), amount=Decimal("99"))
    today = _today()
    return {"start": str(today - timedelta(days=9)), "end": str(today)}


def _numbers(row: dict) -> dict:
    return {key: row[key] for key in A}


def test_the_api_gives_each_groups_numbers(client_for, operator, groups):
    body = client_for(operator).get(reverse("customer-group-stats"), groups).json()
    assert (body["start"], body["end"]) == (groups["start"], groups["end"])
    rows = {row["chat_id"]: row for row in body["groups"]}
    assert set(rows) == {"wrA", "wrB"}  # the dismissed group is left out
    assert _numbers(rows["wrA"]) == A and _numbers(rows["wrB"]) == B
    assert (rows["wrA"]["owner_userid"], rows["wrA"]["owner_name"]) == ("guide0001", "张晓")
    assert rows["wrB"]["name"] == "老客群"


def test_a_guide_sees_only_the_groups_they_own(
    client_for, guide_user, other_guide_user, manager, groups
):
    for user, expected in ((guide_user, {"wrA"}), (other_guide_user, {"wrB"})):
        client = client_for(user)
        api = client.get(reverse("customer-group-stats"), groups).json()
        assert {row["chat_id"] for row in api["groups"]} == expected
        page = client.get(reverse("customer_groups"), groups)
        assert page.status_code == 200
        assert {row["chat_id"] for row in page.context["rows"]} == expected
        assert 'class="mainnav"' not in page.content.decode()  # a guide's page, no console
        home = client.get(reverse("guide_home")).content.decode()
        assert f'href="{reverse("customer_groups")}" id="my-groups"' in home
        export = client.get(reverse("customer_groups_export"), groups).content.decode("utf-8-sig")
        assert {line[0] for line in list(csv.reader(io.StringIO(export)))[1:]} == expected
    listing = client_for(manager).get(reverse("customer-group-stats"), groups).json()
    assert {row["chat_id"] for row in listing["groups"]} == {"wrA", "wrB"}


def test_the_page_shows_the_numbers_and_the_window(client_for, operator, groups):
    response = client_for(operator).get(reverse("customer_groups"), groups)
    body = response.content.decode()
    row = body.split('data-chat="wrA"')[1].split("</tr>")[0]
    assert "会员福利群" in row and "张晓" in row
    cells = [part.split("</td>")[0].split(">")[-1] for part in row.split('class="num"')[1:]]
    # now, at start, joins, quits, quit rate, buyers, revenue
    assert cells == ["4", "3", "2", "1", "20.0%", "1", "450.00"]
    other = body.split('data-chat="wrB"')[1].split("</tr>")[0]
    cells = [part.split("</td>")[0].split(">")[-1] for part in other.split('class="num"')[1:]]
    assert cells == ["2", "2", "0", "0", "0.0%", "1", "99.00"]
    assert "散群" not in body
    assert f'value="{groups["start"]}"' in body and f'value="{groups["end"]}"' in body
    assert f'href="{reverse("customer_groups")}" id="nav-groups" aria-current="page"' in body
    export = reverse("customer_groups_export")
    assert f'href="{export}?start={groups["start"]}&amp;end={groups["end"]}"' in body


def test_the_csv_has_the_same_numbers(client_for, operator, groups):
    response = client_for(operator).get(reverse("customer_groups_export"), groups)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"groups-{groups['start']}-{groups['end']}.csv" in response["Content-Disposition"]
    header, *rows = csv.reader(io.StringIO(response.content.decode("utf-8-sig")))
    assert header[0] == "群 ID" and header[-1] == "购买成员收入（元）"
    assert rows == [
        ["wrA", "会员福利群", "guide0001", "张晓", *"4 2 3 2 1 0.2000 1 450.00".split()],
        ["wrB", "老客群", "guide0002", "陈静", *"2 1 2 0 0 0.0000 1 99.00".split()],
    ]


def test_the_default_window_is_the_last_30_days(client_for, operator, groups):
    body = client_for(operator).get(reverse("customer-group-stats")).json()
    today = _today()
    assert body["end"] == str(today)
    assert body["start"] == str(today - timedelta(days=GROUP_WINDOW_DAYS - 1))
    rows = {row["chat_id"]: row for row in body["groups"]}
    # over 30 days 李娜's D20 order counts too; the joins and quits are the same
    assert rows["wrA"]["buyers"] == 2 and rows["wrA"]["revenue"] == "530.00"


def test_a_bad_window_is_refused_with_the_reason(client_for, operator, groups):
    client = client_for(operator)
    backwards = {"start": groups["end"], "end": groups["start"]}
    response = client.get(reverse("customer-group-stats"), backwards)
    assert response.status_code == 400
    assert response.json() == {"__all__": ["开始日期不能晚于结束日期。"]}
    unreadable = client.get(reverse("customer-group-stats"), {"start": "2026-13-40"})
    assert unreadable.status_code == 400 and "start" in unreadable.json()
    page = client.get(reverse("customer_groups"), backwards)
    assert page.status_code == 200
    body = page.content.decode()
    assert "开始日期不能晚于结束日期。" in body and "已按默认条件显示" in body
    assert page.context["start"] == _today() - timedelta(days=GROUP_WINDOW_DAYS - 1)


def test_the_page_queries_do_not_grow_with_groups(
    client_for, operator, groups, django_assert_max_num_queries
):
    client = client_for(operator)
    client.get(reverse("customer_groups"))  # warm the session and permission caches
    with django_assert_max_num_queries(6) as few:
        assert client.get(reverse("customer_groups")).status_code == 200
    for number in range(10):
        group = CustomerGroup.objects.create(chat_id=f"wrX{number}", owner_userid="guide0002")
        CustomerGroupMember.objects.create(group=group, userid="guide0002", type=1)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("customer_groups"))
    assert len(response.context["rows"]) == 12


@pytest.fixture
def big_group(groups):
    """大群 (guide0002): five members from before events were kept, none of them our
    customers → 5 members, no moves, quit rate 0, no buyers. Its id is the largest."""
    big = CustomerGroup.objects.create(chat_id="wrD", name="大群", owner_userid="guide0002")
    for number in range(5):
        CustomerGroupMember.objects.create(group=big, userid=f"wmold{number}", type=2)
    return groups


def _chats(client, name: str, params: dict) -> list[str]:
    response = client.get(reverse(name), params)
    assert response.status_code == 200
    if name == "customer-group-stats":
        return [row["chat_id"] for row in response.json()["groups"]]
    if name == "customer_groups_export":
        return [row[0] for row in csv.reader(io.StringIO(response.content.decode("utf-8-sig")))][1:]
    return [row["chat_id"] for row in response.context["rows"]]


@pytest.mark.parametrize(
    "name", ["customer_groups", "customer-group-stats", "customer_groups_export"]
)
def test_groups_are_sorted_largest_first_and_found_by_name_or_owner(
    client_for, operator, big_group, name
):
    client = client_for(operator)
    # (members, quit rate, revenue): 大群 (5, 0, 0), wrA (4, 0.2, 450), wrB (2, 0, 99)
    assert _chats(client, name, big_group) == ["wrD", "wrA", "wrB"]  # by size by default
    for sort, expected in (
        ("revenue", ["wrA", "wrB", "wrD"]),
        ("quit_rate", ["wrA", "wrB", "wrD"]),  # a tie (0 and 0) goes by the group's id
        ("buyers", ["wrA", "wrB", "wrD"]),
        ("name", ["wrD", "wrA", "wrB"]),  # pinyin: da, hui, lao
    ):
        assert _chats(client, name, big_group | {"sort": sort}) == expected, sort
    for search, expected in (
        ("老客", ["wrB"]),  # the group's name
        ("张晓", ["wrA"]),  # the owner's name
        ("GUIDE0002", ["wrD", "wrB"]),  # the owner's userid, any case
        ("wrd", ["wrD"]),  # the chat id
        ("%", []),  # a wildcard is a character like any other
    ):
        assert _chats(client, name, big_group | {"q": search}) == expected, search


def test_a_guide_searches_only_their_own_groups(client_for, other_guide_user, big_group):
    client = client_for(other_guide_user)
    assert _chats(client, "customer_groups", big_group | {"q": "群"}) == ["wrD", "wrB"]
    assert _chats(client, "customer-group-stats", big_group | {"q": "会员"}) == []


def test_the_page_pages_and_totals_every_group_found(client_for, operator, big_group, monkeypatch):
    from campaigns import group_views

    monkeypatch.setattr(group_views, "GROUPS_PER_PAGE", 2)
    client = client_for(operator)
    first = client.get(reverse("customer_groups"), big_group | {"sort": "revenue"})
    assert [row["chat_id"] for row in first.context["rows"]] == ["wrA", "wrB"]
    body = first.content.decode()
    pager = body.split('id="groups-pager"')[1].split("</p>")[0]
    assert "第 1 / 2 页" in pager and 'rel="prev"' not in pager
    link = pager.split('rel="next"')[0].split('href="?')[1].split('"')[0].replace("&amp;", "&")
    # the totals are of the three groups, not of the page: 5 + 4 + 2 members, 2 joins, 1 quit
    total = body.split('id="groups-total"')[1].split("</tr>")[0]
    assert "合计（3 个群）" in total
    assert [c.split("</td>")[0].split(">")[-1] for c in total.split('class="num"')[1:4]] == [
        "11",
        "2",
        "1",
    ]
    second = client.get(f"{reverse('customer_groups')}?{link}")
    assert [row["chat_id"] for row in second.context["rows"]] == ["wrD"]  # the sort is kept
    assert second.context["start"] == first.context["start"]  # and the window
    assert 'rel="prev"' in second.content.decode()
    # a header sorts by its column, keeping the window and the search, from the first page
    header = body.split('data-sort="members"')[0].rsplit('href="?', 1)[1].split('"')[0]
    assert header.replace("&amp;", "&") == (
        f"start={big_group['start']}&end={big_group['end']}&sort=members"
    )


def test_an_unknown_sort_is_refused_with_the_reason(client_for, operator, big_group):
    client = client_for(operator)
    response = client.get(reverse("customer-group-stats"), big_group | {"sort": "owner"})
    assert response.status_code == 400 and "sort" in response.json()
    page = client.get(reverse("customer_groups"), big_group | {"sort": "owner"})
    assert "已按默认条件显示" in page.content.decode()
    assert [row["chat_id"] for row in page.context["rows"]] == ["wrD", "wrA", "wrB"]


def test_the_page_in_english(client_for, operator, big_group):
    client = client_for(operator)
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    body = client.get(reverse("customer_groups"), big_group).content.decode()
    assert "Quit rate" in body and "Members who bought" in body and "Total (3 groups)" in body
    text = re.sub(r"<[^>]*>", " ", body.split("<main")[1].split("</main>")[0])
    for data in ("会员福利群", "老客群", "大群", "张晓", "陈静"):  # the groups and their owners
        text = text.replace(data, "")
    assert re.findall(r"[\u4e00-\u9fff]+", text) == []  # every label is translated


def test_a_guide_who_owns_no_group_is_told_so(client_for, guide_user, operator):
    guide_page = client_for(guide_user).get(reverse("customer_groups")).content.decode()
    assert "你还不是任何客户群的群主" in guide_page and "同步企业微信后" not in guide_page
    console_page = client_for(operator).get(reverse("customer_groups")).content.decode()
    assert "还没有客户群。同步企业微信后" in console_page


def test_a_guide_reads_their_groups_as_cards_on_the_phone(client_for, guide_user, groups):
    body = client_for(guide_user).get(reverse("customer_groups"), groups).content.decode()
    card = body.split('<li data-chat="wrA">')[1].split("</li>")[0]
    # now (at start), joins / quits · quit rate, buyers · revenue, as the table has them
    assert "会员福利群" in card and "4 <span" in card and "（期初 3）" in card
    assert "+2 / −1 · 20.0%" in card and "1 · ¥450.00" in card
    assert 'data-chat="wrB"' not in body and "<table" not in body
