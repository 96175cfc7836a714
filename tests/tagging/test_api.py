"""The tagging API: tag groups, tags with counts, rules written through rule_save, the
live preview, and a customer's tags (guides scoped to their own customers)."""

import pytest
from django.urls import reverse

from tagging.models import CustomerTag, CustomerTagEvent, Tag, TagGroup, TagRule
from tagging.services import customer_tags_set, rule_save

pytestmark = pytest.mark.django_db

CONDITION = {"fact": "purchase_days", "op": ">=", "value": 2}


@pytest.fixture
def rule(operator) -> TagRule:
    return rule_save(
        tag=None,
        group=TagGroup.objects.create(name="复购"),
        name="复购两天",
        color="#13c2c2",
        condition=CONDITION,
        is_active=True,
        by=operator,
    )


def _counts() -> tuple[int, int, int, int, int]:
    return (
        TagGroup.objects.count(),
        Tag.objects.count(),
        TagRule.objects.count(),
        CustomerTag.objects.count(),
        CustomerTagEvent.objects.count(),
    )


def _writes(rule: TagRule, manual: Tag, customer_id: int) -> list[tuple[str, str, dict]]:
    tags_url = reverse("customer-tags-api", args=[customer_id])
    return [
        ("post", reverse("taggroup-list"), {"name": "新组"}),
        ("post", reverse("tag-list"), {"group": manual.group_id, "name": "新", "color": "#000000"}),
        (
            "post",
            reverse("tagrule-list"),
            {"name": "新规则", "group": rule.tag.group_id, "condition": CONDITION},
        ),
        ("patch", reverse("tagrule-detail", args=[rule.pk]), {"is_active": False}),
        ("post", tags_url, {"tag": manual.pk}),
        ("delete", f"{tags_url}?tag={manual.pk}", {}),
    ]


def _send(client, method: str, url: str, data: dict):
    return getattr(client, method)(url, data, content_type="application/json")


# -- schema and access ---------------------------------------------------------------------


def test_schema_lists_the_tagging_api(client_for, operator):
    paths = client_for(operator).get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in (
        "/api/v1/tag-groups/",
        "/api/v1/tags/",
        "/api/v1/tag-rules/",
        "/api/v1/tag-rules/{id}/",
        "/api/v1/tag-rules/preview/",
        "/api/v1/customers/{customer_id}/tags/",
    ):
        assert path in paths, path
    assert set(paths["/api/v1/customers/{customer_id}/tags/"]) >= {"get", "post", "delete"}


def test_anonymous_gets_nothing(client, tag_people, rule, manual_tag):
    customer = tag_people["A"].pk
    for url in (
        reverse("taggroup-list"),
        reverse("tag-list"),
        reverse("tagrule-list"),
        reverse("customer-tags-api", args=[customer]),
    ):
        assert client.get(url).status_code in (401, 403), url
    assert _send(
        client, "post", reverse("tagrule-preview"), {"condition": CONDITION}
    ).status_code in (
        401,
        403,
    )
    before = _counts()
    for method, url, data in _writes(rule, manual_tag, customer):
        assert _send(client, method, url, data).status_code in (401, 403), url
    assert _counts() == before


def test_guide_gets_no_console_endpoint(client_for, guide_user, tag_people, rule, manual_tag):
    client = client_for(guide_user)
    for url in (reverse("taggroup-list"), reverse("tag-list"), reverse("tagrule-list")):
        assert client.get(url).status_code == 403, url
    preview = _send(client, "post", reverse("tagrule-preview"), {"condition": CONDITION})
    assert preview.status_code == 403
    before = _counts()
    for method, url, data in _writes(rule, manual_tag, tag_people["A"].pk):
        assert _send(client, method, url, data).status_code == 403, url
    assert _counts() == before


def test_guide_reads_tags_of_own_customers_only(
    client_for, guide_user, tag_people, manual_tag, operator
):
    customer_tags_set(
        tag=manual_tag, customer_ids=[tag_people["A"].pk, tag_people["B"].pk], add=True, by=operator
    )
    client = client_for(guide_user)
    own = client.get(reverse("customer-tags-api", args=[tag_people["A"].pk]))
    assert own.status_code == 200
    assert [tag["name"] for tag in own.json()["tags"]] == ["VIP"]
    before = _counts()
    for name in ("B", "C"):
        url = reverse("customer-tags-api", args=[tag_people[name].pk])
        assert client.get(url).status_code == 404
        assert _send(client, "post", url, {"tag": manual_tag.pk}).status_code == 404
        assert _send(client, "delete", f"{url}?tag={manual_tag.pk}", {}).status_code == 404
    assert _counts() == before


def test_manager_reads_but_cannot_write(client_for, manager, tag_people, rule, manual_tag):
    client = client_for(manager)
    assert client.get(reverse("tag-list")).status_code == 200
    assert client.get(reverse("tagrule-detail", args=[rule.pk])).status_code == 200
    preview = _send(client, "post", reverse("tagrule-preview"), {"condition": CONDITION})
    assert preview.status_code == 200  # a preview writes nothing
    before = _counts()
    for method, url, data in _writes(rule, manual_tag, tag_people["A"].pk):
        assert _send(client, method, url, data).status_code == 403, url
    assert _counts() == before
    rule.refresh_from_db()
    assert rule.is_active is True


# -- groups and tags -----------------------------------------------------------------------


def test_tags_list_with_counts_and_filters(client_for, operator, tag_people, rule, manual_tag):
    customer_tags_set(
        tag=manual_tag, customer_ids=[p.pk for p in tag_people.values()], add=True, by=operator
    )
    CustomerTag.objects.create(tag=rule.tag, customer=tag_people["A"], added_at=rule.updated_at)
    client = client_for(operator)
    rows = client.get(reverse("tag-list")).json()["results"]
    assert {(row["name"], row["source"], row["customers"]) for row in rows} == {
        ("VIP", "manual", 5),
        ("复购两天", "rule", 1),
    }
    by_source = client.get(reverse("tag-list"), {"source": "rule"}).json()["results"]
    assert [row["name"] for row in by_source] == ["复购两天"]
    by_group = client.get(reverse("tag-list"), {"group": manual_tag.group_id}).json()["results"]
    assert [row["name"] for row in by_group] == ["VIP"]


def test_operator_creates_groups_and_manual_tags(client_for, operator):
    client = client_for(operator)
    group = _send(client, "post", reverse("taggroup-list"), {"name": "兴趣", "system_key": "x"})
    assert group.status_code == 201 and group.json()["system_key"] == ""
    created = _send(
        client,
        "post",
        reverse("tag-list"),
        {"group": group.json()["id"], "name": "露营", "color": "#52C41A", "source": "rule"},
    )
    assert created.status_code == 201, created.json()
    assert (created.json()["source"], created.json()["customers"]) == ("manual", 0)
    tag = Tag.objects.get()
    assert (tag.name, tag.source, tag.color) == ("露营", "manual", "#52c41a")
    duplicate = _send(
        client, "post", reverse("tag-list"), {"group": group.json()["id"], "name": "露营"}
    )
    assert duplicate.status_code == 400
    system = TagGroup.objects.create(name="生命周期", system_key="lifecycle")
    refused = _send(client, "post", reverse("tag-list"), {"group": system.pk, "name": "自建"})
    assert refused.status_code == 400 and "group" in refused.json()
    assert Tag.objects.count() == 1


# -- rules ---------------------------------------------------------------------------------


def test_operator_creates_a_rule(
    client_for, operator, tag_people, django_capture_on_commit_callbacks
):
    group = TagGroup.objects.create(name="价值")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _send(
            client_for(operator),
            "post",
            reverse("tagrule-list"),
            {
                "name": "高价值",
                "group": group.pk,
                "color": "#f5222d",
                "condition": {"fact": "net_revenue", "op": ">", "value": 400},
            },
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["group"], body["is_active"], body["audience"]) == (
        "高价值",
        group.pk,
        True,
        0,
    )
    rule = TagRule.objects.select_related("tag").get()
    assert (rule.tag.source, rule.updated_by) == ("rule", operator)
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ({"fact": "guide", "op": "any_of", "value": ["nobody"]}, "找不到导购：nobody"),
        ({"fact": "purchase_days", "op": "~", "value": 1}, "不支持运算「~」"),
        ([1], "规则条件应是一个 JSON 对象"),
    ],
)
def test_an_invalid_rule_is_a_400_with_the_reason(
    client_for, operator, tag_people, condition, reason, django_capture_on_commit_callbacks
):
    group = TagGroup.objects.create(name="价值")
    before = _counts()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _send(
            client_for(operator),
            "post",
            reverse("tagrule-list"),
            {"name": "坏", "group": group.pk, "condition": condition},
        )
    assert response.status_code == 400
    assert reason in response.json()["condition"][0]
    assert _counts() == before and callbacks == []


def test_a_tag_in_a_system_group_is_refused_by_the_groups_name(client_for, operator, tag_people):
    system = TagGroup.objects.create(name="生命周期", system_key="lifecycle")
    before = _counts()
    for url, body in (
        (reverse("tagrule-list"), {"name": "坏", "group": system.pk, "condition": {
            "fact": "purchase_days", "op": ">=", "value": 2}}),
        (reverse("tag-list"), {"name": "坏", "group": system.pk}),
    ):  # fmt: skip
        response = _send(client_for(operator), "post", url, body)
        assert response.status_code == 400, url
        assert "「生命周期」是系统或企业微信的标签组" in response.json()["group"][0], url
    missing = _send(client_for(operator), "post", reverse("tag-list"), {"name": "x", "group": 999})
    assert missing.status_code == 400 and "999" in missing.json()["group"][0]
    assert _counts() == before


def test_operator_updates_a_rule_and_an_invalid_update_changes_nothing(client_for, operator, rule):
    client = client_for(operator)
    url = reverse("tagrule-detail", args=[rule.pk])
    changed = _send(
        client, "patch", url, {"condition": {"fact": "purchase_days", "op": ">=", "value": 3}}
    )
    assert changed.status_code == 200, changed.json()
    rule.refresh_from_db()
    assert rule.condition["value"] == 3 and rule.tag.name == "复购两天"
    renamed = _send(client, "patch", url, {"name": "复购三天", "is_active": False})
    assert renamed.status_code == 200
    rule.refresh_from_db()
    assert (rule.tag.name, rule.is_active, rule.condition["value"]) == ("复购三天", False, 3)
    refused = _send(client, "patch", url, {"condition": {"fact": "height", "op": ">", "value": 1}})
    assert refused.status_code == 400
    assert "未知的条件项「height」" in refused.json()["condition"][0]
    rule.refresh_from_db()
    assert rule.condition["value"] == 3
    assert TagRule.objects.count() == 1 and Tag.objects.count() == 1


# -- the preview ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"fact": "purchase_days", "op": ">=", "value": 2}, ["A", "B"]),
        ({"fact": "purchase_days", "op": "=", "value": 0}, ["D", "E"]),
        ({"fact": "channel", "op": "any_of", "value": ["youzan"]}, ["B"]),
        ({"fact": "guide", "op": "any_of", "value": ["guide0001"]}, ["A", "D"]),
        ({"fact": "material_share", "key": "冰丝", "op": ">=", "value": 0.5}, ["A"]),
        (
            {
                "all": [
                    {"fact": "is_member", "op": "is", "value": True},
                    {"not": {"fact": "net_revenue", "op": ">", "value": 400}},
                ]
            },
            ["A", "D"],
        ),
    ],
)
def test_preview_gives_the_exact_audience(client_for, operator, tag_people, condition, expected):
    before = _counts()
    response = _send(
        client_for(operator), "post", reverse("tagrule-preview"), {"condition": condition}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["audience"] == len(expected)
    assert [row["name"] for row in body["sample"]] == expected
    assert _counts() == before


def test_preview_sample_carries_the_facts(client_for, operator, tag_people):
    response = _send(
        client_for(operator),
        "post",
        reverse("tagrule-preview"),
        {"condition": {"fact": "channel", "op": "any_of", "value": ["tmall"]}},
    )
    assert response.json()["sample"] == [
        {
            "id": tag_people["A"].pk,
            "name": "A",
            "purchase_days": 2,
            "net_revenue": "350.00",
            "last_purchase_on": "2026-06-20",
        },
        {
            "id": tag_people["C"].pk,
            "name": "C",
            "purchase_days": 1,
            "net_revenue": "80.00",
            "last_purchase_on": "2024-01-10",
        },
    ]


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ({"fact": "net_revenue", "op": "between", "value": [5, 1]}, "下限大于上限"),
        ({"all": []}, "至少一个子条件"),
        ("purchase_days > 2", "规则条件应是一个 JSON 对象"),
    ],
)
def test_preview_of_an_invalid_condition_gives_the_reason(
    client_for, operator, tag_people, condition, reason
):
    response = _send(
        client_for(operator), "post", reverse("tagrule-preview"), {"condition": condition}
    )
    assert response.status_code == 400
    assert reason in response.json()["condition"][0]


# -- a customer's tags ---------------------------------------------------------------------


def test_operator_adds_and_removes_a_customers_manual_tag(
    client_for, operator, tag_people, manual_tag, rule
):
    client = client_for(operator)
    a = tag_people["A"].pk
    url = reverse("customer-tags-api", args=[a])
    added = _send(client, "post", url, {"tag": manual_tag.pk})
    assert added.status_code == 200
    body = added.json()
    assert body["customer"] == a
    assert [(t["name"], t["group_name"], t["source"]) for t in body["tags"]] == [
        ("VIP", "运营标记", "manual")
    ]
    assert [(e["action"], e["tag_name"], e["cause"], e["by"]) for e in body["history"]] == [
        ("added", "VIP", "manual", "operator")
    ]
    assert CustomerTag.objects.filter(customer_id=a).count() == 1
    refused = _send(client, "post", url, {"tag": rule.tag_id})
    assert refused.status_code == 400 and "由规则维护" in refused.json()["tag"][0]
    unknown = _send(client, "post", url, {"tag": 999999})
    assert unknown.status_code == 400
    assert CustomerTag.objects.count() == 1
    removed = _send(client, "delete", f"{url}?tag={manual_tag.pk}", {})
    assert removed.status_code == 200 and removed.json()["tags"] == []
    assert [e["action"] for e in removed.json()["history"]] == ["removed", "added"]
    assert CustomerTag.objects.count() == 0 and CustomerTagEvent.objects.count() == 2
