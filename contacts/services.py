"""Operations on contacts that write several rows or call WeCom."""

from datetime import UTC, datetime

from django.db import transaction

from contacts.models import (
    Customer,
    CustomerGroup,
    Guide,
    Relationship,
    RelationshipEvent,
    SyncRun,
)
from contacts.wecom_sync import SyncProgress, WeComFullSync, WeComWriter


def sync_run_start(*, kind: str = SyncRun.Kind.FULL, triggered_by: str = "") -> SyncRun:
    """Record a new sync run; `sync_run_execute` does the work (inline or on a worker)."""
    return SyncRun.objects.create(kind=kind, triggered_by=triggered_by)


def sync_run_execute(*, run_id: int, gateway=None) -> SyncRun:
    """Run or resume a sync run from its saved cursor. A finished run is left as it is.

    Safe to call twice: rows are upserted, the cursor is saved with the rows it
    covers, and an advisory lock keeps two executions from overlapping.
    """
    from scrm.wecom.gateway import WeComGateway

    run = SyncRun.objects.get(pk=run_id)
    if run.status == SyncRun.Status.SUCCEEDED:
        return run
    if run.status == SyncRun.Status.FAILED:
        # A retry of a failed run resumes from its cursor.
        run.status = SyncRun.Status.RUNNING
        run.finished_at = None
        run.save(update_fields=["status", "finished_at"])
    return WeComFullSync(run=run, gateway=gateway or WeComGateway.from_settings()).execute()


def sync_run_enqueue(*, run: SyncRun) -> None:
    from contacts.tasks import sync_wecom

    transaction.on_commit(lambda: sync_wecom.delay(run.pk))


# -- WeCom callbacks ----------------------------------------------------------
# Each handler gets the decrypted event as a dict of its XML fields and a
# gateway. Handlers are atomic; the callback layer runs each event once and
# retries a failed one, so a handler may run again after a failure.


def _follow_info(follow_user: dict) -> dict:
    """externalcontact/get's follow_user entry in batch/get_by_user's follow_info shape."""
    info = {key: value for key, value in follow_user.items() if key != "tags"}
    info["tag_id"] = [tag["tag_id"] for tag in follow_user.get("tags", []) if tag.get("tag_id")]
    return info


def _occurred_at(event: dict) -> datetime:
    return datetime.fromtimestamp(int(event["CreateTime"]), tz=UTC)


def contact_refresh(*, event: dict, gateway) -> None:
    """add / edit / half-add of an external contact: re-read it from WeCom and upsert it."""
    external_userid, userid = event["ExternalUserID"], event["UserID"]
    contact = gateway.external_contact_get(external_userid)
    items = [
        {"external_contact": contact["external_contact"], "follow_info": _follow_info(follow)}
        for follow in contact.get("follow_user", [])
    ]
    with transaction.atomic():
        Guide.objects.get_or_create(wecom_userid=userid, defaults={"name": userid})
        existing = Relationship.objects.filter(
            customer__external_userid=external_userid, guide__wecom_userid=userid
        ).first()
        WeComWriter(progress=SyncProgress(), source=RelationshipEvent.Source.CALLBACK).relations(
            items
        )
        relationship = Relationship.objects.filter(
            customer__external_userid=external_userid, guide__wecom_userid=userid
        ).first()
        if relationship is None:
            return  # WeCom no longer lists it (deleted again since); its own event follows
        kind = None
        if event["ChangeType"] == "edit_external_contact":
            kind = RelationshipEvent.Kind.EDITED
        elif existing is not None and not existing.is_active:
            kind = RelationshipEvent.Kind.ADDED  # re-added; a new one got its event from the writer
        if kind:
            RelationshipEvent.objects.create(
                relationship=relationship,
                kind=kind,
                source=RelationshipEvent.Source.CALLBACK,
                occurred_at=_occurred_at(event),
                detail={"state": event.get("State", "")},
            )


_ENDINGS = {
    "del_external_contact": (Relationship.EndedBy.GUIDE, RelationshipEvent.Kind.DELETED_BY_GUIDE),
    "del_follow_user": (Relationship.EndedBy.CUSTOMER, RelationshipEvent.Kind.DELETED_BY_CUSTOMER),
}


def relationship_end(*, event: dict, gateway=None) -> None:
    """A guide deleted the customer, or the customer deleted the guide (a churn alert)."""
    ended_by, kind = _ENDINGS[event["ChangeType"]]
    occurred_at = _occurred_at(event)
    with transaction.atomic():
        relationship = (
            Relationship.objects.select_for_update()
            .filter(
                customer__external_userid=event["ExternalUserID"],
                guide__wecom_userid=event["UserID"],
            )
            .first()
        )
        if relationship is None:
            return  # never synced; the nightly reconcile has nothing to end either
        if relationship.is_active:
            relationship.is_active = False
            relationship.ended_at = occurred_at
            relationship.ended_by = ended_by
            relationship.save(update_fields=["is_active", "ended_at", "ended_by", "updated_at"])
        RelationshipEvent.objects.create(
            relationship=relationship,
            kind=kind,
            source=RelationshipEvent.Source.CALLBACK,
            occurred_at=occurred_at,
            detail={"source": event["Source"]} if event.get("Source") else {},
        )
        Customer.objects.filter(pk=relationship.customer_id).exclude(
            relationships__is_active=True
        ).update(is_member=False)


def relationship_transfer_failed(*, event: dict, gateway=None) -> None:
    relationship = Relationship.objects.filter(
        customer__external_userid=event["ExternalUserID"], guide__wecom_userid=event["UserID"]
    ).first()
    if relationship is not None:
        RelationshipEvent.objects.create(
            relationship=relationship,
            kind=RelationshipEvent.Kind.TRANSFER_FAILED,
            source=RelationshipEvent.Source.CALLBACK,
            occurred_at=_occurred_at(event),
            detail={"reason": event.get("FailReason", "")},
        )


def group_refresh(*, event: dict, gateway) -> None:
    """A customer group was created, changed or dismissed."""
    chat_id = event["ChatId"]
    if event["ChangeType"] == "dismiss":
        CustomerGroup.objects.filter(chat_id=chat_id).update(is_dismissed=True)
        return
    detail = gateway.groupchat_get(chat_id)
    with transaction.atomic():
        WeComWriter(progress=SyncProgress(), source=RelationshipEvent.Source.CALLBACK).groups(
            [detail], [0]
        )


def corp_tags_refresh(*, event: dict, gateway) -> None:
    """A corp tag or group changed in the admin console: re-read the (small) tag library."""
    groups = gateway.corp_tag_list()
    with transaction.atomic():
        WeComWriter(progress=SyncProgress(), source=RelationshipEvent.Source.CALLBACK).corp_tags(
            groups
        )
