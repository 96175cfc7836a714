"""Tag pages: who may open and change what, the rule editor, a tag's customers with their
exports and manual tagging, the system tag settings, and the customer-tags fragment."""

import csv
import io
import json
from urllib.parse import unquote

import pytest
from django.urls import reverse
from openpyxl import load_workbook

from contacts.models import Customer, Guide
from tagging.forms import SystemTagSettingsForm
from tagging.models import (
    BulkTagging,
    CustomerTag,
    CustomerTagEvent,
    SystemTagSettings,
    Tag,
    TagGroup,
    TagRule,
)
from tagging.rules import FACTS
from tagging.services import customer_tags_set, rule_save
from tagging.system import DEFAULTS
from tests.contacts.factories import CustomerFactory
from tests.helpers import bulk_tagged, exported

pytestmark = pytest.mark.django_db

CONDITION = {"fact": "purchase_days", "op": ">=", "value": 2}


@pytest.fixture
def rule_tag(operator) -> Tag:
    group = TagGroup.objects.create(name="复购")
    return rule_save(
        tag=None,
        group=group,
        name="复购两天",
        color="#13c2c2",
        condition=CONDITION,
        is_active=True,
        by=operator,
    ).tag


def _counts() -> tuple[int, int, int, int, int, int]:
    return (
        TagGroup.objects.count(),
        Tag.objects.count(),
        TagRule.objects.count(),
        CustomerTag.objects.count(),
        CustomerTagEvent.objects.count(),
        SystemTagSettings.objects.count(),
    )


def _rule_post(**overrides) -> dict:
    data = {
        "name": "高价值",
        "group": "",
        "new_group": "价值",
        "color": "#f5222d",
        "is_active": "on",
        "condition": json.dumps({"fact": "net_revenue", "op": ">", "value": 400}),
    }
    data.update(overrides)
    return data


def _get_pages(tag: Tag, customer_id: int) -> list[str]:
    return [
        reverse("tags"),
        reverse("tag_rule_new"),
        reverse("tag_rule_edit", args=[tag.pk]),
        reverse("tag_detail", args=[tag.pk]),
        reverse("tag_settings"),
        reverse("customer_tags", args=[customer_id]),
    ]


def _writes(rule: Tag, manual: Tag, customer_id: int) -> list[tuple[str, dict]]:
    return [
        (reverse("tag_retag"), {}),
        (reverse("tag_manual_create"), {"name": "新", "new_group": "新组", "color": "#000000"}),
        (reverse("tag_rule_new"), _rule_post()),
        (reverse("tag_rule_edit", args=[rule.pk]), _rule_post(name="改名", new_group="改组")),
        (
            reverse("tag_customers_change", args=[manual.pk]),
            {"action": "add", "customer": [customer_id]},
        ),
        (reverse("tag_settings"), _settings_post()),
        (reverse("customer_tags", args=[customer_id]), {"tag": manual.pk, "action": "add"}),
    ]


# -- access --------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_and_writes_nothing(
    client, tag_people, rule_tag, manual_tag, enqueued, django_capture_on_commit_callbacks
):
    customer = tag_people["A"].pk
    for url in _get_pages(rule_tag, customer):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    before = _counts()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for url, data in _writes(rule_tag, manual_tag, customer):
            response = client.post(url, data)
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("login")), url
    assert _counts() == before
    assert callbacks == [] and enqueued == []


def test_guide_gets_no_console_page_and_changes_nothing(
    client_for,
    guide_user,
    tag_people,
    rule_tag,
    manual_tag,
    enqueued,
    django_capture_on_commit_callbacks,
):
    client = client_for(guide_user)
    own = tag_people["A"].pk
    for url in _get_pages(rule_tag, own)[:-1]:
        assert client.get(url).status_code == 403, url
    before = _counts()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for url, data in _writes(rule_tag, manual_tag, own):
            assert client.post(url, data).status_code == 403, url
    assert _counts() == before
    assert callbacks == [] and enqueued == []


def test_guide_sees_tags_of_own_customers_only(
    client_for, guide_user, tag_people, manual_tag, operator
):
    customer_tags_set(
        tag=manual_tag, customer_ids=[tag_people["A"].pk, tag_people["B"].pk], add=True, by=operator
    )
    client = client_for(guide_user)
    own = client.get(reverse("customer_tags", args=[tag_people["A"].pk]))
    assert own.status_code == 200
    body = own.content.decode()
    assert "VIP" in body and "运营标记" in body
    # No write controls and no console links for a guide.
    assert "<form" not in body and reverse("tag_detail", args=[manual_tag.pk]) not in body
    for other in ("B", "C", "E"):  # another guide's customer, and customers of no guide
        pk = tag_people[other].pk
        assert client.get(reverse("customer_tags", args=[pk])).status_code == 404
        response = client.post(
            reverse("customer_tags", args=[pk]), {"tag": manual_tag.pk, "action": "remove"}
        )
        assert response.status_code == 404
    assert CustomerTag.objects.filter(tag=manual_tag).count() == 2


def test_a_customer_merged_away_has_their_tags_changed_on_the_one_kept(
    client_for, operator, manual_tag
):
    from contacts.services import customer_merge

    keep, absorb = CustomerFactory(), CustomerFactory(external_userid=None)
    customer_merge(keep=keep, absorb=absorb, by=operator)
    client = client_for(operator)
    fragment = client.get(reverse("customer_tags", args=[absorb.pk])).content.decode()
    assert "<form" not in fragment
    refused = client.post(
        reverse("customer_tags", args=[absorb.pk]),
        {"tag": manual_tag.pk, "action": "add"},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert refused.status_code == 400 and f"已合并到 #{keep.pk}" in refused.content.decode()
    assert not CustomerTag.objects.filter(tag=manual_tag, customer=absorb).exists()
    assert "<form" in client.get(reverse("customer_tags", args=[keep.pk])).content.decode()


def test_manager_reads_every_page_but_writes_nothing(
    client_for,
    manager,
    tag_people,
    rule_tag,
    manual_tag,
    enqueued,
    django_capture_on_commit_callbacks,
):
    client = client_for(manager)
    customer = tag_people["A"].pk
    for url in _get_pages(rule_tag, customer):
        assert client.get(url).status_code == 200, url
    editor = client.get(reverse("tag_rule_edit", args=[rule_tag.pk])).content.decode()
    assert 'id="rule-save"' not in editor
    assert "没有修改权限" in editor
    before = _counts()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for url, data in _writes(rule_tag, manual_tag, customer):
            assert client.post(url, data).status_code == 403, url
    assert _counts() == before
    assert callbacks == [] and enqueued == []
    rule_tag.refresh_from_db()
    assert rule_tag.name == "复购两天"


# -- the tag list --------------------------------------------------------------------------


def test_tag_list_shows_groups_tags_counts_and_rules(
    client_for, operator, tag_people, rule_tag, manual_tag
):
    customer_tags_set(
        tag=manual_tag, customer_ids=[tag_people["A"].pk, tag_people["C"].pk], add=True, by=operator
    )
    TagRule.objects.filter(tag=rule_tag).update(audience=2)
    response = client_for(operator).get(reverse("tags"))
    assert response.status_code == 200
    groups = {group.name: group for group in response.context["groups"]}
    assert set(groups) == {"复购", "运营标记"}
    vip = groups["运营标记"].tags.all()[0]
    assert (vip.name, vip.customers, str(vip.source_label)) == ("VIP", 2, "手动")
    assert [rule.tag.name for rule in response.context["rules"]] == ["复购两天"]
    body = response.content.decode()
    assert "--tag: #fa8c16" in body
    assert reverse("tag_retag") in body and reverse("tag_rule_edit", args=[rule_tag.pk]) in body


def test_tag_list_queries_do_not_grow_with_tags_or_customers(
    client_for, operator, django_assert_max_num_queries
):
    client = client_for(operator)

    def grow(start: int) -> None:
        for number in range(start, start + 4):
            group = TagGroup.objects.create(name=f"组{number}")
            customers = [CustomerFactory().pk for _ in range(3)]
            for index in range(3):
                tag = Tag.objects.create(group=group, name=f"标签{index}", source="manual")
                customer_tags_set(tag=tag, customer_ids=customers, add=True, by=operator)
            rule_save(
                tag=None,
                group=group,
                name="规则",
                color="#000000",
                condition=CONDITION,
                is_active=True,
                by=operator,
            )

    grow(0)
    client.get(reverse("tags"))  # warm the session and permission caches
    with django_assert_max_num_queries(8) as few:
        assert client.get(reverse("tags")).status_code == 200
    grow(10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("tags"))
    assert len(response.context["groups"]) == 8
    assert sum(len(group.tags.all()) for group in response.context["groups"]) == 32


def test_retag_now_enqueues_one_full_retag(
    client_for, operator, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(operator).post(reverse("tag_retag"))
    assert response.status_code == 302 and response["Location"] == reverse("tags")
    assert enqueued == ["tagging.tasks.retag_full_task"]


def test_operator_creates_a_manual_tag(client_for, operator):
    client = client_for(operator)
    response = client.post(
        reverse("tag_manual_create"),
        {"name": "门店活动", "new_group": "活动", "color": "#722ED1", "description": "六月"},
    )
    assert response.status_code == 302
    tag = Tag.objects.get()
    assert (tag.group.name, tag.name, tag.color, tag.source) == (
        "活动",
        "门店活动",
        "#722ed1",
        "manual",
    )
    again = client.post(
        reverse("tag_manual_create"),
        {"name": "门店活动", "group": tag.group_id, "color": "#722ed1"},
    )
    assert again.status_code == 200
    assert "这个标签组里已有同名标签" in again.content.decode()
    assert (Tag.objects.count(), TagGroup.objects.count()) == (1, 1)


# -- the rule editor -----------------------------------------------------------------------


def test_editor_offers_every_fact_and_the_values_to_choose(client_for, operator, tag_people):
    response = client_for(operator).get(reverse("tag_rule_new"))
    spec = response.context["spec"]
    assert [fact["name"] for fact in spec["facts"]][:3] == [
        "purchase_days",
        "net_revenue",
        "avg_order_value",
    ]
    assert {fact["name"]: fact["kind"] for fact in spec["facts"]}["material_share"] == "share"
    # Every fact of the condition language, with the label tagging.rules gives it.
    assert [(f["name"], f["label"]) for f in spec["facts"]] == [
        (name, fact.label) for name, fact in FACTS.items()
    ]
    assert ["guide0001", "张晓"] in spec["options"]["guide"]
    assert ["SH001", "上海静安店"] in spec["options"]["store"]
    assert spec["preview_url"] == "/api/v1/tag-rules/preview"
    body = response.content.decode()
    assert 'id="rule-spec"' in body and "tagging/rule_editor.js" in body


def test_operator_saves_a_rule_and_a_retag_is_scheduled(
    client_for, operator, tag_people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(operator).post(reverse("tag_rule_new"), _rule_post())
    assert response.status_code == 302 and response["Location"] == reverse("tags")
    rule = TagRule.objects.select_related("tag__group").get()
    assert (rule.tag.name, rule.tag.group.name, rule.tag.color, rule.tag.source) == (
        "高价值",
        "价值",
        "#f5222d",
        "rule",
    )
    assert rule.condition == {"fact": "net_revenue", "op": ">", "value": 400}
    assert (rule.is_active, rule.updated_by) == (True, operator)
    assert len(callbacks) == 1  # the full retag, once the rule is committed


def test_operator_edits_a_rule(client_for, operator, rule_tag):
    response = client_for(operator).post(
        reverse("tag_rule_edit", args=[rule_tag.pk]),
        _rule_post(
            name="复购三天",
            group=rule_tag.group_id,
            new_group="",
            is_active="",
            condition=json.dumps({"fact": "purchase_days", "op": ">=", "value": 3}),
        ),
    )
    assert response.status_code == 302
    rule = TagRule.objects.select_related("tag").get()
    assert (rule.tag.name, rule.is_active, rule.condition["value"]) == ("复购三天", False, 3)
    assert (Tag.objects.count(), TagGroup.objects.count()) == (1, 1)


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ({"fact": "guide", "op": "any_of", "value": ["nobody"]}, "找不到导购：nobody"),
        ({"fact": "height", "op": ">", "value": 1}, "未知的条件项「height」"),
        ({"all": []}, "至少一个子条件"),
        ("[1, 2", "条件不是有效的 JSON"),
        ([1, 2], "规则条件应是一个 JSON 对象"),
    ],
)
def test_an_invalid_rule_is_shown_with_the_reason_and_writes_nothing(
    client_for, operator, tag_people, condition, reason, django_capture_on_commit_callbacks
):
    before = _counts()
    text = condition if isinstance(condition, str) else json.dumps(condition)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(operator).post(reverse("tag_rule_new"), _rule_post(condition=text))
    assert response.status_code == 200
    assert reason in "".join(response.context["form"].errors["condition"])
    assert reason in response.content.decode()
    assert _counts() == before  # not even the new group
    assert callbacks == []


def test_a_rule_cannot_go_into_a_system_group(client_for, operator, tag_people):
    TagGroup.objects.create(name="生命周期", system_key="lifecycle")
    before = _counts()
    response = client_for(operator).post(reverse("tag_rule_new"), _rule_post(new_group="生命周期"))
    assert response.status_code == 200
    assert "是系统标签组" in response.content.decode()
    assert _counts() == before


def test_a_cycle_between_rules_is_refused(client_for, operator, rule_tag):
    reader = rule_save(
        tag=None,
        group=rule_tag.group,
        name="读者",
        color="#000000",
        condition={"fact": "tag", "op": "has", "value": rule_tag.pk},
        is_active=True,
        by=operator,
    )
    response = client_for(operator).post(
        reverse("tag_rule_edit", args=[rule_tag.pk]),
        _rule_post(
            name="复购两天",
            group=rule_tag.group_id,
            new_group="",
            condition=json.dumps({"fact": "tag", "op": "lacks", "value": reader.tag_id}),
        ),
    )
    assert response.status_code == 200
    assert "循环引用" in response.content.decode()
    assert TagRule.objects.get(tag=rule_tag).condition == CONDITION


def test_only_rule_tags_have_an_editor(client_for, operator, manual_tag):
    assert (
        client_for(operator).get(reverse("tag_rule_edit", args=[manual_tag.pk])).status_code == 404
    )


# -- a tag's customers ---------------------------------------------------------------------


def _listed(response) -> set[str]:
    return {customer.name for customer in response.context["customers"]}


def test_tag_page_filters_by_name_guide_and_membership(
    client_for, operator, tag_people, manual_tag
):
    customer_tags_set(
        tag=manual_tag,
        customer_ids=[p.pk for p in tag_people.values()],
        add=True,
        by=operator,
    )
    client = client_for(operator)
    url = reverse("tag_detail", args=[manual_tag.pk])
    assert _listed(client.get(url)) == {"A", "B", "C", "D", "E"}
    assert client.get(url).context["total"] == 5
    mine = Guide.objects.get(wecom_userid="guide0001")
    assert _listed(client.get(url, {"guide": mine.pk})) == {"A", "D"}
    assert _listed(client.get(url, {"member": "no"})) == {"C", "E"}
    assert _listed(client.get(url, {"member": "yes", "guide": mine.pk})) == {"A", "D"}
    assert _listed(client.get(url, {"q": "B"})) == {"B"}


def test_tag_page_pages_by_fifty(client_for, operator, manual_tag):
    ids = [CustomerFactory().pk for _ in range(60)]
    customer_tags_set(tag=manual_tag, customer_ids=ids, add=True, by=operator)
    client = client_for(operator)
    url = reverse("tag_detail", args=[manual_tag.pk])
    first = client.get(url)
    assert len(first.context["customers"]) == 50 and first.context["total"] == 60
    second = client.get(url, {"after": first.context["next_cursor"]})
    assert len(second.context["customers"]) == 10 and second.context["next_cursor"] is None
    seen = [c.pk for c in first.context["customers"]] + [c.pk for c in second.context["customers"]]
    assert sorted(seen) == sorted(ids)


def _tag_b_c_e(operator, tag_people, manual_tag) -> None:
    customer_tags_set(
        tag=manual_tag,
        customer_ids=[tag_people[name].pk for name in ("B", "C", "E")],
        add=True,
        by=operator,
    )


def test_csv_export_holds_exactly_the_filtered_customers(
    client_for, operator, tag_people, manual_tag
):
    _tag_b_c_e(operator, tag_people, manual_tag)
    response = exported(
        client_for(operator), reverse("tag_export", args=[manual_tag.pk]), {"member": "no"}, "csv"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["客户ID", "姓名", "外部联系人ID", "私域会员"]
    assert sorted(row[1] for row in rows[1:]) == ["C", "E"]
    c_row = next(row for row in rows[1:] if row[1] == "C")
    assert (c_row[0], c_row[3], c_row[5], c_row[6], c_row[7]) == (
        str(tag_people["C"].pk),
        "否",
        "1",
        "80.00",
        "2024-01-10",
    )


def test_xlsx_export_holds_exactly_the_filtered_customers(
    client_for, operator, tag_people, manual_tag
):
    _tag_b_c_e(operator, tag_people, manual_tag)
    Tag.objects.filter(pk=manual_tag.pk).update(name="高价值/VIP")
    theirs = Guide.objects.get(wecom_userid="guide0002")
    response = exported(
        client_for(operator), reverse("tag_export", args=[manual_tag.pk]), {"guide": theirs.pk}
    )
    assert response.status_code == 200
    # named by the tag, without the / a file or sheet name cannot hold
    assert "高价值_VIP-" in unquote(response["Content-Disposition"])
    workbook = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    assert workbook.sheetnames == ["高价值_VIP"]
    rows = list(workbook.active.iter_rows(values_only=True))
    assert rows[0][:2] == ("客户ID", "姓名")
    assert [(row[0], row[1], row[3], row[5]) for row in rows[1:]] == [
        (tag_people["B"].pk, "B", "是", 2)
    ]
    assert rows[1][8] is not None  # when B got the tag (Shanghai time, no zone in Excel)
    revenue = workbook.active.cell(row=2, column=7)
    assert (revenue.value, revenue.number_format) == (450, "#,##0.00")  # B: net revenue 450


def test_a_name_that_looks_like_a_formula_is_exported_as_text(
    client_for, operator, tag_people, manual_tag
):
    _tag_b_c_e(operator, tag_people, manual_tag)
    Customer.objects.filter(pk=tag_people["C"].pk).update(name="=1+2")
    client = client_for(operator)
    csv_text = b"".join(
        exported(
            client, reverse("tag_export", args=[manual_tag.pk]), file_format="csv"
        ).streaming_content
    ).decode("utf-8-sig")
    assert "'=1+2" in [row[1] for row in csv.reader(io.StringIO(csv_text))]
    book = b"".join(exported(client, reverse("tag_export", args=[manual_tag.pk])).streaming_content)
    rows = load_workbook(io.BytesIO(book), data_only=True).active.iter_rows(values_only=True)
    assert "=1+2" in [row[1] for row in rows]  # text: a formula would read as None here


def test_operator_adds_and_removes_a_manual_tag_on_a_selection(
    client_for, operator, tag_people, manual_tag, enqueued, django_capture_on_commit_callbacks
):
    client = client_for(operator)
    url = reverse("tag_customers_change", args=[manual_tag.pk])
    a, b, c = (tag_people[name].pk for name in "ABC")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "add", "customer": [a, b, c], "show": "all"})
    assert response.status_code == 302
    assert response["Location"] == reverse("tag_detail", args=[manual_tag.pk]) + "?show=all"
    assert set(CustomerTag.objects.values_list("customer_id", flat=True)) == {a, b, c}
    assert enqueued == ["tagging.tasks.retag_pending"]  # rules may read this tag
    client.post(url, {"action": "remove", "customer": [b]})
    assert set(CustomerTag.objects.values_list("customer_id", flat=True)) == {a, c}
    events = list(CustomerTagEvent.objects.order_by("id").values_list("action", "cause", "by"))
    assert events == [("added", "manual", operator.pk)] * 3 + [("removed", "manual", operator.pk)]


def test_add_to_all_filtered_adds_exactly_the_filtered(
    client_for, operator, tag_people, manual_tag, enqueued
):
    client = client_for(operator)
    url = reverse("tag_customers_change", args=[manual_tag.pk])
    bulk, page = bulk_tagged(
        client, url, {"action": "add_filtered", "show": "all", "member": "yes"}
    )
    names = set(CustomerTag.objects.values_list("customer__name", flat=True))
    assert names == {"A", "B", "D"}
    assert CustomerTagEvent.objects.count() == 3
    assert (bulk.source, bulk.query, bulk.total, bulk.changed) == (
        "tag",
        "member=yes&show=all",
        3,
        3,
    )
    assert f'href="{reverse("tag_detail", args=[manual_tag.pk])}?member=yes&amp;show=all"' in page


def test_rule_and_system_tags_cannot_be_changed_by_hand(client_for, operator, tag_people, rule_tag):
    response = client_for(operator).post(
        reverse("tag_customers_change", args=[rule_tag.pk]),
        {"action": "add_filtered", "show": "all"},
    )
    assert response.status_code == 302
    assert CustomerTag.objects.count() == 0 and CustomerTagEvent.objects.count() == 0
    assert not BulkTagging.objects.exists()
    page = client_for(operator).get(reverse("tag_detail", args=[rule_tag.pk]))
    assert "由规则维护，不能手动修改" in page.content.decode()
    assert 'name="customer"' not in page.content.decode()


# -- system tag settings -------------------------------------------------------------------


def _settings_post(**changes) -> dict:
    data = SystemTagSettingsForm.initial_from(DEFAULTS)
    data = {key: "" if value is None else value for key, value in data.items()}
    data.update(changes)
    return data


def test_the_settings_form_covers_every_default():
    form = SystemTagSettingsForm(_settings_post())
    assert form.is_valid(), form.errors
    assert form.values() == DEFAULTS


def test_operator_saves_settings_and_a_full_retag_is_enqueued(
    client_for, operator, enqueued, django_capture_on_commit_callbacks
):
    client = client_for(operator)
    page = client.get(reverse("tag_settings"))
    assert page.status_code == 200 and "90" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("tag_settings"),
            _settings_post(
                lifecycle_sleeping_after_days=60,
                rfm_monetary="500",
                frequency_bands="1, 3，6",
                channels_private="miniapp youzan pos",
            ),
        )
    assert response.status_code == 302
    saved = SystemTagSettings.objects.get()
    assert saved.values["lifecycle"]["sleeping_after_days"] == 60
    assert saved.values["rfm"]["monetary"] == 500.0
    assert saved.values["frequency_bands"] == [1, 3, 6]
    assert saved.values["channels"]["private"] == ["miniapp", "youzan", "pos"]
    assert saved.updated_by == operator
    assert enqueued == ["tagging.tasks.retag_full_task"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("tag_settings"), _settings_post(cycle_bounds="10,20"))
    assert SystemTagSettings.objects.count() == 1
    assert SystemTagSettings.objects.get().values["cycle_bounds"] == [10, 20]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"lifecycle_lost_after_days": 90}, "流失的天数应大于沉睡的天数"),
        ({"lifecycle_sleeping_after_days": 0}, "1"),
        ({"frequency_bands": "1, 3, 2"}, "应从小到大排列"),
        ({"cycle_bounds": "30, x"}, "只能是用逗号分隔的整数"),
        ({"cycle_bounds": ""}, "必填"),
        ({"preference_min_share": "1.5"}, "1"),
        ({"preference_min_share": "0"}, "占比应大于 0"),
        ({"channels_min_share": "0.5"}, "应大于 0.5"),
        ({"channels_public": "tmall, wechat"}, "未知的渠道：wechat"),
        ({"channels_public": "tmall, youzan"}, "渠道不能既是私域又是公域：youzan"),
        ({"rfm_monetary": "-3"}, "应是正数"),
    ],
)
def test_invalid_settings_are_refused_with_the_reason(
    client_for, operator, enqueued, django_capture_on_commit_callbacks, changes, reason
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(operator).post(reverse("tag_settings"), _settings_post(**changes))
    assert response.status_code == 200
    errors = " ".join(" ".join(e) for e in response.context["form"].errors.values())
    assert reason in errors
    assert not SystemTagSettings.objects.exists()
    assert callbacks == [] and enqueued == []


# -- the customer-tags fragment ------------------------------------------------------------


def test_customer_page_loads_the_tags_fragment(client_for, operator, guide_user, tag_people):
    a = tag_people["A"].pk
    fragment = reverse("customer_tags", args=[a])
    console = client_for(operator).get(reverse("customer_detail", args=[a])).content.decode()
    assert f'data-src="{fragment}"' in console and "tagging/customer_tags.js" in console
    guide = client_for(guide_user).get(reverse("guide_customer_detail", args=[a])).content.decode()
    assert f'data-src="{fragment}"' in guide


def test_fragment_shows_tags_by_group_and_history(
    client_for, operator, tag_people, manual_tag, rule_tag
):
    a = tag_people["A"].pk
    customer_tags_set(tag=manual_tag, customer_ids=[a], add=True, by=operator)
    customer_tags_set(tag=manual_tag, customer_ids=[a], add=False, by=operator)
    customer_tags_set(tag=manual_tag, customer_ids=[a], add=True, by=operator)
    CustomerTag.objects.create(tag=rule_tag, customer_id=a, added_at="2026-06-30T04:00:00Z")
    CustomerTagEvent.objects.create(
        tag=rule_tag, customer_id=a, action="added", cause="rule", at="2026-06-30T04:00:00Z"
    )
    response = client_for(operator).get(reverse("customer_tags", args=[a]))
    groups = [
        (group.name, [x.tag.name for x in tags]) for group, tags in response.context["groups"]
    ]
    assert sorted(groups) == [("复购", ["复购两天"]), ("运营标记", ["VIP"])]
    history = [
        (e.action, e.tag.name, str(e.cause_label), e.by) for e in response.context["history"]
    ]
    assert sorted(history, key=str) == sorted(
        [
            ("added", "VIP", "手动", operator),
            ("removed", "VIP", "手动", operator),
            ("added", "VIP", "手动", operator),
            ("added", "复购两天", "规则", None),
        ],
        key=str,
    )
    body = response.content.decode()
    assert "运营小王" in body and "移除" in body
    # Only the manual tag has a remove button.
    assert body.count('value="remove"') == 1


def test_operator_adds_and_removes_manual_tags_from_the_fragment(
    client_for, operator, tag_people, manual_tag, rule_tag
):
    client = client_for(operator)
    a = tag_people["A"].pk
    url = reverse("customer_tags", args=[a])
    xhr = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
    added = client.post(url, {"tag": manual_tag.pk, "action": "add"}, **xhr)
    assert added.status_code == 200 and "VIP" in added.content.decode()
    assert list(CustomerTag.objects.values_list("customer_id", "tag_id")) == [(a, manual_tag.pk)]
    refused = client.post(url, {"tag": rule_tag.pk, "action": "add"}, **xhr)
    assert refused.status_code == 400
    assert "由规则维护" in refused.content.decode()
    assert CustomerTag.objects.count() == 1
    removed = client.post(url, {"tag": manual_tag.pk, "action": "remove"})  # without script
    assert removed.status_code == 302
    assert removed["Location"] == reverse("customer_detail", args=[a])
    assert CustomerTag.objects.count() == 0 and CustomerTagEvent.objects.count() == 2


def test_tag_pages_speak_english_when_asked(client_for, operator, rule_tag):
    client = client_for(operator)
    listing = client.get(reverse("tags"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Tag rules" in listing and "Retag everyone now" in listing and "标签规则" not in listing
    editor = client.get(reverse("tag_rule_edit", args=[rule_tag.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert editor.context["text"]["matches"] == "Matches {n} customers"
    labels = {fact["name"]: fact["label"] for fact in editor.context["spec"]["facts"]}
    assert labels["purchase_days"] == "Purchase days"
