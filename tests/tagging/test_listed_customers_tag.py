"""A manual tag added from the console customer list to every customer its filters
select, on the hand-counted customers of tests/tagging/conftest.py."""

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tagging.models import BulkTagging, CustomerTag, CustomerTagEvent, Tag, TagGroup
from tests.helpers import bulk_tagged

pytestmark = pytest.mark.django_db


@pytest.fixture
def rule_tag(db) -> Tag:
    group = TagGroup.objects.create(name="复购")
    return Tag.objects.create(group=group, name="复购两天", source=Tag.Source.RULE)


def _tagged(tag) -> set[str]:
    return set(CustomerTag.objects.filter(tag=tag).values_list("customer__name", flat=True))


def _post(client, tag, query: dict):
    return client.post(
        reverse("listed_customers_tag"), {"tag": tag.pk, "query": urlencode(query)}, follow=True
    )


def _tagging(client, tag, query: dict):
    data = {"tag": tag.pk, "query": urlencode(query)}
    return bulk_tagged(client, reverse("listed_customers_tag"), data)


def test_every_customer_the_filters_select_gets_the_tag(
    client_for, operator, tag_people, manual_tag, enqueued
):
    client = client_for(operator)
    # Net revenue of at least 300: A (350) and B (450), not C (80), D and E (none).
    bulk, page = _tagging(client, manual_tag, {"revenue_min": "300", "sort": "name"})
    assert _tagged(manual_tag) == {"A", "B"}
    events = CustomerTagEvent.objects.filter(tag=manual_tag)
    assert {(e.customer.name, e.action, e.cause, e.by_id, e.at) for e in events} == {
        ("A", "added", "manual", operator.pk, bulk.started_at),
        ("B", "added", "manual", operator.pk, bulk.started_at),
    }
    assert (bulk.source, bulk.status, bulk.total, bulk.done, bulk.changed) == (
        "customers",
        "succeeded",
        2,
        2,
        2,
    )
    assert bulk.requested_by == operator and bulk.finished_at is not None
    assert "新加上 2 位" in page
    assert f'href="{reverse("customers")}?revenue_min=300&amp;sort=name"' in page
    # Tmall buyers: A (tagged already) and C. Only C is new.
    bulk, page = _tagging(client, manual_tag, {"channel": "tmall"})
    assert _tagged(manual_tag) == {"A", "B", "C"}
    assert (bulk.total, bulk.changed) == (2, 1)
    assert "新加上 1 位" in page


def test_a_rule_tag_or_no_tag_changes_nothing(
    client_for, operator, tag_people, manual_tag, rule_tag, enqueued
):
    client = client_for(operator)
    response = _post(client, rule_tag, {})
    assert "不能手动修改" in response.content.decode()
    response = client.post(reverse("listed_customers_tag"), {"tag": "", "query": ""}, follow=True)
    assert "请选择要加上的标签。" in response.content.decode()
    response = _post(client, manual_tag, {"channel": "pos"})  # nobody bought in a store
    assert "没有符合筛选条件的客户。" in response.content.decode()
    assert not CustomerTag.objects.filter(tag__in=[manual_tag, rule_tag]).exists()
    assert not BulkTagging.objects.exists()


def test_only_those_who_may_change_the_console_tag_from_the_list(
    client_for, operator, manager, guide_user, tag_people, manual_tag, rule_tag, enqueued
):
    page = client_for(operator).get(reverse("customers")).content.decode()
    assert 'id="listed-tag"' in page
    assert f'<option value="{manual_tag.pk}">' in page
    assert f'<option value="{rule_tag.pk}">' not in page  # rules keep their own tags
    managing = client_for(manager)
    assert 'id="listed-tag"' not in managing.get(reverse("customers")).content.decode()
    assert _post(managing, manual_tag, {}).status_code == 403
    assert _post(client_for(guide_user), manual_tag, {}).status_code == 403
    assert not CustomerTag.objects.filter(tag=manual_tag).exists()
    assert not BulkTagging.objects.exists()


def test_a_filter_the_list_ignores_tags_nobody_and_a_repeat_changes_nothing(
    client_for, operator, tag_people, manual_tag, enqueued
):
    client = client_for(operator)
    response = _post(client, manual_tag, {"revenue_min": "abc"})
    assert "筛选条件有误" in response.content.decode()
    assert not BulkTagging.objects.exists()
    _tagging(client, manual_tag, {"revenue_min": "300"})
    bulk, page = _tagging(client, manual_tag, {"revenue_min": "300"})
    assert (bulk.status, bulk.total, bulk.changed) == ("succeeded", 2, 0)
    assert "新加上 0 位" in page
    assert CustomerTagEvent.objects.filter(tag=manual_tag).count() == 2  # none for the repeat
