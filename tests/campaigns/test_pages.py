"""活动 pages: who may open and change what, the numbers of the lists and of a campaign's
and a code's page against hand-built data, the channel code editor against the WeCom
emulator, the campaign editor (tagging's condition builder, the reach, send now and
schedule, each refusal), and the list's query count."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from campaigns import selectors
from campaigns.models import Campaign, CampaignMessage, CampaignRecipient, ChannelCode, WelcomeSend
from campaigns.sending import attribution, campaign_send
from campaigns.services import code_stats
from contacts.facts import facts_refresh
from contacts.models import Customer, Guide
from scrm.wecom.gateway import WeComGateway
from sop.models import OptOut, SopPlan
from tagging.models import Tag, TagGroup
from tests.contacts.factories import CustomerFactory, OrderFactory, RelationshipFactory

pytestmark = pytest.mark.django_db

GUIDE1_SEGMENT = {"fact": "guide", "op": "any_of", "value": ["guide0001"]}
PNG = b"\x89PNG\r\n\x1a\n"


def build_campaign_data() -> dict:
    """Hand-built, so every number below is known. Needs the guide_user (guide0001 张晓)
    and other_guide_user (guide0002 陈静) personas. D = days ago, same time of day.

    Channel code 双11包裹卡 (state cc-parcel, guide0001, cost 100):
      王芳 added D10, first order D8 (¥300), again D3 (¥150)
      李娜 added D5, deleted D3 (within 7 days), never bought
      赵敏 added D3, bought before (D60, ¥99) and D2 (¥200)
      → adds 3, deleted within 7 days 1, members 2, eligible 2 (not 赵敏), first order
        within 7 and 30 days 1 (王芳), revenue 650, cost per member 50.00.
      Welcomes: sent in 100, 300, 200 ms and one expired → median 200, 3 sent.
    Campaign 秋冬上新 (sent D4 = T, cost 100, 7 days):
      王芳 sent (guide0001), 李娜 queued (guide0001), 孙丽 queued (guide0002),
      陈晨 held opted_out (guide0002), 赵敏 and 周杰 holdout (guide0001).
      guide0001's task confirmed; guide0002's not, reminded twice.
      王芳's D3 order (¥150) is within the window: 1 buyer, ¥150, ROI 0.5;
      holdout: 赵敏 bought (D2) → 1 of 2.
    Campaign 新品预告: a draft, nobody prepared yet."""
    now = timezone.now()

    def ago(days: float):
        return now - timedelta(days=days)

    mine = Guide.objects.get(wecom_userid="guide0001")
    theirs = Guide.objects.get(wecom_userid="guide0002")
    wang = CustomerFactory(name="王芳")
    li = CustomerFactory(name="李娜")
    zhao = CustomerFactory(name="赵敏")
    zhou = CustomerFactory(name="周杰")
    chen = CustomerFactory(name="陈晨")
    sun = CustomerFactory(name="孙丽")
    RelationshipFactory(customer=wang, guide=mine, state="cc-parcel", added_at=ago(10))
    RelationshipFactory(
        customer=li, guide=mine, state="cc-parcel", added_at=ago(5), is_active=False,
        ended_at=ago(3),
    )  # fmt: skip
    RelationshipFactory(customer=zhao, guide=mine, state="cc-parcel", added_at=ago(3))
    RelationshipFactory(customer=zhou, guide=mine, added_at=ago(100))
    RelationshipFactory(customer=chen, guide=theirs, added_at=ago(100))
    RelationshipFactory(customer=sun, guide=theirs, added_at=ago(100))
    OrderFactory(customer=wang, paid_at=ago(8), amount=Decimal("300"))
    OrderFactory(customer=wang, paid_at=ago(3), amount=Decimal("150"))
    OrderFactory(customer=zhao, paid_at=ago(60), amount=Decimal("99"))
    OrderFactory(customer=zhao, paid_at=ago(2), amount=Decimal("200"))
    facts_refresh()

    code = ChannelCode.objects.create(
        name="双11包裹卡",
        source=ChannelCode.Source.PARCEL_CARD,
        state="cc-parcel",
        config_id="cfg-parcel",
        qr_code="https://wework.qpic.cn/wwpic/cfg-parcel/0",
        wecom_users=["guide0001"],
        welcome_text="{称呼}您好",
        welcome_attachments=[{"type": "link", "title": "会员中心", "url": "https://e.com/m"}],
        cost=Decimal("100"),
    )
    code.guides.set([mine])
    for number, (latency, status) in enumerate(
        [(100, "sent"), (300, "sent"), (200, "sent"), (25_000, "expired")]
    ):
        WelcomeSend.objects.create(
            code=code,
            welcome_code=f"w{number}",
            external_userid=wang.external_userid,
            userid="guide0001",
            status=status,
            callback_at=ago(10),
            sent_at=ago(10) + timedelta(seconds=number),
            latency_ms=latency,
        )
    other_code = ChannelCode.objects.create(
        name="门店海报",
        source=ChannelCode.Source.STORE,
        state="cc-store",
        wecom_users=["guide0002"],
    )
    other_code.guides.set([theirs])

    sent = Campaign.objects.create(
        name="秋冬上新",
        segment={"fact": "guide", "op": "any_of", "value": ["guide0001", "guide0002"]},
        text="秋冬家居服上新了",
        holdout_percent=20,
        cost=Decimal("100"),
        attribution_days=7,
        status=Campaign.Status.SENT,
        prepared_at=ago(4),
        sent_at=ago(4),
    )
    for customer, guide, variant, status, reason in [
        (wang, mine, "a", "sent", ""),
        (li, mine, "a", "queued", ""),
        (sun, theirs, "a", "queued", ""),
        (chen, theirs, "a", "held", "opted_out"),
        (zhao, mine, "holdout", "holdout", ""),
        (zhou, mine, "holdout", "holdout", ""),
    ]:
        CampaignRecipient.objects.create(
            campaign=sent,
            customer=customer,
            guide=guide,
            variant=variant,
            status=status,
            reason=reason,
            sent_at=ago(4) if status == "sent" else None,
        )
    CampaignMessage.objects.create(
        campaign=sent, guide=mine, variant="a", status="confirmed", msgid="msg1", recipients=2
    )
    CampaignMessage.objects.create(
        campaign=sent,
        guide=theirs,
        variant="a",
        status="created",
        msgid="msg2",
        recipients=1,
        reminders=2,
    )
    draft = Campaign.objects.create(name="新品预告", segment=GUIDE1_SEGMENT, text="新品预告")
    return {
        "code": code,
        "other_code": other_code,
        "sent": sent,
        "draft": draft,
        "wang": wang,
        "li": li,
        "zhao": zhao,
        "zhou": zhou,
        "chen": chen,
        "sun": sun,
        "mine": mine,
        "theirs": theirs,
    }


CODE_STATS = {
    "adds": 3,
    "deleted_within_7d": 1,
    "members": 2,
    "eligible": 2,
    "converted_7d": 1,
    "converted_30d": 1,
    "rate_7d": 0.5,
    "rate_30d": 0.5,
    "revenue": Decimal("650.00"),
    "cost_per_member": Decimal("50.00"),
    "welcomes": 3,
    "welcome_median_ms": 200.0,
}
SENT_STATS = {
    "matched": 6,
    "reach": 3,
    "held": 1,
    "holdout": 2,
    "handed": 3,
    "sent": 1,
    "not_friend": 0,
    "over_limit": 0,
    "buyers": 1,
    "revenue": Decimal("150.00"),
    "roi": 0.5,
}


@pytest.fixture
def data(guide_user, other_guide_user) -> dict:
    return build_campaign_data()


def _counts() -> dict:
    return {
        "campaigns": sorted(
            Campaign.objects.values_list(
                "pk", "name", "status", "prepared_at", "schedule_at", "text"
            )
        ),
        "recipients": CampaignRecipient.objects.count(),
        "messages": CampaignMessage.objects.count(),
        "codes": sorted(ChannelCode.objects.values_list("pk", "name", "config_id")),
        "code_guides": ChannelCode.guides.through.objects.count(),
        "welcomes": WelcomeSend.objects.count(),
    }


def _pages(data: dict) -> list[str]:
    code, sent, draft = data["code"], data["sent"], data["draft"]
    return [
        reverse("campaigns"),
        reverse("campaign_new"),
        reverse("campaign_detail", args=[sent.pk]),
        reverse("campaign_detail", args=[draft.pk]),
        reverse("campaign_edit", args=[draft.pk]),
        reverse("channel_code_new"),
        reverse("channel_code_detail", args=[code.pk]),
        reverse("channel_code_edit", args=[code.pk]),
        reverse("channel_code_qr", args=[code.pk]),
    ]


def _campaign_post(**overrides) -> dict:
    body = {
        "name": "会员日",
        "condition": json.dumps(GUIDE1_SEGMENT),
        "text": "会员日全场 8 折",
        "text_b": "",
        "attachments": "[]",
        "holdout_percent": "0",
        "schedule_at": "",
        "attribution_days": "7",
        "cost": "50",
        "action": "save",
    }
    body.update(overrides)
    return body


def _code_post(chosen: list[Guide], **overrides) -> dict:
    body = {
        "name": "直播间活码",
        "source": "live",
        "distribution": "round_robin",
        "guides": [str(guide.pk) for guide in chosen],
        "store": "",
        "tags": [],
        "welcome_text": "{称呼}您好，我是{导购姓名}",
        "welcome_attachments": json.dumps(
            [{"type": "link", "title": "直播回放", "url": "https://example.com/live"}]
        ),
        "sop_plan": "",
        "cost": "200",
    }
    body.update(overrides)
    return body


def _writes(data: dict) -> list[tuple[str, dict]]:
    draft, sent, code = data["draft"], data["sent"], data["code"]
    return [
        (reverse("campaign_new"), _campaign_post()),
        (reverse("campaign_edit", args=[draft.pk]), _campaign_post(action="save", name="改")),
        (reverse("campaign_edit", args=[draft.pk]), _campaign_post(action="prepare")),
        (reverse("campaign_edit", args=[draft.pk]), _campaign_post(action="send")),
        (reverse("campaign_refresh", args=[sent.pk]), {}),
        (reverse("channel_code_new"), _code_post([data["mine"]])),
        (reverse("channel_code_edit", args=[code.pk]), _code_post([data["theirs"]])),
    ]


# -- access ----------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_and_writes_nothing(client, data):
    for url in _pages(data):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    before = _counts()
    for url, body in _writes(data):
        response = client.post(url, body)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    assert _counts() == before


def test_guide_gets_no_page_and_changes_nothing(
    client_for, guide_user, data, django_capture_on_commit_callbacks
):
    client = client_for(guide_user)
    for url in _pages(data):
        assert client.get(url).status_code == 403, url
    before = _counts()
    with django_capture_on_commit_callbacks() as enqueued:
        for url, body in _writes(data):
            assert client.post(url, body).status_code == 403, url
    assert _counts() == before and enqueued == []


def test_manager_reads_every_page_but_writes_nothing(
    client_for, manager, data, django_capture_on_commit_callbacks
):
    client = client_for(manager)
    for url in _pages(data):
        assert client.get(url).status_code == 200, url
    editor = client.get(reverse("campaign_edit", args=[data["draft"].pk])).content.decode()
    assert 'id="campaign-send"' not in editor and "没有修改权限" in editor
    code_editor = client.get(reverse("channel_code_edit", args=[data["code"].pk])).content.decode()
    assert 'id="code-save"' not in code_editor and "没有修改权限" in code_editor
    detail = client.get(reverse("campaign_detail", args=[data["sent"].pk])).content.decode()
    assert 'id="campaign-refresh"' not in detail
    listing = client.get(reverse("campaigns")).content.decode()
    assert reverse("campaign_new") not in listing and reverse("channel_code_new") not in listing
    before = _counts()
    with django_capture_on_commit_callbacks() as enqueued:
        for url, body in _writes(data):
            assert client.post(url, body).status_code == 403, url
    assert _counts() == before and enqueued == []


def test_unknown_campaigns_and_codes_are_404(client_for, operator):
    client = client_for(operator)
    for name in ("campaign_detail", "campaign_edit", "channel_code_detail", "channel_code_edit"):
        assert client.get(reverse(name, args=[999])).status_code == 404, name
    assert client.get(reverse("channel_code_qr", args=[999])).status_code == 404
    assert client.post(reverse("campaign_refresh", args=[999])).status_code == 404


def test_the_placeholder_is_gone_and_the_nav_marks_campaigns(client_for, operator, data):
    body = client_for(operator).get(reverse("campaigns")).content.decode()
    assert "此页面尚未建成" not in body
    assert f'<a href="{reverse("campaigns")}" aria-current="page">' in body
    detail = client_for(operator).get(reverse("channel_code_detail", args=[data["code"].pk]))
    assert f'<a href="{reverse("campaigns")}" aria-current="page">' in detail.content.decode()


# -- the lists -------------------------------------------------------------------------------------


def test_selectors_match_the_hand_built_data(data):
    stats = selectors.campaign_stats([data["sent"], data["draft"]])
    assert stats[data["sent"].pk].as_dict() == SENT_STATS
    assert stats[data["draft"].pk].as_dict() == {
        **{key: 0 for key in SENT_STATS},
        "revenue": Decimal(0),
        "roi": None,
    }
    # the list's batched credit is attribution's, campaign by campaign
    result = attribution(campaign=data["sent"])
    assert (result["buyers"], result["revenue"], result["roi"]) == (1, 150.0, 0.5)
    assert code_stats(code_ids=[data["code"].pk])[data["code"].pk] == CODE_STATS


def test_a_person_who_added_two_guides_through_a_code_is_counted_once(data):
    """王芳 adds guide0002 through the parcel card too: still 3 adds, 2 members, her
    orders counted once (revenue 650), cost per member unchanged. 李娜 adds again and
    stays: a member now, not gone within 7 days."""
    now = timezone.now()
    theirs = Guide.objects.get(wecom_userid="guide0002")
    RelationshipFactory(
        customer=data["wang"], guide=theirs, state="cc-parcel", added_at=now - timedelta(days=9)
    )
    stats = code_stats(code_ids=[data["code"].pk])[data["code"].pk]
    assert stats == CODE_STATS
    li = Customer.objects.get(name="李娜")
    RelationshipFactory(customer=li, guide=theirs, state="cc-parcel", added_at=now)
    again = code_stats(code_ids=[data["code"].pk])[data["code"].pk]
    assert (again["adds"], again["members"], again["deleted_within_7d"]) == (3, 3, 0)
    assert again["revenue"] == CODE_STATS["revenue"]


def test_a_later_touch_takes_the_credit_in_the_list_as_in_attribution(data):
    """王芳 received another campaign between ours and her order: ours gets nothing."""
    later = Campaign.objects.create(
        name="later", segment=GUIDE1_SEGMENT, text="x", status="sent", sent_at=timezone.now()
    )
    CampaignRecipient.objects.create(
        campaign=later,
        customer=data["wang"],
        guide=data["mine"],
        variant="a",
        status="sent",
        sent_at=timezone.now() - timedelta(days=3, hours=1),
    )
    stats = selectors.campaign_stats([data["sent"]])[data["sent"].pk]
    result = attribution(campaign=data["sent"])
    assert (stats.buyers, stats.revenue) == (0, Decimal(0))
    assert (result["buyers"], result["revenue"]) == (0, 0.0)


def test_list_shows_campaigns_and_codes_with_their_numbers(client_for, operator, data):
    response = client_for(operator).get(reverse("campaigns"))
    assert response.status_code == 200
    campaigns = response.context["campaigns"]
    assert [c.name for c in campaigns] == ["新品预告", "秋冬上新"]  # newest first
    assert campaigns[1].stats.as_dict() == SENT_STATS
    assert str(campaigns[1].status_label) == "已交给导购"
    codes = response.context["codes"]
    assert [c.name for c in codes] == ["门店海报", "双11包裹卡"]
    assert codes[1].stats == CODE_STATS
    body = response.content.decode()
    row = body[body.index(f'data-campaign="{data["sent"].pk}"') :]
    row = row[: row.index("</tr>")]
    cells = [part.split("</td>")[0] for part in row.split('<td class="num">')[1:]]
    assert cells == ["6", "3", "1", "2", "1", "1", "150.00", "50.0%"]
    code_row = body[body.index(f'data-code="{data["code"].pk}"') :]
    code_row = code_row[: code_row.index("</tr>")]
    assert "张晓" in code_row and "包裹卡" in code_row
    numbers = [part.split("</td>")[0].split(">")[-1] for part in code_row.split('class="num"')[1:]]
    assert numbers == ["3", "1", "2", "50.0%", "50.0%", "650.00", "50.00", "200"]


def test_list_queries_do_not_grow_with_campaigns_or_codes(
    client_for, operator, data, django_assert_max_num_queries
):
    client = client_for(operator)

    def grow(count: int) -> None:
        for number in range(count):
            campaign = Campaign.objects.create(
                name=f"c{number}", segment=GUIDE1_SEGMENT, text="x", status="sent"
            )
            CampaignRecipient.objects.create(
                campaign=campaign,
                customer=data["wang"],
                guide=data["mine"],
                variant="a",
                status="sent",
                sent_at=timezone.now() - timedelta(days=1),
            )
            code = ChannelCode.objects.create(name=f"k{number}", source="other", state=f"k{number}")
            code.guides.set([data["mine"], data["theirs"]])

    client.get(reverse("campaigns"))  # warm the session and permission caches
    # user, permissions (user's, groups'), role; campaigns + their stats; codes, their
    # guides, and code_stats (codes, adds, welcomes)
    with django_assert_max_num_queries(11) as few:
        assert client.get(reverse("campaigns")).status_code == 200
    grow(8)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("campaigns"))
    assert len(response.context["campaigns"]) == 10 and len(response.context["codes"]) == 10


# -- a channel code's page -------------------------------------------------------------------------


def test_code_page_shows_the_qr_stats_adds_by_day_and_welcomes(client_for, operator, data):
    code = data["code"]
    client = client_for(operator)
    response = client.get(reverse("channel_code_detail", args=[code.pk]))
    body = response.content.decode()
    qr = reverse("channel_code_qr", args=[code.pk])
    assert f'<img src="{qr}"' in body and f'href="{qr}?download=1"' in body
    assert response.context["code"].stats == CODE_STATS
    adds = response.context["adds"]
    assert len(adds) == 30
    by_day = {day: (n, members) for day, n, members in adds}
    today = timezone.localdate()
    assert by_day[today - timedelta(days=10)] == (1, 1)  # 王芳
    assert by_day[today - timedelta(days=5)] == (1, 0)  # 李娜, deleted since
    assert by_day[today - timedelta(days=3)] == (1, 1)  # 赵敏
    assert sum(n for _, n, _ in adds) == response.context["adds_total"] == 3
    assert adds[0][0] == today  # newest first
    welcomes = response.context["welcomes"]
    assert [w.latency_ms for w in welcomes] == [25_000, 200, 300, 100]
    assert welcomes[1].guide_name == "张晓" and welcomes[1].customer == data["wang"]
    assert reverse("customer_detail", args=[data["wang"].pk]) in body
    assert 'data-stat="welcome_median_ms">200 ms<' in body
    assert '<span class="chip">链接</span>会员中心' in body
    has_echarts = finders.find("vendor/echarts.min.js") is not None
    assert ('data-chart="adds-chart"' in body) is has_echarts
    assert 'id="adds-by-day"' in body  # the table, chart or not
    if has_echarts:
        chart = response.context["chart"]
        assert chart["series"][0]["data"] == [n for _, n, _ in reversed(adds)]


def test_qr_image_and_download(client_for, manager, data):
    client = client_for(manager)
    url = reverse("channel_code_qr", args=[data["code"].pk])
    image = client.get(url)
    assert image["Content-Type"] == "image/png" and image.content[:8] == PNG
    assert "Content-Disposition" not in image
    download = client.get(url + "?download=1")
    assert download.content == image.content
    assert download["Content-Disposition"] == (
        f'attachment; filename="channel-code-{data["code"].pk}-cc-parcel.png"'
    )


# -- the channel code editor (against the emulator) ------------------------------------------------


def test_operator_creates_a_code_in_wecom(client_for, operator, emulator):
    guides = list(Guide.objects.order_by("wecom_userid")[:2])
    group = TagGroup.objects.create(name="来源")
    tag = Tag.objects.create(group=group, name="直播")
    plan = SopPlan.objects.create(name="直播新客", trigger="manual", started_at=timezone.now())
    response = client_for(operator).post(
        reverse("channel_code_new"),
        _code_post(guides, tags=[str(tag.pk)], sop_plan=str(plan.pk)),
    )
    code = ChannelCode.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("channel_code_detail", args=[code.pk])
    assert (code.name, code.source, code.cost, code.created_by) == (
        "直播间活码",
        "live",
        Decimal("200"),
        operator,
    )
    assert list(code.tags.all()) == [tag] and code.sop_plan == plan
    assert code.welcome_attachments == [
        {"type": "link", "title": "直播回放", "url": "https://example.com/live"}
    ]
    way = emulator.data.contact_ways[code.config_id]
    assert way["state"] == code.state and way["user"] == [g.wecom_userid for g in guides]
    assert way["remark"] == "直播间活码"
    assert code.qr_code == way["qr_code"]


def test_operator_changes_a_codes_guides_in_wecom(client_for, operator, emulator):
    client = client_for(operator)
    first, second, third = Guide.objects.order_by("wecom_userid")[:3]
    client.post(reverse("channel_code_new"), _code_post([first]))
    code = ChannelCode.objects.get()
    page = client.get(reverse("channel_code_edit", args=[code.pk]))
    assert page.context["form"]["guides"].value() == [first.pk]
    response = client.post(
        reverse("channel_code_edit", args=[code.pk]),
        _code_post([second, third], name="直播间活码2"),
    )
    assert response.status_code == 302
    code.refresh_from_db()
    assert code.name == "直播间活码2"
    assert emulator.data.contact_ways[code.config_id]["user"] == [
        second.wecom_userid,
        third.wecom_userid,
    ]
    assert ChannelCode.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"guides": []}, "活码至少要有一位在职导购接待"),
        ({"guides": [], "distribution": "by_store"}, "「门店的导购」需要选择门店"),
        ({"welcome_text": "好" * 1500}, "欢迎语最多 4000 字节"),
    ],
)
def test_a_refused_code_shows_the_reason_and_keeps_nothing(
    client_for, operator, emulator, overrides, reason
):
    ways = dict(emulator.data.contact_ways)
    guides = list(Guide.objects.order_by("wecom_userid")[:1])
    response = client_for(operator).post(
        reverse("channel_code_new"), _code_post(guides, **overrides)
    )
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert ChannelCode.objects.count() == 0 and ChannelCode.guides.through.objects.count() == 0
    assert emulator.data.contact_ways == ways


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"name": ""}, "name", "必填项"),
        ({"cost": "-1"}, "cost", "大于或等于0"),
        ({"welcome_attachments": "[{"}, "welcome_attachments", "无法读取"),
        (
            {"welcome_attachments": json.dumps([{"type": "link", "title": "x"}])},
            "welcome_attachments",
            "缺少：链接地址",
        ),
        ({"welcome_attachments": json.dumps([{"type": "video"}])}, "welcome_attachments", "类型"),
    ],
)
def test_unreadable_code_input_is_shown_on_its_field(
    client_for, operator, data, overrides, field, reason
):
    before = _counts()
    response = client_for(operator).post(
        reverse("channel_code_new"), _code_post([data["mine"]], **overrides)
    )
    assert response.status_code == 400
    assert any(reason in error for error in response.context["form"].errors[field])
    assert _counts() == before


def test_only_manual_tags_are_offered(client_for, operator, data):
    group = TagGroup.objects.create(name="分层")
    manual = Tag.objects.create(group=group, name="手动")
    rule = Tag.objects.create(group=group, name="规则", source=Tag.Source.RULE)
    form = client_for(operator).get(reverse("channel_code_new")).context["form"]
    assert list(form.fields["tags"].queryset) == [manual]
    response = client_for(operator).post(
        reverse("channel_code_new"), _code_post([data["mine"]], tags=[str(rule.pk)])
    )
    assert response.status_code == 400 and "tags" in response.context["form"].errors


def test_code_editor_has_variable_buttons_and_attachment_editor(client_for, operator, data):
    body = client_for(operator).get(reverse("channel_code_new")).content.decode()
    for variable in ("{称呼}", "{导购姓名}", "{门店}"):
        assert f'data-insert="{variable}"' in body
    assert 'data-attachments="id_welcome_attachments"' in body
    assert "campaigns/message_editor.js" in body


# -- the campaign editor ---------------------------------------------------------------------------


def test_editor_reuses_tagging_condition_builder(client_for, operator, data):
    response = client_for(operator).get(reverse("campaign_new"))
    body = response.content.decode()
    assert "tagging/rule_editor.js" in body and 'id="rule-form"' in body
    assert 'name="condition"' in body and 'id="rule-spec"' in body
    assert response.context["spec"]["preview_url"] == "/api/v1/tag-rules/preview"
    for action in ("save", "prepare", "schedule", "send"):
        assert f'name="action" value="{action}"' in body
    assert response.context["reach"] is None


def test_operator_saves_a_draft(client_for, operator, data):
    response = client_for(operator).post(
        reverse("campaign_new"), _campaign_post(text_b="B 版", holdout_percent="10")
    )
    campaign = Campaign.objects.get(name="会员日")
    assert response.status_code == 302
    assert response["Location"] == reverse("campaign_edit", args=[campaign.pk])
    assert (campaign.status, campaign.segment, campaign.text, campaign.text_b) == (
        "draft",
        GUIDE1_SEGMENT,
        "会员日全场 8 折",
        "B 版",
    )
    assert (campaign.holdout_percent, campaign.cost, campaign.created_by) == (
        10,
        Decimal("50"),
        operator,
    )
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 0


def test_computing_the_reach_shows_it_before_sending(client_for, operator, data):
    OptOut.objects.create(customer=data["zhou"])
    client = client_for(operator)
    response = client.post(reverse("campaign_new"), _campaign_post(action="prepare"))
    campaign = Campaign.objects.get(name="会员日")
    assert response["Location"] == reverse("campaign_edit", args=[campaign.pk]) + "#reach"
    assert campaign.status == "draft" and campaign.prepared_at is not None
    page = client.get(response["Location"])
    reach = page.context["reach"]
    # guide0001 follows 王芳, 赵敏 and 周杰 (opted out); 李娜 deleted him
    assert (reach["matched"], reach["reach"], reach["holdout"]) == (3, 2, 0)
    assert reach["held"] == {"opted_out": 1}
    assert [(code, str(label), n) for code, label, n in reach["held_rows"]] == [
        ("opted_out", "客户拒绝触达", 1)
    ]
    assert reach["guides"] == [{"userid": "guide0001", "name": "张晓", "reach": 2, "held": 1}]
    body = page.content.decode()
    assert 'data-reach="reach">2<' in body and 'data-held="opted_out">客户拒绝触达 1<' in body
    # changing who receives it makes the reach stale: computed again before sending
    client.post(
        reverse("campaign_edit", args=[campaign.pk]),
        _campaign_post(
            condition=json.dumps({"fact": "guide", "op": "any_of", "value": ["guide0002"]})
        ),
    )
    campaign.refresh_from_db()
    assert campaign.prepared_at is None
    assert client.get(reverse("campaign_edit", args=[campaign.pk])).context["reach"] is None


def test_send_now_enqueues_once_committed(
    client_for, operator, data, monkeypatch, django_capture_on_commit_callbacks
):
    from campaigns import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.send_campaign, "delay", sent.append)
    draft = data["draft"]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(operator).post(
            reverse("campaign_edit", args=[draft.pk]), _campaign_post(action="send")
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("campaign_detail", args=[draft.pk])
    assert len(callbacks) == 1 and sent == [draft.pk]
    draft.refresh_from_db()
    assert draft.status == "scheduled" and draft.prepared_at is not None
    assert draft.schedule_at <= timezone.now()
    assert CampaignRecipient.objects.filter(campaign=draft).count() == 3


def test_schedule_sets_the_time_and_recomputes_at_sending(client_for, operator, data):
    draft = data["draft"]
    at = timezone.localtime() + timedelta(days=2)
    response = client_for(operator).post(
        reverse("campaign_edit", args=[draft.pk]),
        _campaign_post(action="schedule", schedule_at=at.strftime("%Y-%m-%dT%H:%M")),
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == "scheduled"
    assert draft.schedule_at == at.replace(second=0, microsecond=0)
    assert draft.prepared_at is None  # campaign_send prepares it again when it goes out
    page = client_for(operator).get(reverse("campaign_edit", args=[draft.pk]))
    assert page.context["reach"]["matched"] == 3 and 'id="campaign-unschedule"' in (
        page.content.decode()
    )
    # the reach computed again before it goes out: still prepared again when sent
    client_for(operator).post(
        reverse("campaign_edit", args=[draft.pk]),
        _campaign_post(action="prepare", schedule_at=at.strftime("%Y-%m-%dT%H:%M")),
    )
    draft.refresh_from_db()
    assert (draft.status, draft.prepared_at) == ("scheduled", None)
    client_for(operator).post(reverse("campaign_edit", args=[draft.pk]), {"action": "unschedule"})
    draft.refresh_from_db()
    assert draft.status == "draft"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"action": "schedule", "schedule_at": ""}, "请选择一个将来的发送时间"),
        ({"action": "schedule", "schedule_at": "2020-01-01T10:00"}, "请选择一个将来的发送时间"),
        ({"action": "send", "text": ""}, "内容不能为空"),
        ({"action": "prepare", "text": ""}, "内容不能为空"),
        # a segment no one fits: nothing to send (its cost would be booked)
        (
            {
                "action": "send",
                "condition": json.dumps({"fact": "purchase_days", "op": ">=", "value": 100000}),
            },
            "没有可以群发的客户（人群匹配 0 位",
        ),  # fmt: skip
        (
            {
                "action": "schedule",
                "schedule_at": "2099-01-01T10:00",
                "condition": json.dumps({"fact": "purchase_days", "op": ">=", "value": 100000}),
            },
            "没有可以群发的客户",
        ),  # fmt: skip
    ],
)
def test_a_refused_campaign_shows_the_reason_and_keeps_nothing(
    client_for, operator, data, overrides, reason, django_capture_on_commit_callbacks
):
    before = _counts()
    with django_capture_on_commit_callbacks() as enqueued:
        new = client_for(operator).post(reverse("campaign_new"), _campaign_post(**overrides))
        edit = client_for(operator).post(
            reverse("campaign_edit", args=[data["draft"].pk]), _campaign_post(**overrides)
        )
    for response in (new, edit):
        assert response.status_code == 400
        assert reason in response.content.decode()
        assert 'id="campaign-error"' in response.content.decode()
    assert _counts() == before and enqueued == []


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"condition": "{"}, "condition", "不是有效的 JSON"),
        ({"condition": json.dumps({"all": []})}, "condition", "需要至少一个子条件"),
        ({"condition": json.dumps({"fact": "nope", "op": "=", "value": 1})}, "condition", "nope"),
        (
            {"condition": json.dumps({"fact": "guide", "op": "any_of", "value": ["ghost"]})},
            "condition",
            "ghost",
        ),
        ({"holdout_percent": "60"}, "holdout_percent", "小于或等于50"),
        ({"attachments": json.dumps([{"type": "image"}])}, "attachments", "缺少：图片地址"),
        ({"name": ""}, "name", "必填"),
        # one text goes to every customer: a welcome's variable would stay as written
        ({"text": "{称呼}，上新了"}, "text", "{称呼} 不会换成各人的内容"),
        ({"text_b": "{导购姓名}推荐"}, "text_b", "{导购姓名} 不会换成各人的内容"),
    ],
)
def test_unreadable_campaign_input_is_shown_on_its_field(
    client_for, operator, data, overrides, field, reason
):
    before = _counts()
    response = client_for(operator).post(
        reverse("campaign_new"), _campaign_post(action="send", **overrides)
    )
    assert response.status_code == 400
    assert any(reason in error for error in response.context["form"].errors[field])
    assert _counts() == before


def test_a_stored_text_with_a_variable_is_not_sent(data):
    """One saved before the form refused them (the demo had one) is refused at sending."""
    from campaigns.sending import CampaignError, campaign_prepare

    draft = data["draft"]
    draft.text = "{称呼}，秋冬上新"
    draft.save(update_fields=["text"])
    with pytest.raises(CampaignError, match="{称呼} 不会换成各人的内容"):
        campaign_prepare(campaign=draft)
    assert not CampaignRecipient.objects.filter(campaign=draft).exists()


def test_an_ab_campaign_shows_each_contents_results(client_for, operator, data):
    """李娜 received B (she bought nothing); 王芳, who bought, received A."""
    sent = data["sent"]
    sent.text_b = "秋冬上新 B 版"
    sent.save(update_fields=["text_b"])
    CampaignRecipient.objects.filter(campaign=sent, customer__name="李娜").update(
        variant="b", status="sent", sent_at=sent.sent_at
    )
    result = attribution(campaign=sent)
    assert result["variants"] == {
        "a": {"received": 1, "buyers": 1, "revenue": 150.0, "conversion": 1.0},
        "b": {"received": 1, "buyers": 0, "revenue": 0.0, "conversion": 0.0},
    }
    assert (result["received"], result["buyers"], result["revenue"]) == (2, 1, 150.0)
    body = client_for(operator).get(reverse("campaign_detail", args=[sent.pk])).content.decode()
    row = body.split('data-variant="b"')[1].split("</tr>")[0]
    assert ">内容 B<" in row and ">0.0%<" in row
    api = client_for(operator).get(reverse("campaign-detail", args=[sent.pk])).json()
    assert api["attribution"]["variants"] == result["variants"]


def test_a_sent_campaign_cannot_be_edited(client_for, operator, data):
    sent = data["sent"]
    client = client_for(operator)
    page = client.get(reverse("campaign_edit", args=[sent.pk]))
    assert page["Location"] == reverse("campaign_detail", args=[sent.pk])
    before = _counts()
    response = client.post(reverse("campaign_edit", args=[sent.pk]), _campaign_post(name="改"))
    assert response.status_code == 302 and _counts() == before
    assert 'id="campaign-edit"' not in (
        client.get(reverse("campaign_detail", args=[sent.pk])).content.decode()
    )


# -- a campaign's page -----------------------------------------------------------------------------


def test_campaign_page_shows_funnel_guides_and_attribution(client_for, operator, data):
    sent = data["sent"]
    response = client_for(operator).get(reverse("campaign_detail", args=[sent.pk]))
    assert [(key, n) for key, _, n, _ in response.context["funnel"]] == [
        ("targeted", 3),
        ("handed", 3),
        ("received", 1),
        ("purchased", 1),
    ]
    result = response.context["result"]
    assert result == attribution(campaign=sent)
    assert (result["received"], result["buyers"], result["revenue"]) == (1, 1, 150.0)
    assert (result["conversion"], result["holdout"], result["holdout_conversion"]) == (1.0, 2, 0.5)
    # the uplift compares like with like: all four targeted (王芳 bought; 李娜 and 孙丽
    # still waiting, 陈晨 held back) against the holdout, both from the handover
    assert (result["targeted_conversion"], result["uplift"], result["roi"]) == (0.25, -0.25, 0.5)
    guides = [
        (g.userid, g.tasks, g.confirmed, g.handed, g.sent, g.waiting, g.reminders, g.is_done)
        for g in response.context["guides"]
    ]
    assert guides == [
        ("guide0002", 1, 0, 1, 0, 1, 2, False),  # has not sent: first
        ("guide0001", 1, 1, 2, 1, 1, 0, True),
    ]
    body = response.content.decode()
    assert "末次触达归因：收到群发后 7 天内的订单，期间没有更晚的触达" in body
    assert 'data-result="roi">50.0%<' in body and 'data-result="uplift">-25.0 个百分点<' in body
    assert 'data-result="targeted_conversion">25.0%<' in body
    assert 'data-held="opted_out">客户拒绝触达 1<' in body
    assert 'id="campaign-refresh"' in body


def test_refresh_reads_results_from_wecom(client_for, operator, manager, emulator):
    campaign = Campaign.objects.create(
        name="秋冬上新",
        segment={"fact": "guide", "op": "any_of", "value": ["guide0001", "guide0002"]},
        text="秋冬家居服上新了",
    )
    campaign_send(campaign_id=campaign.pk, gateway=WeComGateway.from_settings())
    message = CampaignMessage.objects.get(guide__wecom_userid="guide0001")
    emulator.guide_confirms_send(message.msgid, "guide0001")
    url = reverse("campaign_refresh", args=[campaign.pk])
    assert client_for(manager).post(url).status_code == 403
    assert not CampaignRecipient.objects.filter(campaign=campaign, status="sent").exists()
    response = client_for(operator).post(url, follow=True)
    received = CampaignRecipient.objects.filter(campaign=campaign, status="sent")
    assert received.count() == message.recipients > 0
    assert set(received.values_list("guide__wecom_userid", flat=True)) == {"guide0001"}
    assert f"{message.recipients} 位客户新收到" in response.content.decode()
    guides = {g.userid: g for g in response.context["guides"]}
    assert guides["guide0001"].is_done and not guides["guide0002"].is_done


def test_refresh_before_sending_says_so(client_for, operator, data):
    response = client_for(operator).post(
        reverse("campaign_refresh", args=[data["draft"].pk]), follow=True
    )
    assert "交给导购之后才能刷新结果" in response.content.decode()


def test_pages_in_english(client_for, operator, data):
    client = client_for(operator)
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    body = client.get(reverse("campaigns")).content.decode()
    assert "Channel codes" in body and "First order in 7 days" in body
    assert "Handed to guides" in body and "Parcel card" in body
    editor = client.get(reverse("campaign_new")).content.decode()
    assert "Compute reach" in editor and "Send now" in editor and "Holdout %" in editor
    detail = client.get(reverse("campaign_detail", args=[data["sent"].pk])).content.decode()
    assert "Funnel" in detail and "Guides' progress" in detail
    assert "Last touch: orders within 7 days after receiving the campaign" in detail
    code = client.get(reverse("channel_code_detail", args=[data["code"].pk])).content.decode()
    assert "Download QR code (PNG)" in code and "Welcome median latency" in code
    code_editor = client.get(reverse("channel_code_new")).content.decode()
    assert "Create code" in code_editor and "Tags added on joining" in code_editor


def test_a_customers_campaigns_say_what_happened_to_them(client_for, operator, guide_user, data):
    client = client_for(operator)
    sent = data["sent"]
    for person, status, reason in (
        ("wang", "已送达", "—"),
        ("li", "待导购确认", "—"),
        ("chen", "被拦截", "客户拒绝触达"),
        ("zhao", "对照组（不发送）", "—"),
    ):
        customer = data[person]
        profile = client.get(reverse("customer_detail", args=[customer.pk])).content.decode()
        link = reverse("customer_campaigns", args=[customer.pk])
        assert f'href="{link}" id="customer-campaigns"' in profile
        body = client.get(link).content.decode()
        row = body.split(f'data-campaign="{sent.pk}"')[1].split("</tr>")[0]
        cells = [cell.split("</td>")[0] for cell in row.split("<td>")[1:]]
        assert "秋冬上新" in cells[0] and cells[4:] == [status, reason], person
    nobody = client.get(reverse("customer_campaigns", args=[data["zhou"].pk + 1000]))
    assert nobody.status_code == 404
    guide = client_for(guide_user).get(reverse("customer_campaigns", args=[data["wang"].pk]))
    assert guide.status_code == 403


def test_no_roi_or_holdout_rate_before_anyone_received_the_campaign(data):
    """Handed to guides, not yet sent: its cost is not a loss of 100 % yet, and its
    holdout has nothing to be compared with."""
    campaign = data["sent"]
    campaign.recipients.filter(status="sent").update(status="queued")
    assert campaign.cost > 0 and campaign.recipients.filter(status="holdout").exists()
    assert selectors.campaign_stats([campaign])[campaign.pk].roi is None
    result = attribution(campaign=campaign)
    assert (result["received"], result["roi"], result["holdout_conversion"]) == (0, None, None)
