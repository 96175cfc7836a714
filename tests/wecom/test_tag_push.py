"""Rule tags pushed to WeCom (the emulator) with mark_tag: only the difference, in our own
corp tag group, guides' own tags kept; WeCom's corp tags mirrored back as customer tags."""

import json
from io import StringIO

import pytest
from celery.result import AsyncResult
from django.core.management import call_command

from contacts.facts import facts_refresh
from contacts.models import CorpTag, Relationship
from scrm.celery import app as celery_app
from scrm.wecom.gateway import WeComGateway
from tagging import tasks
from tagging.evaluation import PUSH_GROUP_NAME, evaluate
from tagging.models import CustomerTag, Tag, TagGroup, TagPushPending, TagRule
from tagging.push import push_pending
from tests.helpers import wait_for, worker_idle

pytestmark = pytest.mark.django_db


def _sync() -> None:
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=StringIO())


def _emulator_tags(emulator, userid: str) -> dict[str, set[str]]:
    return {f["external_userid"]: set(f["tag_id"]) for f in emulator.data.follows[userid]}


def _rule(name: str, userid: str) -> Tag:
    group, _ = TagGroup.objects.get_or_create(name="跟进")
    tag = Tag.objects.create(group=group, name=name, source=Tag.Source.RULE)
    TagRule.objects.create(tag=tag, condition={"fact": "guide", "op": "any_of", "value": [userid]})
    return tag


def test_rule_tags_reach_wecom_as_a_difference_and_guides_tags_survive(emulator):
    _sync()
    facts_refresh()
    userid = "guide0001"
    before = _emulator_tags(emulator, userid)
    tag = _rule("一号导购的客户", userid)
    evaluate(customer_ids=None)
    followed = set(
        Relationship.objects.filter(guide__wecom_userid=userid, is_active=True).values_list(
            "customer_id", flat=True
        )
    )
    assert (
        set(CustomerTag.objects.filter(tag=tag).values_list("customer_id", flat=True)) == followed
    )
    # every customer whose system or rule tags changed is queued (here: all of them)
    assert TagPushPending.objects.filter(customer_id__in=followed).count() == len(followed)

    result = push_pending(gateway=WeComGateway.from_settings())

    tag.refresh_from_db()
    ours = next(g for g in emulator.data.tag_groups if g["group_name"] == PUSH_GROUP_NAME)
    assert tag.wecom_tag_id in {t["id"] for t in ours["tag"]}
    assert any(t["name"] == "跟进·一号导购的客户" for t in ours["tag"])
    after = _emulator_tags(emulator, userid)
    our_ids = {t["id"] for t in ours["tag"]}
    for external_userid, tags in after.items():
        assert tag.wecom_tag_id in tags
        assert tags - our_ids == before[external_userid]  # the guide's own tags, untouched
    assert TagPushPending.objects.count() == 0
    assert result.failed == 0
    # our relationships know what WeCom now has
    stored = Relationship.objects.get(
        guide__wecom_userid=userid, customer__external_userid=next(iter(after))
    )
    assert set(stored.wecom_tag_ids) == after[stored.customer.external_userid]
    # the push group is mirrored in contacts and not mirrored back as WeCom tags
    assert CorpTag.objects.filter(wecom_tag_id=tag.wecom_tag_id).exists()

    # A second push has nothing to send.
    calls = emulator.stats().get("externalcontact/mark_tag", 0)
    evaluate(customer_ids=None)
    push_pending(gateway=WeComGateway.from_settings())
    assert emulator.stats().get("externalcontact/mark_tag", 0) == calls
    assert not Tag.objects.filter(source=Tag.Source.WECOM, wecom_tag_id__in=our_ids).exists()


def test_a_tag_that_no_longer_applies_is_removed_and_only_it(emulator):
    _sync()
    facts_refresh()
    tag = _rule("一号导购的客户", "guide0001")
    evaluate(customer_ids=None)
    push_pending(gateway=WeComGateway.from_settings())
    tag.refresh_from_db()
    with_ours = _emulator_tags(emulator, "guide0001")

    TagRule.objects.filter(tag=tag).update(
        condition={"fact": "guide", "op": "any_of", "value": ["guide0002"]}
    )
    result = evaluate(customer_ids=None)
    # customers both guides follow keep the tag
    both = set(_emulator_tags(emulator, "guide0002")) & set(with_ours)
    assert result.removed[tag.pk] == len(set(with_ours) - both)
    push_pending(gateway=WeComGateway.from_settings())
    for external_userid, tags in _emulator_tags(emulator, "guide0001").items():
        kept = {tag.wecom_tag_id} if external_userid in both else set()
        assert tags == (with_ours[external_userid] - {tag.wecom_tag_id}) | kept


def test_corp_tags_set_in_wecom_show_as_customer_tags(emulator):
    summary = StringIO()
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=summary)
    assert json.loads(summary.getvalue())["tags"]["created"] > 0
    facts_refresh()
    evaluate(customer_ids=None)
    expected = {
        (external_userid, tag_id)
        for userid, follows in emulator.data.follows.items()
        for follow in follows
        for tag_id in follow["tag_id"]
        for external_userid in [follow["external_userid"]]
    }
    stored = set(
        CustomerTag.objects.filter(tag__source=Tag.Source.WECOM).values_list(
            "customer__external_userid", "tag__wecom_tag_id"
        )
    )
    assert stored == expected


def test_retag_counts_the_customers_of_mirrored_wecom_tags(emulator):
    call_command("sync_wecom", "--full", "--inline", stdout=StringIO())
    summary = StringIO()
    call_command("retag", "--full", "--inline", "--json", stdout=summary)
    per_tag = {}
    for follows in emulator.data.follows.values():
        for follow in follows:
            for tag_id in follow["tag_id"]:
                per_tag.setdefault(tag_id, set()).add(follow["external_userid"])
    mirrored = dict(Tag.objects.filter(source=Tag.Source.WECOM).values_list("pk", "wecom_tag_id"))
    rows = {row["id"]: row for row in json.loads(summary.getvalue())["tags"]}
    assert mirrored and per_tag
    for pk, wecom_tag_id in mirrored.items():
        assert rows[pk]["added"] == rows[pk]["total"] == len(per_tag.get(wecom_tag_id, ()))


def test_a_push_given_seconds_stops_after_the_batch_that_passes_them(emulator):
    _sync()
    facts_refresh()
    _rule("一号导购的客户", "guide0001")
    evaluate(customer_ids=None)
    queued = TagPushPending.objects.count()
    assert queued > 2
    first = push_pending(gateway=WeComGateway.from_settings(), batch=2, seconds=0)
    assert (first.customers, first.more) == (2, True)
    assert TagPushPending.objects.count() == queued - 2
    rest = push_pending(gateway=WeComGateway.from_settings())
    assert (rest.customers, rest.more) == (queued - 2, False)
    assert not TagPushPending.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_push_slice_queues_the_rest_for_a_worker(emulator, celery_worker, monkeypatch):
    _sync()
    facts_refresh()
    _rule("一号导购的客户", "guide0001")
    evaluate(customer_ids=None)
    queued = TagPushPending.objects.count()
    # Here: one slice of two customers; the worker pushes the rest with its own slices.
    monkeypatch.setattr(tasks, "PUSH_SLICE_SECONDS", 0)
    monkeypatch.setattr(tasks, "push_pending", lambda **kw: push_pending(batch=2, **kw))
    first = tasks.push_tags.apply().get()
    assert (first["customers"], first["more"]) == (2, True)
    # The rest, on the worker (a push the sync queued may share the work: skip locked).
    rest = AsyncResult(first["rest"], app=celery_app).get(timeout=60)
    assert rest["more"] is False and rest["rest"] is None
    assert not TagPushPending.objects.exists() and queued > 2
    # and the worker is done with it (a debounced dashboards refresh may wait its turn)
    idle = lambda: worker_idle(scheduled=False)  # noqa: E731
    wait_for(lambda: idle() and idle(), timeout=60)


@pytest.mark.django_db(transaction=True)  # a push and an evaluation: two connections
def test_a_change_made_while_a_push_holds_the_customer_is_pushed_after_it(emulator):
    """The push claimed the customer and read their tags; an evaluation changes them
    meanwhile; the push then drops the customer from the queue. They are queued again
    (WeCom drifted from our tags when the evaluation's queueing did nothing)."""
    import threading

    from django.db import connection, transaction

    from tests.helpers import another_waits_for_a_lock

    _sync()
    facts_refresh()
    tag = _rule("一号导购的客户", "guide0001")
    evaluate(customer_ids=None)
    push_pending(gateway=WeComGateway.from_settings())
    only_ours = (
        Relationship.objects.filter(guide__wecom_userid="guide0001", is_active=True)
        .exclude(customer__relationships__guide__wecom_userid="guide0002")
        .values_list("customer_id", flat=True)
        .first()
    )
    TagPushPending.objects.create(customer_id=only_ours)  # queued, about to be pushed
    claimed, release = threading.Event(), threading.Event()

    def push() -> None:  # as push_pending's batch: the row locked until the batch commits
        try:
            with transaction.atomic():
                TagPushPending.objects.select_for_update().get(customer_id=only_ours)
                claimed.set()
                release.wait(timeout=30)
                TagPushPending.objects.filter(customer_id=only_ours).delete()
        finally:
            connection.close()

    def change() -> None:
        try:
            evaluate(customer_ids=None)
        finally:
            connection.close()

    pusher = threading.Thread(target=push)
    pusher.start()
    assert claimed.wait(timeout=30)
    TagRule.objects.filter(tag=tag).update(
        condition={"fact": "guide", "op": "any_of", "value": ["guide0002"]}
    )
    evaluation = threading.Thread(target=change)
    evaluation.start()
    wait_for(another_waits_for_a_lock, timeout=30, interval=0.05)  # it waits for the push
    release.set()
    pusher.join(timeout=30)
    evaluation.join(timeout=60)
    assert not CustomerTag.objects.filter(tag=tag, customer_id=only_ours).exists()
    assert TagPushPending.objects.filter(customer_id=only_ours).exists()
