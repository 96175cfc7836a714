"""活动 API: channel codes with their numbers (written in WeCom through channel_code_save)
and their QR image, campaigns with their reach and attribution, prepare and send; who
may call what, and that refusals write nothing."""

from decimal import Decimal

import pytest
from django.urls import reverse

from campaigns.models import Campaign, ChannelCode
from contacts.models import Guide
from tagging.models import Tag, TagGroup
from tests.campaigns.test_pages import (
    CODE_STATS,
    GUIDE1_SEGMENT,
    PNG,
    SENT_STATS,
    _counts,
    build_campaign_data,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(guide_user, other_guide_user) -> dict:
    return build_campaign_data()


def _send(client, method: str, url: str, body=None):
    return getattr(client, method)(url, body, content_type="application/json")


def _code_body(chosen: list[Guide], **overrides) -> dict:
    body = {
        "name": "直播间活码",
        "source": "live",
        "distribution": "round_robin",
        "guides": [guide.pk for guide in chosen],
        "tags": [],
        "welcome_text": "{称呼}您好",
        "welcome_attachments": [{"type": "image", "pic_url": "https://example.com/a.png"}],
        "cost": "80.00",
    }
    body.update(overrides)
    return body


def _campaign_body(**overrides) -> dict:
    body = {"name": "会员日", "segment": GUIDE1_SEGMENT, "text": "会员日全场 8 折", "cost": "50"}
    body.update(overrides)
    return body


def _reads(data: dict) -> list[str]:
    code, sent = data["code"], data["sent"]
    return [
        reverse("channel-code-list"),
        reverse("channel-code-detail", args=[code.pk]),
        reverse("channel-code-qr", args=[code.pk]),
        reverse("campaign-list"),
        reverse("campaign-detail", args=[sent.pk]),
    ]


def _writes(data: dict) -> list[tuple[str, str, dict | None]]:
    code, draft = data["code"], data["draft"]
    return [
        ("post", reverse("channel-code-list"), _code_body([data["mine"]])),
        ("put", reverse("channel-code-detail", args=[code.pk]), _code_body([data["theirs"]])),
        ("patch", reverse("channel-code-detail", args=[code.pk]), {"name": "改"}),
        ("post", reverse("campaign-list"), _campaign_body()),
        ("put", reverse("campaign-detail", args=[draft.pk]), _campaign_body(name="改")),
        ("patch", reverse("campaign-detail", args=[draft.pk]), {"name": "改"}),
        ("post", reverse("campaign-prepare", args=[draft.pk]), None),
        ("post", reverse("campaign-send", args=[draft.pk]), None),
    ]


# -- access ----------------------------------------------------------------------------------------


def test_anonymous_gets_nothing(client, data):
    for url in _reads(data):
        assert client.get(url).status_code in (401, 403), url
    before = _counts()
    for method, url, body in _writes(data):
        assert _send(client, method, url, body).status_code in (401, 403), url
    assert _counts() == before


def test_guide_gets_nothing_and_changes_nothing(
    client_for, guide_user, data, django_capture_on_commit_callbacks
):
    client = client_for(guide_user)
    for url in _reads(data):
        assert client.get(url).status_code == 403, url
    before = _counts()
    with django_capture_on_commit_callbacks() as enqueued:
        for method, url, body in _writes(data):
            assert _send(client, method, url, body).status_code == 403, url
    assert _counts() == before and enqueued == []


def test_manager_reads_but_writes_nothing(
    client_for, manager, data, django_capture_on_commit_callbacks
):
    client = client_for(manager)
    for url in _reads(data):
        assert client.get(url).status_code == 200, url
    before = _counts()
    with django_capture_on_commit_callbacks() as enqueued:
        for method, url, body in _writes(data):
            assert _send(client, method, url, body).status_code == 403, url
    assert _counts() == before and enqueued == []


# -- channel codes ---------------------------------------------------------------------------------


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def test_channel_codes_with_their_numbers(client_for, operator, data):
    client = client_for(operator)
    listing = client.get(reverse("channel-code-list")).json()
    assert [row["name"] for row in listing["results"]] == ["门店海报", "双11包裹卡"]
    row = listing["results"][1]
    expected = {
        **CODE_STATS,
        "revenue": _money(CODE_STATS["revenue"]),
        "cost_per_member": _money(CODE_STATS["cost_per_member"]),
    }
    assert row["stats"] == expected
    assert row["guides"] == [data["mine"].pk] and row["state"] == "cc-parcel"
    assert row["qr_png"] == f"http://testserver/api/v1/channel-codes/{data['code'].pk}/qr.png"
    detail = client.get(reverse("channel-code-detail", args=[data["code"].pk])).json()
    assert detail["stats"] == expected and detail["cost"] == "100.00"
    assert listing["results"][0]["stats"]["adds"] == 0


def test_qr_png(client_for, operator, data):
    response = client_for(operator).get(reverse("channel-code-qr", args=[data["code"].pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png" and response.content[:8] == PNG
    assert response["Content-Disposition"] == (
        f'inline; filename="channel-code-{data["code"].pk}.png"'
    )
    # errors are JSON, also to a client that asked for the image
    missing = client_for(operator).get(
        reverse("channel-code-qr", args=[data["code"].pk + 1000]), HTTP_ACCEPT="image/png"
    )
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert "detail" in missing.json()


def test_channel_code_list_queries_do_not_grow(
    client_for, operator, data, django_assert_max_num_queries
):
    client = client_for(operator)
    client.get(reverse("channel-code-list"))
    with django_assert_max_num_queries(10) as few:
        client.get(reverse("channel-code-list"))
    for number in range(6):
        code = ChannelCode.objects.create(name=f"k{number}", source="other", state=f"k{number}")
        code.guides.set([data["mine"], data["theirs"]])
        code.tags.set(
            [
                Tag.objects.create(
                    group=TagGroup.objects.get_or_create(name="g")[0], name=f"t{number}"
                )
            ]
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(reverse("channel-code-list")).json()["results"]) == 8


def test_operator_creates_and_changes_a_code_in_wecom(client_for, operator, emulator):
    client = client_for(operator)
    first, second = Guide.objects.order_by("wecom_userid")[:2]
    tag = Tag.objects.create(group=TagGroup.objects.create(name="来源"), name="直播")
    response = _send(
        client, "post", reverse("channel-code-list"), _code_body([first], tags=[tag.pk])
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    code = ChannelCode.objects.get()
    assert body["id"] == code.pk and body["config_id"] == code.config_id
    assert body["stats"]["adds"] == 0 and body["tags"] == [tag.pk]
    way = emulator.data.contact_ways[code.config_id]
    assert way["user"] == [first.wecom_userid] and way["state"] == code.state
    # PATCH: only the guides change; the rest stays
    response = _send(
        client, "patch", reverse("channel-code-detail", args=[code.pk]), {"guides": [second.pk]}
    )
    assert response.status_code == 200, response.json()
    code.refresh_from_db()
    assert way["user"] == [second.wecom_userid] == code.wecom_users
    assert (code.name, list(code.tags.all()), code.cost) == ("直播间活码", [tag], Decimal("80"))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"guides": []}, "活码至少要有一位在职导购接待"),
        ({"distribution": "by_store"}, "「门店的导购」需要选择门店"),
        ("rule_tag", "入群标签只能是手动标签"),
        ({"welcome_attachments": [{"type": "link", "title": "x"} for _ in range(10)]}, "缺少"),
        (
            {"welcome_attachments": [{"type": "image", "pic_url": "https://e.com/a"}] * 10},
            "最多 9 个附件",
        ),
    ],
)
def test_a_refused_code_is_a_400_with_the_reason(client_for, operator, emulator, overrides, reason):
    if overrides == "rule_tag":
        rule = Tag.objects.create(
            group=TagGroup.objects.create(name="分层"), name="高价值", source=Tag.Source.RULE
        )
        overrides = {"tags": [rule.pk]}
    ways = dict(emulator.data.contact_ways)
    guides = list(Guide.objects.order_by("wecom_userid")[:1])
    response = _send(
        client_for(operator), "post", reverse("channel-code-list"), _code_body(guides, **overrides)
    )
    assert response.status_code == 400
    assert reason in str(response.json())
    assert ChannelCode.objects.count() == 0 and emulator.data.contact_ways == ways


# -- campaigns -------------------------------------------------------------------------------------


def test_campaigns_with_reach_and_attribution(client_for, operator, data):
    client = client_for(operator)
    listing = client.get(reverse("campaign-list")).json()
    assert [row["name"] for row in listing["results"]] == ["新品预告", "秋冬上新"]
    sent = listing["results"][1]
    assert sent["reach"] == {**SENT_STATS, "revenue": "150.00"}
    assert sent["status"] == "sent" and sent["attribution"] is None
    detail = client.get(reverse("campaign-detail", args=[data["sent"].pk])).json()
    assert detail["reach"] == sent["reach"]
    assert detail["attribution"] == {
        "rule": "末次触达归因：收到群发后 7 天内的订单，期间没有更晚的触达",
        "received": 1,
        "buyers": 1,
        "revenue": 150.0,
        "conversion": 1.0,
        "targeted_conversion": 0.25,
        "holdout": 2,
        "holdout_conversion": 0.5,
        "uplift": -0.25,
        "roi": 0.5,
        "variants": {},  # one content: no split
    }
    draft = client.get(reverse("campaign-detail", args=[data["draft"].pk])).json()
    assert draft["attribution"]["received"] == 0 and draft["reach"]["matched"] == 0


def test_campaign_list_queries_do_not_grow(
    client_for, operator, data, django_assert_max_num_queries
):
    client = client_for(operator)
    client.get(reverse("campaign-list"))
    with django_assert_max_num_queries(8) as few:
        client.get(reverse("campaign-list"))
    for number in range(6):
        Campaign.objects.create(name=f"c{number}", segment=GUIDE1_SEGMENT, text="x")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(reverse("campaign-list")).json()["results"]) == 8


def test_operator_creates_and_changes_a_draft(client_for, operator, data):
    client = client_for(operator)
    response = _send(client, "post", reverse("campaign-list"), _campaign_body(holdout_percent=10))
    assert response.status_code == 201, response.json()
    campaign = Campaign.objects.get(name="会员日")
    assert response.json()["id"] == campaign.pk and response.json()["status"] == "draft"
    assert (campaign.segment, campaign.holdout_percent, campaign.created_by) == (
        GUIDE1_SEGMENT,
        10,
        operator,
    )
    response = _send(
        client, "patch", reverse("campaign-detail", args=[campaign.pk]), {"text_b": "B 版"}
    )
    assert response.status_code == 200
    campaign.refresh_from_db()
    assert (campaign.text, campaign.text_b) == ("会员日全场 8 折", "B 版")


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"segment": {"all": []}}, "segment", "需要至少一个子条件"),
        ({"segment": {"fact": "guide", "op": "any_of", "value": ["ghost"]}}, "segment", "ghost"),
        ({"holdout_percent": 80}, "holdout_percent", "50"),
        ({"attachments": [{"type": "video"}]}, "attachments", "类型"),
    ],
)
def test_an_unreadable_campaign_is_a_400_on_its_field(
    client_for, operator, data, overrides, field, reason
):
    before = _counts()
    response = _send(
        client_for(operator), "post", reverse("campaign-list"), _campaign_body(**overrides)
    )
    assert response.status_code == 400
    assert reason in " ".join(response.json()[field])
    assert _counts() == before


def test_a_sent_campaign_cannot_be_changed(client_for, operator, data):
    before = _counts()
    response = _send(
        client_for(operator),
        "patch",
        reverse("campaign-detail", args=[data["sent"].pk]),
        {"name": "改"},
    )
    assert response.status_code == 400 and "不能再修改" in response.json()["detail"]
    assert _counts() == before


def test_prepare_returns_the_reach(client_for, operator, data):
    response = client_for(operator).post(reverse("campaign-prepare", args=[data["draft"].pk]))
    assert response.status_code == 200
    assert response.json() == {
        "matched": 3,
        "reach": 3,
        "held": {},
        "holdout": 0,
        "guides": [{"userid": "guide0001", "name": "张晓", "reach": 3, "held": 0}],
    }
    data["draft"].refresh_from_db()
    assert data["draft"].prepared_at is not None and data["draft"].status == "draft"


def test_send_is_accepted_and_enqueued_once_committed(
    client_for, operator, data, monkeypatch, django_capture_on_commit_callbacks
):
    from campaigns import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.send_campaign, "delay", sent.append)
    draft = data["draft"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(operator).post(reverse("campaign-send", args=[draft.pk]))
    assert response.status_code == 202
    assert response.json()["status"] == "scheduled" and response.json()["reach"]["reach"] == 3
    assert sent == [draft.pk]


@pytest.mark.parametrize("action", ["campaign-prepare", "campaign-send"])
def test_a_campaign_that_cannot_be_sent_is_a_400(
    client_for, operator, data, action, django_capture_on_commit_callbacks
):
    Campaign.objects.filter(pk=data["draft"].pk).update(text="")
    before = _counts()
    with django_capture_on_commit_callbacks() as enqueued:
        response = client_for(operator).post(reverse(action, args=[data["draft"].pk]))
    assert response.status_code == 400 and "内容不能为空" in response.json()["detail"]
    assert _counts() == before and enqueued == []
    sent = client_for(operator).post(reverse(action, args=[data["sent"].pk]))
    assert sent.status_code == 400 and "已发送的活动不能重新圈人" in sent.json()["detail"]


def test_schema_lists_the_campaign_api(client_for, operator):
    paths = client_for(operator).get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in (
        "/api/v1/channel-codes/",
        "/api/v1/channel-codes/{id}/",
        "/api/v1/channel-codes/{id}/qr.png",
        "/api/v1/campaigns/",
        "/api/v1/campaigns/{id}/",
        "/api/v1/campaigns/{id}/prepare/",
        "/api/v1/campaigns/{id}/send/",
    ):
        assert path in paths, path
