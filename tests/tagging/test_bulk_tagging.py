"""Bulk taggings run by a worker (docs/BULK_TAGGING.md): the real worker end to end, the
undo of exactly what one added, a second delivery, failures, and who may do what. What
each list selects is tested with its page (test_listed_customers_tag.py, test_pages.py)."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import Customer, Guide, Relationship
from tagging import bulk
from tagging.bulk import bulk_tagging_run
from tagging.models import BulkTagging, CustomerTag, CustomerTagEvent, Tag, TagGroup
from tagging.services import customer_tags_set
from tests.helpers import bulk_tagged, wait_for

pytestmark = pytest.mark.django_db


def _add_to_everyone(client, tag, **filters):
    url = reverse("tag_customers_change", args=[tag.pk])
    return bulk_tagged(client, url, {"action": "add_filtered", "show": "all", **filters})


def _holders(tag) -> set[str]:
    return set(CustomerTag.objects.filter(tag=tag).values_list("customer__name", flat=True))


def _undo(client, tagging: BulkTagging):
    return client.post(reverse("bulk_tagging_undo", args=[tagging.pk]), follow=True)


def test_an_undo_removes_exactly_what_the_tagging_added(
    client_for, operator, tag_people, manual_tag, enqueued
):
    client = client_for(operator)
    people = tag_people
    before = timezone.now() - timedelta(days=3)
    customer_tags_set(tag=manual_tag, customer_ids=[people["C"].pk], add=True, by=None, at=before)
    tagging, page = _add_to_everyone(client, manual_tag)
    assert _holders(manual_tag) == set("ABCDE")
    assert (tagging.total, tagging.changed) == (5, 4)  # C had it
    assert page.count('data-confirm="移除这一次加上的标签') == 1
    # Since then B's tag was taken off by hand and put on again: B's is not the tagging's.
    customer_tags_set(tag=manual_tag, customer_ids=[people["B"].pk], add=False, by=operator)
    customer_tags_set(tag=manual_tag, customer_ids=[people["B"].pk], add=True, by=operator)

    newest = BulkTagging.objects.order_by("-pk").first().pk
    response = _undo(client, tagging)
    assert response.redirect_chain[-1][0] == reverse("tag_detail", args=[manual_tag.pk]) + "#bulk"
    undo = BulkTagging.objects.get(pk__gt=newest)
    bulk_tagging_run(bulk_id=undo.pk)
    undo.refresh_from_db()
    assert _holders(manual_tag) == {"B", "C"}
    assert CustomerTag.objects.get(tag=manual_tag, customer=people["C"]).added_at == before
    assert (undo.source, undo.undoes, undo.status, undo.total, undo.changed) == (
        "undo",
        tagging,
        "succeeded",
        3,
        3,
    )
    removed = CustomerTagEvent.objects.filter(tag=manual_tag, at=undo.started_at)
    assert {(e.customer.name, e.action, e.by_id) for e in removed} == {
        (name, "removed", operator.pk) for name in "ADE"
    }
    page = client.get(reverse("tag_detail", args=[manual_tag.pk])).content.decode()
    assert "移除 3 位" in page and "已撤销" in page
    assert 'data-confirm="移除这一次加上的标签' not in page  # neither is undone again

    again = _undo(client, tagging).content.decode()
    assert "这次批量加标签已经撤销过了。" in again
    assert "撤销操作不能再撤销" in _undo(client, undo).content.decode()
    assert BulkTagging.objects.count() == 2


def test_an_unfinished_tagging_waits_for_its_undo_and_an_interrupted_one_may_be_undone(
    client_for, operator, tag_people, manual_tag
):
    client = client_for(operator)
    started = timezone.now()
    customer_tags_set(tag=manual_tag, customer_ids=[tag_people["A"].pk], add=True, by=operator)
    running = BulkTagging.objects.create(
        tag=manual_tag,
        source=BulkTagging.Source.TAG,
        query="show=all",
        requested_by=operator,
        language="zh-hans",
        status=BulkTagging.Status.RUNNING,
        started_at=started,
        total=5,
        done=1,
    )
    page = client.get(reverse("tag_detail", args=[manual_tag.pk])).content.decode()
    status_url = reverse("bulk_tagging_status", args=[running.pk])
    assert f'data-status-url="{status_url}"' in page
    assert client.get(status_url).json() == {
        "status": "running",
        "rows": 1,
        "total": 5,
        "message": "进行中：已处理 1 / 5 位客户",
    }
    assert "还没有结束，结束后才能撤销" in _undo(client, running).content.decode()
    # Its worker was killed past the time limit: it will never finish.
    BulkTagging.objects.filter(pk=running.pk).update(
        created_at=started - BulkTagging.INTERRUPTED_AFTER - timedelta(minutes=1)
    )
    page = client.get(reverse("tag_detail", args=[manual_tag.pk])).content.decode()
    assert "已中断" in page and f'data-status-url="{status_url}"' not in page
    assert client.get(status_url).json()["status"] == "interrupted"
    assert "已开始撤销" in _undo(client, running).content.decode()
    assert BulkTagging.objects.filter(undoes=running).exists()


class _WorkerKilled(BaseException):
    """The worker's process dies: nothing of ours catches it."""


def test_a_second_delivery_finishes_and_counts_each_change_once(
    client_for, operator, tag_people, manual_tag, monkeypatch
):
    monkeypatch.setattr(bulk, "BATCH", 2)
    batches = []

    def dies_in_the_second_batch(**arguments):
        batches.append(arguments["customer_ids"])
        if len(batches) == 2:
            raise _WorkerKilled
        return customer_tags_set(**arguments)

    monkeypatch.setattr(bulk, "customer_tags_set", dies_in_the_second_batch)
    client = client_for(operator)
    response = client.post(
        reverse("tag_customers_change", args=[manual_tag.pk]),
        {"action": "add_filtered", "show": "all"},
    )
    assert response.status_code == 302
    tagging = BulkTagging.objects.get()
    with pytest.raises(_WorkerKilled):
        bulk_tagging_run(bulk_id=tagging.pk)
    tagging.refresh_from_db()
    first_start = tagging.started_at
    assert (tagging.status, tagging.done, tagging.changed) == ("running", 2, 2)
    assert len(_holders(manual_tag)) == 2  # the first batch, whole

    bulk_tagging_run(bulk_id=tagging.pk)  # delivered again
    tagging.refresh_from_db()
    assert (tagging.status, tagging.total, tagging.done, tagging.changed) == (
        "succeeded",
        5,
        5,
        5,
    )
    assert tagging.started_at == first_start
    assert _holders(manual_tag) == set("ABCDE")
    added = CustomerTag.objects.filter(tag=manual_tag).values_list("added_at", flat=True)
    assert set(added) == {first_start}  # so that its undo finds every one
    assert CustomerTagEvent.objects.filter(tag=manual_tag).count() == 5


def test_filters_gone_before_the_worker_started_fail_it_and_tag_nobody(
    client_for, operator, tag_people, manual_tag, enqueued
):
    client = client_for(operator)
    guide = Guide.objects.get(wecom_userid="guide0001")
    client.post(
        reverse("tag_customers_change", args=[manual_tag.pk]),
        {"action": "add_filtered", "show": "all", "guide": guide.pk},
    )
    other = Tag.objects.create(
        group=TagGroup.objects.create(name="临时"), name="旧活动", source=Tag.Source.MANUAL
    )
    customer_tags_set(tag=other, customer_ids=[tag_people["A"].pk], add=True, by=operator)
    client.post(
        reverse("listed_customers_tag"),
        {"tag": manual_tag.pk, "query": urlencode({"own_tag": other.pk})},
    )
    by_guide, by_tag = BulkTagging.objects.order_by("pk")
    Relationship.objects.filter(guide=guide).delete()  # their customers were handed over
    guide.delete()
    other.delete()
    for tagging in (by_guide, by_tag):
        bulk_tagging_run(bulk_id=tagging.pk)
        tagging.refresh_from_db()
        assert tagging.status == "failed" and tagging.changed == 0
    assert "导购已删除" in by_guide.failure
    assert "筛选条件已失效" in by_tag.failure  # not the whole list instead
    assert not CustomerTag.objects.filter(tag=manual_tag).exists()
    page = client.get(reverse("tag_detail", args=[manual_tag.pk])).content.decode()
    assert f"失败：{by_tag.failure}" in page


def test_managers_follow_bulk_taggings_and_change_nothing(
    client_for, operator, manager, guide_user, tag_people, manual_tag, enqueued
):
    tagging, _ = _add_to_everyone(client_for(operator), manual_tag)
    managing = client_for(manager)
    page = managing.get(reverse("tag_detail", args=[manual_tag.pk])).content.decode()
    assert 'id="bulk-taggings"' in page and "新加上 5 位" in page
    assert "<td>运营小王</td>" in page  # who asked, by name
    assert reverse("bulk_tagging_undo", args=[tagging.pk]) not in page
    assert managing.post(reverse("bulk_tagging_undo", args=[tagging.pk])).status_code == 403
    guiding = client_for(guide_user)
    assert guiding.get(reverse("bulk_tagging_status", args=[tagging.pk])).status_code == 403
    assert not BulkTagging.objects.filter(source=BulkTagging.Source.UNDO).exists()
    assert _holders(manual_tag) == set("ABCDE")


@pytest.mark.django_db(transaction=True)
def test_the_worker_tags_more_than_a_batch_and_the_page_follows_it(
    celery_worker, client_for, operator
):
    """Every customer the list's search selects, over several batches; nobody else."""
    tag = Tag.objects.create(
        group=TagGroup.objects.create(name="运营标记"), name="春季活动", source=Tag.Source.MANUAL
    )
    chosen = bulk.BATCH + 700
    Customer.objects.bulk_create(Customer(name=f"春季{n:05d}") for n in range(chosen))
    Customer.objects.bulk_create(Customer(name=f"秋季{n:03d}") for n in range(300))
    client = client_for(operator)
    response = client.post(
        reverse("listed_customers_tag"), {"tag": tag.pk, "query": urlencode({"q": "春季"})}
    )
    assert response["Location"] == reverse("tag_detail", args=[tag.pk]) + "#bulk"
    tagging = BulkTagging.objects.get()
    status_url = reverse("bulk_tagging_status", args=[tagging.pk])
    state = wait_for(
        lambda: (reply := client.get(status_url).json())["status"] == "succeeded" and reply,
        timeout=60,
    )
    assert (state["rows"], state["total"]) == (chosen, chosen)
    tagging.refresh_from_db()
    assert tagging.changed == chosen
    holders = CustomerTag.objects.filter(tag=tag).values_list("customer__name", flat=True)
    assert sorted(holders) == [f"春季{n:05d}" for n in range(chosen)]
