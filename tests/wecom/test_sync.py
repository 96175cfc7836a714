"""Full sync against the emulator: exact data, idempotent, minimal calls, resumable."""

import json
from io import StringIO
from math import ceil

import pytest
from django.core.management import call_command
from django.db import connection

from contacts import services
from contacts.models import (
    CorpTag,
    Customer,
    CustomerGroup,
    CustomerGroupMember,
    CustomerIdentity,
    Guide,
    Relationship,
    RelationshipEvent,
    Store,
    SyncRun,
)
from scrm.wecom.gateway import WeComGateway

pytestmark = pytest.mark.django_db


def _expected(emulator) -> dict:
    data = emulator.data
    return {
        "customers": set(data.customers),
        "relationships": {
            (f["external_userid"], userid)
            for userid, follows in data.follows.items()
            for f in follows
        },
        "guides": {u["userid"] for u in data.users},
        "tags": {t["id"] for g in data.tag_groups for t in g["tag"]},
        "groups": set(data.groups),
        "members": sum(len(g["member_list"]) for g in data.groups.values()),
    }


def _stored() -> dict:
    return {
        "customers": set(Customer.objects.values_list("external_userid", flat=True)),
        "relationships": set(
            Relationship.objects.filter(is_active=True).values_list(
                "customer__external_userid", "guide__wecom_userid"
            )
        ),
        "guides": set(Guide.objects.filter(is_active=True).values_list("wecom_userid", flat=True)),
        "tags": set(
            CorpTag.objects.filter(is_deleted=False).values_list("wecom_tag_id", flat=True)
        ),
        "groups": set(CustomerGroup.objects.values_list("chat_id", flat=True)),
        "members": CustomerGroupMember.objects.count(),
    }


def _sync() -> dict:
    out = StringIO()
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_full_sync_stores_exactly_the_emulators_data(emulator):
    summary = _sync()
    expected = _expected(emulator)
    assert _stored() == expected
    assert summary["customers"]["created"] == len(expected["customers"])
    assert summary["relationships"]["created"] == len(expected["relationships"])
    assert Store.objects.count() == len(emulator.data.departments) - 1
    # stores, guides' stores and member flags
    assert Guide.objects.filter(store__isnull=True).count() == 0
    assert Customer.objects.filter(is_member=True).count() == len(expected["customers"])
    unionids = {c["unionid"] for c in emulator.data.customers.values() if "unionid" in c}
    assert (
        set(CustomerIdentity.objects.filter(kind="unionid").values_list("value", flat=True))
        == unionids
    )
    phone = CustomerIdentity.objects.filter(kind="phone_hash").first()
    assert phone is not None and "****" in phone.display


def test_second_sync_changes_nothing(emulator):
    _sync()
    summary = _sync()
    for entity in ("customers", "relationships", "guides", "tags", "groups"):
        counts = summary[entity]
        assert counts["created"] == counts["updated"] == counts["removed"] == 0, entity
    assert summary["relationships"]["unchanged"] == emulator.relations_count()


def test_a_first_sync_renews_the_statistics_of_what_it_wrote(emulator):
    """The planner's row counts (reltuples) are what ANALYZE saw: exact for tables this
    small. Counted empty first: they outlive a test's rollback."""
    models = {
        "contacts_customer": Customer,
        "contacts_customeridentity": CustomerIdentity,
        "contacts_relationship": Relationship,
        "contacts_relationshipevent": RelationshipEvent,
    }  # the emulator's two groups are fewer than autovacuum's 50 rows
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(models)}")
        _sync()
        cursor.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s)", [list(models)]
        )
        counted = dict(cursor.fetchall())
    assert counted == {table: model.objects.count() for table, model in models.items()}
    assert min(counted.values()) > 50


def test_api_calls_are_the_minimum_the_api_allows(emulator):
    summary = _sync()
    follows = emulator.data.follows
    batch = sorted(follows)
    pages = ceil(sum(len(follows[u]) for u in batch) / 100) or 1
    # gettoken, department/list, user/list, follow list ×2, tag list, batch pages,
    # groupchat/list, one groupchat/get per group
    minimum = 1 + 1 + 1 + 2 + 1 + pages + 1 + len(emulator.data.groups)
    assert summary["api_calls"] <= minimum + 1


def test_changes_and_deletions_in_wecom_are_picked_up(emulator):
    _sync()
    userid = sorted(emulator.data.follows)[0]
    gone = emulator.data.follows[userid].pop()
    edited = emulator.data.follows[userid][0]
    edited["remark"] = "改过的备注"
    summary = _sync()
    assert summary["relationships"]["removed"] == 1
    assert summary["relationships"]["updated"] == 1
    ended = Relationship.objects.get(
        customer__external_userid=gone["external_userid"], guide__wecom_userid=userid
    )
    assert not ended.is_active and ended.ended_by == "sync"
    assert ended.events.filter(kind=RelationshipEvent.Kind.ENDED).count() == 1
    assert _stored() == _expected(emulator)


class Crash(Exception):
    """Stands for the worker dying mid-run."""


class CrashingGateway(WeComGateway):
    def __init__(self, *args, crash_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pages_left = crash_after

    def batch_get_by_user(self, *args, **kwargs):
        if self.pages_left == 0:
            raise Crash
        self.pages_left -= 1
        return super().batch_get_by_user(*args, **kwargs)


def test_a_killed_sync_resumes_from_its_cursor(emulator, monkeypatch):
    monkeypatch.setattr("contacts.wecom_sync.FLUSH_RELATIONS", 100)
    run = services.sync_run_start()
    with pytest.raises(Crash):
        crashing = CrashingGateway(WeComGateway.from_settings().credentials, crash_after=2)
        services.sync_run_execute(run_id=run.pk, gateway=crashing)
    run.refresh_from_db()
    assert run.cursor["stage"] == "customers" and run.cursor["batch"] == 0
    partial = Relationship.objects.count()
    assert 0 < partial < emulator.relations_count()
    services.sync_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert _stored() == _expected(emulator)
    assert Relationship.objects.count() == emulator.relations_count()  # no duplicates


def test_groups_of_a_member_who_left_are_kept(emulator):
    _sync()
    owner = next(group["owner"] for group in emulator.data.groups.values())
    theirs = {chat_id for chat_id, group in emulator.data.groups.items() if group["owner"] == owner}
    emulator.data.follows.pop(owner)  # they left: no follow user any more, groups stay in WeCom
    summary = _sync()
    assert summary["groups"]["removed"] == 0
    kept = CustomerGroup.objects.filter(chat_id__in=theirs, is_dismissed=False)
    assert kept.count() == len(theirs) > 0
    assert _stored()["groups"] == _expected(emulator)["groups"]
