"""Operations on contacts that write several rows or call WeCom."""

import csv
import logging
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from psycopg2.extras import execute_values

from contacts.facts import facts_mark_pending, facts_mark_pending_selected
from contacts.models import (
    MAX_STORED_ERRORS,
    REJECTED_CELLS_DAYS,
    Customer,
    CustomerGroup,
    CustomerGroupMember,
    CustomerIdentity,
    CustomerMerge,
    Guide,
    MergeSuggestion,
    Order,
    OrderBinding,
    OrderImport,
    Product,
    Relationship,
    RelationshipEvent,
    SyncRun,
)
from contacts.order_files import (
    GENERIC_COLUMNS,
    OrderFileError,
    detect_channel,
    order_number_columns,
    read_cells,
    read_orders,
)
from contacts.order_files.sources import Table
from contacts.order_import import (
    LINE_ATTRIBUTES,
    MASKED_FITS,
    ORDER_IMPORT_LOCK,
    ImportReport,
    order_import_finish,
    orders_load,
)
from contacts.wecom_sync import (
    CONTACTS_LOCK,
    SyncProgress,
    WeComFullSync,
    WeComWriter,
    contacts_lock_shared,
)
from scrm.limits import HourlyLimit, LimitReached
from scrm.reasons import Reason, reason_text, spec_of, spec_rows_shifted
from scrm.wecom.gateway import WeComError, WeComGateway

logger = logging.getLogger(__name__)


def sync_run_start(*, kind: str = SyncRun.Kind.FULL, triggered_by: str = "") -> SyncRun:
    """Record a new sync run; `sync_run_execute` does the work (inline or on a worker)."""
    return SyncRun.objects.create(kind=kind, triggered_by=triggered_by)


def sync_run_execute(*, run_id: int, gateway=None) -> SyncRun:
    """Run or resume a sync run from its saved cursor. A finished run is left as it is.

    Safe to call twice: rows are upserted, the cursor is saved with the rows it
    covers, and an advisory lock keeps two executions from overlapping.
    """
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
        with connection.cursor() as cursor:
            contacts_lock_shared(cursor)
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
        facts_mark_pending([relationship.customer_id])


# user/get's status of a member who works here (2 disabled, 4 not activated, 5 quit)
MEMBER_ACTIVE = 1
USER_NOT_FOUND = 60111


def guide_left(*, event: dict, gateway) -> None:
    """An admin deleted a member (delete_user) or changed one (update_user) in WeCom's
    contacts: a guide no longer there or no longer active loses access now, not at the
    next sync (`scrm.auth`). update_user carries no status (WeCom sends UserID and
    Department alone), so the member is read again. Becoming active again, and a new
    userid (NewUserID), are the sync's to learn: it also knows whom they follow."""
    userid = event["UserID"]
    if event["ChangeType"] == "update_user":
        if event.get("NewUserID"):
            return
        try:
            if gateway.user_get(userid).get("status", MEMBER_ACTIVE) == MEMBER_ACTIVE:
                return
        except WeComError as error:
            if error.errcode != USER_NOT_FOUND:
                raise
    Guide.objects.filter(wecom_userid=userid, is_active=True).update(is_active=False)


def relationship_transfer_failed(*, event: dict, gateway=None) -> None:
    """A transfer of the customer failed (refused, or the taker is full). UserID is the
    member who was to take over, who has no relationship with the customer: the event is
    kept on the customer's live relationship (the one that stays), naming the taker."""
    relationship = (
        Relationship.objects.filter(customer__external_userid=event["ExternalUserID"])
        .order_by("-is_active", "-added_at")
        .first()
    )
    if relationship is not None:
        RelationshipEvent.objects.create(
            relationship=relationship,
            kind=RelationshipEvent.Kind.TRANSFER_FAILED,
            source=RelationshipEvent.Source.CALLBACK,
            occurred_at=_occurred_at(event),
            detail={"reason": event.get("FailReason", ""), "takeover": event["UserID"]},
        )


def group_refresh(*, event: dict, gateway) -> None:
    """A customer group was created, changed or dismissed."""
    chat_id = event["ChatId"]
    if event["ChangeType"] == "dismiss":
        with transaction.atomic():
            CustomerGroup.objects.filter(chat_id=chat_id).update(is_dismissed=True)
            facts_mark_pending(
                CustomerGroupMember.objects.filter(
                    group__chat_id=chat_id, customer__isnull=False
                ).values_list("customer_id", flat=True)
            )
        return
    detail = gateway.groupchat_get(chat_id)
    with transaction.atomic():
        WeComWriter(progress=SyncProgress(), source=RelationshipEvent.Source.CALLBACK).groups(
            [detail], [0]
        )


def corp_tags_store(*, groups: list[dict]) -> None:
    """Mirror WeCom's corp tag library as get_corp_tag_list returns it (after our own
    changes through the API, which raise no callback)."""
    with transaction.atomic():
        WeComWriter(progress=SyncProgress(), source=RelationshipEvent.Source.SYNC).corp_tags(groups)


def relationship_tags_update(*, relationship_id: int, add: list[str], remove: list[str]) -> None:
    """Record corp tags we set or removed on a relationship with mark_tag."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE contacts_relationship SET updated_at = now(), wecom_tag_ids = ARRAY(
                SELECT DISTINCT t FROM unnest(wecom_tag_ids || %s::varchar[]) t
                WHERE t <> ALL(%s::varchar[]) ORDER BY t)
            WHERE id = %s
            """,
            [add, remove, relationship_id],
        )


def corp_tags_refresh(*, event: dict, gateway) -> None:
    """A corp tag or group changed in the admin console: re-read the (small) tag library."""
    groups = gateway.corp_tag_list()
    with transaction.atomic():
        WeComWriter(progress=SyncProgress(), source=RelationshipEvent.Source.CALLBACK).corp_tags(
            groups
        )


# -- orders -----------------------------------------------------------------


def orders_import(
    *,
    paths: list[Path],
    channel: str | None,
    imported_by=None,
    dry_run: bool = False,
    source: str = "file",
    record: OrderImport | None = None,
    command_user: str = "",
) -> tuple[OrderImport, ImportReport]:
    """Read, validate and load order files; every import is recorded, also a failed one."""
    paths = list(dict.fromkeys(paths))  # a file given twice is read once
    record = record or OrderImport.objects.create(
        channel=channel or "auto",
        files=[path.name for path in paths],
        imported_by=imported_by,
        source=source,
        command_user=command_user,
        is_dry_run=dry_run,
    )
    try:
        if channel is None:  # recorded as detected: the one channel, or the several
            detected = [detect_channel(path) for path in paths]
            detected = list(dict.fromkeys(detected))  # in the order of the files
            if len(detected) == 1:
                record.channel = detected[0]
            else:
                record.detected_channels = detected
            record.save(update_fields=["channel", "detected_channels"])
        report = orders_load(
            items=read_orders(paths, channel),
            record=record,
            dry_run=dry_run,
            progress=lambda rows: cache.set(f"order-import:{record.pk}:rows", rows, 3600),
            order_columns=order_number_columns(paths, channel),
        )
    except Exception as error:  # the import is never left running: a file's fault, or ours
        reason = (
            error.args[0]
            if isinstance(error, OrderFileError)
            else Reason(
                "导入出错（{kind}），没有写入任何订单：请联系技术支持，并附上这个文件",
                kind=type(error).__name__,
            )
        )
        record.status = OrderImport.Status.FAILED
        record.failure, record.failure_spec = str(reason), spec_of(reason)
        record.finished_at = timezone.now()
        record.save()
        raise
    record.rejected_cells = _rejected_cells(paths, report)
    return order_import_finish(record=record, report=report, dry_run=dry_run), report


def _rejected_cells(paths: list[Path], report: ImportReport) -> list[dict]:
    """Every rejected row as read, whole orders only: none when there are more than a
    report keeps (`MAX_STORED_ERRORS`), when two files have one name, or when a file
    cannot be read again (the import stands; the error report is still there)."""
    if not report.rejected or report.rejected > MAX_STORED_ERRORS:
        return []
    if len({path.name for path in paths}) < len(paths):
        return []  # two files of one name (from two folders): rows cannot be told apart
    try:
        return read_cells(paths, report.rejected_rows)
    except (OSError, OrderFileError):
        logger.exception("the rejected rows of %s could not be read again", paths)
        return []


def order_imports_forget_rejected_cells(*, now=None) -> int:
    """Clear the rejected rows of imports finished more than REJECTED_CELLS_DAYS ago."""
    cutoff = (now or timezone.now()) - timedelta(days=REJECTED_CELLS_DAYS)
    return (
        OrderImport.objects.filter(finished_at__lt=cutoff)
        .exclude(rejected_cells=[])
        .update(rejected_cells=[])
    )


UPLOAD_DIR = Path(settings.MEDIA_ROOT) / "order-uploads"


def order_upload_accept(*, files, channel: str | None, imported_by) -> OrderImport:
    """Keep the uploaded files and queue their import on a worker (large files take a while)."""
    record = OrderImport.objects.create(
        status=OrderImport.Status.QUEUED,
        channel=channel or "auto",
        files=[upload.name for upload in files],
        imported_by=imported_by,
        source="upload",
    )
    folder = UPLOAD_DIR / str(record.pk)
    folder.mkdir(parents=True, exist_ok=True)
    for upload in files:
        with open(folder / Path(upload.name).name, "wb") as target:
            for chunk in upload.chunks():
                target.write(chunk)
    from contacts.tasks import import_orders_file

    transaction.on_commit(lambda: import_orders_file.delay(record.pk))
    return record


def order_upload_process(*, record: OrderImport) -> None:
    folder = UPLOAD_DIR / str(record.pk)
    paths = [folder / name for name in record.files]
    channel = None if record.channel == "auto" else record.channel
    try:
        orders_import(paths=paths, channel=channel, record=record)
    except OrderFileError:
        pass  # recorded on the import as failed, with the reason
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def order_import_progress(*, record: OrderImport) -> int:
    """Rows read so far by a running import (from the cache; the import's own rows are not
    visible outside its transaction until it commits)."""
    return cache.get(f"order-import:{record.pk}:rows", 0)


# -- one customer per person ----------------------------------------------------


# What makes a customer the WeCom contact they are: a merge into a customer who is none
# moves it along, so that syncs, callbacks, messages and the sidebar find the one kept.
WECOM_CONTACT_FIELDS = (
    "external_userid",
    "name",
    "type",
    "gender",
    "avatar",
    "corp_name",
    "unionid",
)


def _no_import_running() -> None:
    """An import links orders to customers by the identities it reads under its lock
    (`ORDER_IMPORT_LOCK`): a merge or an undo in between would leave its orders and the
    buyer keys it claims on the wrong record. Merges share the lock; one waits for none."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock_shared(%s)", [ORDER_IMPORT_LOCK])
        if not cursor.fetchone()[0]:
            raise ValueError(
                _("正在导入订单（导入会把订单归到客户名下），请稍候片刻再合并或撤销合并。")
            )


def _contact_writes_done() -> None:
    """Wait for the syncs' and callbacks' writes under way, and keep new ones waiting
    until this transaction ends (`CONTACTS_LOCK`)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CONTACTS_LOCK])


def _relationships_move(relationships: list[int], to: Customer) -> None:
    """The relationships go to `to`, and so do a running sync's marks of having seen them
    (at its end the sync ends the live relationships it did not see)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE contacts_syncseen s SET customer_id = %(to)s
            FROM contacts_relationship r
            WHERE r.id = ANY(%(moved)s) AND s.customer_id = r.customer_id
              AND s.guide_id = r.guide_id
              AND NOT EXISTS (SELECT FROM contacts_syncseen t WHERE t.run_id = s.run_id
                              AND t.customer_id = %(to)s AND t.guide_id = s.guide_id)
            """,
            {"to": to.pk, "moved": relationships},
        )
    Relationship.objects.filter(pk__in=relationships).update(customer=to)


def customer_merge(*, keep: Customer, absorb: Customer, by=None) -> CustomerMerge:
    """Merge `absorb` into `keep`: identities, orders, relationships and group memberships
    move, and the WeCom contact `absorb` is, when `keep` is none (`WECOM_CONTACT_FIELDS`).

    What moved is recorded, so `customer_merge_undo` puts back exactly that. Two WeCom
    contacts are not merged: WeCom keeps them apart (two WeChat accounts), and each of
    our customers is one contact. A relationship with a guide `keep` already has stays
    where it is (two rows for one guide and person cannot both be kept).
    """
    if keep.pk == absorb.pk:
        raise ValueError(_("不能把客户合并到自己。"))
    with transaction.atomic():
        _no_import_running()
        _contact_writes_done()
        keep, absorb = (
            Customer.objects.select_for_update().get(pk=keep.pk),
            Customer.objects.select_for_update().get(pk=absorb.pk),
        )
        if absorb.merged_into_id or keep.merged_into_id:
            raise ValueError(_("已被合并的客户不能再合并。"))
        if keep.external_userid and absorb.external_userid:
            raise ValueError(
                _(
                    "「%(keep)s」和「%(absorb)s」是企业微信里的两位联系人（两个微信号），"
                    "不能合并为一位客户。"
                )
                % {"keep": keep.label, "absorb": absorb.label}
            )
        kept_guides = Relationship.objects.filter(customer=keep).values("guide_id")
        moved = {
            "identities": list(absorb.identities.values_list("pk", flat=True)),
            "orders": list(absorb.orders.values_list("pk", flat=True)),
            "relationships": list(
                absorb.relationships.exclude(guide_id__in=kept_guides).values_list("pk", flat=True)
            ),
            "group_members": list(absorb.group_memberships.values_list("pk", flat=True)),
            # The last order and identity stored before the merge: what the kept customer
            # gets after it is told apart by id (`_linked_since_undo`).
            "since": {
                "order": Order.objects.aggregate(last=Max("pk"))["last"] or 0,
                "identity": CustomerIdentity.objects.aggregate(last=Max("pk"))["last"] or 0,
                "suggestion": MergeSuggestion.objects.aggregate(last=Max("pk"))["last"] or 0,
            },
            # Pending suggestions for the one merged in are for the one kept now (unless
            # the order has one for the kept customer already: that one is decided).
            "suggestions": list(
                MergeSuggestion.objects.filter(
                    customer=absorb, status=MergeSuggestion.Status.PENDING
                )
                .exclude(order__merge_suggestions__customer=keep)
                .values_list("pk", flat=True)
            ),
            "absorbed": {
                "is_member": absorb.is_member,
                "joined_at": absorb.joined_at.isoformat() if absorb.joined_at else None,
                "external_userid": absorb.external_userid,
            },
            "kept": {
                "is_member": keep.is_member,
                "joined_at": keep.joined_at.isoformat() if keep.joined_at else None,
            },
            # The WeCom contact that moved: absorb's fields, keep's before the merge, and
            # what keep had of WeCom's (what WeCom gives it since is the contact's).
            "contact": {
                "absorbed": {name: getattr(absorb, name) for name in WECOM_CONTACT_FIELDS},
                "kept": {name: getattr(keep, name) for name in WECOM_CONTACT_FIELDS},
                "kept_relationships": list(keep.relationships.values_list("pk", flat=True)),
                "kept_group_members": list(keep.group_memberships.values_list("pk", flat=True)),
            }
            if absorb.external_userid
            else None,
        }
        if moved["contact"]:  # one row holds an external_userid at a time: absorb's first
            Customer.objects.filter(pk=absorb.pk).update(external_userid=None)
            Customer.objects.filter(pk=keep.pk).update(**moved["contact"]["absorbed"])
        CustomerIdentity.objects.filter(pk__in=moved["identities"]).update(customer=keep)
        Order.objects.filter(pk__in=moved["orders"]).update(customer=keep)
        _relationships_move(moved["relationships"], to=keep)
        CustomerGroupMember.objects.filter(pk__in=moved["group_members"]).update(customer=keep)
        MergeSuggestion.objects.filter(pk__in=moved["suggestions"]).update(customer=keep)
        absorb.merged_into = keep
        absorb.is_member = False
        absorb.save(update_fields=["merged_into", "is_member", "updated_at"])
        _membership_refresh(keep)
        merge = CustomerMerge.objects.create(kept=keep, absorbed=absorb, moved=moved, merged_by=by)
        for listener in _merge_listeners:
            listener.merged(merge)
        facts_mark_pending([keep.pk, absorb.pk])
        return merge


def customer_merge_undo(*, merge: CustomerMerge, by=None) -> CustomerMerge:
    """Put back what the merge moved, from the kept customer: rows that went elsewhere
    since stay where they are. Refused while the kept customer is merged into another
    (that merge is undone first: it took along what this one moved). Since the merge:
    what WeCom gave the contact (relationships, groups) goes back with it, and so do
    the orders and buyer keys linked through the identities that go back."""
    with transaction.atomic():
        _no_import_running()
        _contact_writes_done()
        merge = CustomerMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.undone_at:
            raise ValueError(_("这次合并已经撤销过了。"))
        kept = Customer.objects.select_for_update().get(pk=merge.kept_id)
        absorbed = Customer.objects.select_for_update().get(pk=merge.absorbed_id)
        if kept.merged_into_id:
            raise ValueError(
                _("「%(kept)s」后来又合并到了 #%(into)s：请先撤销那次合并，再撤销这一次。")
                % {"kept": kept.label, "into": kept.merged_into_id}
            )
        moved = merge.moved
        contact = moved.get("contact")
        if contact:  # keep had no external_userid: cleared first. The contact goes back as
            # it is now (the sync may have renamed it since), keep as it was.
            now = {name: getattr(kept, name) for name in contact["absorbed"]}
            Customer.objects.filter(pk=kept.pk).update(**contact["kept"])
            Customer.objects.filter(pk=absorbed.pk).update(**now)
        back = {"customer": kept}
        CustomerIdentity.objects.filter(pk__in=moved["identities"], **back).update(
            customer=absorbed
        )
        Order.objects.filter(pk__in=moved["orders"], **back).update(customer=absorbed)
        # The suggestions the merge moved are the absorbed customer's again, decided or
        # not; one confirmed since takes back its order and the keys it added with it.
        returned = MergeSuggestion.objects.filter(pk__in=moved.get("suggestions", []), **back)
        confirmed = list(
            returned.filter(status=MergeSuggestion.Status.CONFIRMED).values_list("order_id", "undo")
        )
        Order.objects.filter(pk__in=[order for order, _ in confirmed], **back).update(
            customer=absorbed
        )
        added = [pk for _, undo in confirmed for pk in undo.get("identities", [])]
        CustomerIdentity.objects.filter(pk__in=added, **back).update(customer=absorbed)
        returned.update(customer=absorbed)
        _linked_since_undo(merge, contact_moved=bool(contact))
        relationships = Relationship.objects.filter(**back)
        members = CustomerGroupMember.objects.filter(**back)
        if contact:  # all WeCom gave keep but what it had, or later merges brought: the contact's
            later = CustomerMerge.objects.filter(kept=kept, undone_at__isnull=True, pk__gt=merge.pk)
            later = [m.moved for m in later]
            relationships = relationships.exclude(
                pk__in=contact.get("kept_relationships", [])
                + [pk for moved_later in later for pk in moved_later["relationships"]]
            )
            members = members.exclude(
                pk__in=contact.get("kept_group_members", [])
                + [pk for moved_later in later for pk in moved_later["group_members"]]
            )
        else:  # keep's own contact: what WeCom gave it stays
            relationships = relationships.filter(pk__in=moved["relationships"])
            members = members.filter(pk__in=moved["group_members"])
        _relationships_move(list(relationships.values_list("pk", flat=True)), to=absorbed)
        members.update(customer=absorbed)
        Customer.objects.filter(pk=absorbed.pk).update(merged_into=None)
        _suggestions_since_refit(merge)
        _membership_refresh(kept)
        _membership_refresh(absorbed)
        merge.undone_at = timezone.now()
        merge.undone_by = by
        merge.save(update_fields=["undone_at", "undone_by"])
        for listener in _merge_listeners:
            listener.undone(merge)
        facts_mark_pending([kept.pk, absorbed.pk])
        return merge


def _suggestions_since_refit(merge: CustomerMerge) -> None:
    """The suggestions for the kept customer made since the merge, still pending, fit on
    what the kept customer had then (the phones of the one merged in, say): each is
    made again as an import would make it now, for the one customer its order's masked
    phone and name fit (the one merged in, say), or dropped when they fit no one or
    several, or when that customer has one for the order already."""
    since = merge.moved["since"].get("suggestion") if merge.moved.get("since") else None
    if since is None:  # a merge recorded before merges kept this
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH since AS (
                SELECT s.id, s.order_id, o.buyer_phone_masked AS masked, o.buyer_name AS name
                FROM contacts_mergesuggestion s JOIN contacts_order o ON o.id = s.order_id
                WHERE s.customer_id = {int(merge.kept_id)} AND s.status = 'pending'
                  AND s.id > {int(since)}
            ), fit AS (
                SELECT s.id, s.order_id,
                       (SELECT CASE WHEN count(DISTINCT c.id) = 1 THEN min(c.id) END
                        FROM {MASKED_FITS.format(masked="s.masked", name="s.name")}) AS customer_id
                FROM since s
            ), made AS (  -- kept only for a customer without one for the order already
                SELECT f.id, f.customer_id, f.customer_id IS NOT NULL AND NOT EXISTS (
                    SELECT FROM contacts_mergesuggestion other
                    WHERE other.order_id = f.order_id AND other.customer_id = f.customer_id
                      AND other.id <> f.id) AS kept
                FROM fit f
            ), dropped AS (
                DELETE FROM contacts_mergesuggestion m USING made
                WHERE m.id = made.id AND NOT made.kept
            )
            UPDATE contacts_mergesuggestion m SET customer_id = made.customer_id
            FROM made WHERE m.id = made.id AND made.kept
            """  # noqa: S608 - fixed SQL fragments and ids; no parameters, so % is itself
        )


# The buyer keys an order `o` carries, as identities (kind, value) match them.
_ORDER_KEY_OF_IDENTITY = """(
       (i.kind = 'phone_hash' AND i.value = o.buyer_phone_hash)
    OR (i.kind = 'unionid' AND i.value = o.buyer_unionid)
    OR (i.kind = 'buyer_id' AND o.buyer_id <> '' AND i.value = o.channel || ':' || o.buyer_id))"""


def _linked_since_undo(merge: CustomerMerge, *, contact_moved: bool) -> None:
    """What the kept customer got since the merge through the one merged in goes back to
    them: orders stored since that carry a buyer key that goes back (the phone of the
    one merged in, say) and none the kept customer had before the merge; the identities
    the kept customer got since that those orders carry; and, when the WeCom contact
    goes back, those it got since that none of its orders carries (what the sync learnt
    of the contact). Repeated while orders move: an order linked through a buyer id that
    an order going back gave the kept customer follows it. One person's orders stay
    together."""
    since = merge.moved.get("since")
    if since is None:  # a merge recorded before merges kept this
        return
    params = {
        "absorbed": merge.absorbed_id,
        "kept": merge.kept_id,
        "order": since["order"],
        "identity": since["identity"],
        "contact": contact_moved,
    }
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"""
                UPDATE contacts_order o SET customer_id = %(absorbed)s
                WHERE o.customer_id = %(kept)s AND o.id > %(order)s
                  AND EXISTS (SELECT FROM contacts_customeridentity i
                              WHERE i.customer_id = %(absorbed)s AND {_ORDER_KEY_OF_IDENTITY})
                  AND NOT EXISTS (SELECT FROM contacts_customeridentity i
                                  WHERE i.customer_id = %(kept)s AND i.id <= %(identity)s
                                    AND {_ORDER_KEY_OF_IDENTITY})
                RETURNING o.id
                """,  # noqa: S608 - a fixed SQL fragment
                params,
            )
            orders = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                f"""
                UPDATE contacts_customeridentity i SET customer_id = %(absorbed)s
                WHERE i.customer_id = %(kept)s AND i.id > %(identity)s
                  AND (EXISTS (SELECT FROM contacts_order o
                               WHERE o.id = ANY(%(orders)s) AND {_ORDER_KEY_OF_IDENTITY})
                       OR %(contact)s AND NOT EXISTS (
                           SELECT FROM contacts_order o
                           WHERE o.customer_id = %(kept)s AND {_ORDER_KEY_OF_IDENTITY}))
                """,  # noqa: S608 - a fixed SQL fragment
                params | {"orders": orders},
            )
            params["contact"] = False  # what the sync learnt goes back once
            if not orders:
                return


class MergeListener(Protocol):
    """What another app does when customers are merged (tagging moves manual tags, sop
    touchpoints and enrolments), in the merge's transaction; `undone` puts back exactly
    what `merged` moved."""

    def merged(self, merge: CustomerMerge) -> None: ...

    def undone(self, merge: CustomerMerge) -> None: ...


_merge_listeners: list[MergeListener] = []


def register_merge_listener(listener: MergeListener) -> None:
    """Apps register in `AppConfig.ready()` (contacts knows no app)."""
    if listener not in _merge_listeners:
        _merge_listeners.append(listener)


def _membership_refresh(customer: Customer) -> None:
    live = customer.relationships.filter(is_active=True)
    first = customer.relationships.order_by("added_at").values_list("added_at", flat=True).first()
    Customer.objects.filter(pk=customer.pk).update(is_member=live.exists(), joined_at=first)


def _locked_suggestions(suggestions: list[MergeSuggestion]) -> list[MergeSuggestion]:
    """The suggestions' orders locked, then the suggestions; each `.order` read under its
    lock (a merge or a guide's binding cannot move it meanwhile). Orders first, as a
    guide's binding takes them before it rejects the order's suggestions: the other
    way round, a binding and a confirmation of one order could wait on each other."""
    pks = [suggestion.pk for suggestion in suggestions]
    order_ids = MergeSuggestion.objects.filter(pk__in=pks).values_list("order_id", flat=True)
    orders = Order.objects.select_for_update().filter(pk__in=list(order_ids)).order_by("pk")
    by_pk = {order.pk: order for order in orders}
    locked = list(
        MergeSuggestion.objects.select_for_update(of=("self",))
        .select_related("customer")
        .filter(pk__in=pks)
        .order_by("pk")
    )
    for suggestion in locked:
        suggestion.order = by_pk[suggestion.order_id]
    return locked


def merge_suggestions_decide(
    *, suggestions: list[MergeSuggestion], confirm: bool, by=None
) -> list[Order]:
    """Confirm (link each order to its suggested customer) or reject merge suggestions:
    all of them or, when one was decided already, none. Confirming one rejects the other
    suggestions for its order. Rejected, an order whose buyer is known by a channel
    buyer id (held back by the import for the suggestion) goes to that buyer's own
    customer, as their later orders will: those orders are returned. Either way what
    changed is kept for `merge_suggestions_undo`."""
    with transaction.atomic():
        locked = _locked_suggestions(suggestions)
        if len(locked) < len(suggestions) or any(
            s.status != MergeSuggestion.Status.PENDING for s in locked
        ):
            raise ValueError(_("这条建议已经处理过了。"))
        if confirm and any(s.customer.merged_into_id for s in locked):
            raise ValueError(_("建议的客户已合并到另一位客户，请到那位客户的页面绑定订单。"))
        if len({s.order_id for s in locked}) < len(locked):
            raise ValueError(_("同一订单只能确认一条建议。"))
        taken = [
            s.order.channel_order_id
            for s in locked
            if confirm and s.order.customer_id not in (None, s.customer_id)
        ]
        if taken:  # bound since (a guide, a later import): not moved silently
            raise ValueError(
                _("订单 %(orders)s 已经属于另一位客户，请到客户页处理。")
                % {"orders": _("、").join(taken)}
            )
        now = timezone.now()
        moved = []
        for suggestion in locked:
            suggestion.decided_by, suggestion.decided_at = by, now
            if confirm:
                suggestion.status = MergeSuggestion.Status.CONFIRMED
                suggestion.undo = _order_bind_undoable(
                    order=suggestion.order,
                    customer=suggestion.customer,
                    by=by,
                    now=now,
                    decided=suggestion,
                )
            else:
                suggestion.status = MergeSuggestion.Status.REJECTED
                suggestion.undo = _rejection(suggestion, by=by, now=now)
                if suggestion.undo.get("to"):
                    moved.append(suggestion.order)
            suggestion.save(update_fields=["status", "decided_by", "decided_at", "undo"])
        return moved


def _rejection(suggestion: MergeSuggestion, *, by, now: datetime) -> dict:
    """Reject one suggestion: an order with a channel buyer id goes to the customer that
    id identifies, or to a new customer named as the buyer (the import's rule for a
    buyer no one else is); one with a masked phone and a name alone identifies no one
    and stays unmatched. Returns what an exact undo needs ("to": where the order went,
    None when it stayed; nothing when the order had a customer already: the
    suggestion was moot)."""
    order = suggestion.order
    if order.customer_id is not None:
        return {}
    if not order.buyer_id:
        return {"to": None}
    identity = (
        CustomerIdentity.objects.filter(
            kind=CustomerIdentity.Kind.BUYER_ID, value=f"{order.channel}:{order.buyer_id}"
        )
        .select_related("customer")
        .first()
    )
    customer = identity.customer if identity else Customer.objects.create(name=order.buyer_name)
    undo = _order_bind_undoable(order=order, customer=customer, by=by, now=now, decided=suggestion)
    return undo | {"to": customer.pk, "created": None if identity else customer.pk}


def _order_bind_undoable(
    *, order: Order, customer: Customer, by, now: datetime, decided: MergeSuggestion | None = None
) -> dict:
    """`order_bind`, rejecting the order's other suggestions still pending (all of them
    when a guide binds the order; but the one `decided`); returns what an exact undo
    needs."""
    before = {"customer": order.customer_id, "reason": order.unmatched_reason}
    added = order_bind(order=order, customer=customer)
    others = MergeSuggestion.objects.filter(order=order, status=MergeSuggestion.Status.PENDING)
    if decided is not None:
        others = others.exclude(pk=decided.pk)
    rejected = list(others.values_list("pk", flat=True))
    others.update(status=MergeSuggestion.Status.REJECTED, decided_by=by, decided_at=now)
    return before | {"identities": added, "rejected": rejected}


def _order_unbind(*, order: Order, customer_id: int, undo: dict, decided_at: datetime) -> None:
    """Undo `_order_bind_undoable`: the order as it was, the identities the binding added
    off the customer, the suggestions it rejected pending again."""
    facts_mark_pending([customer_id, undo["customer"]])
    order.customer_id, order.unmatched_reason = undo["customer"], undo["reason"]
    order.save(update_fields=["customer", "unmatched_reason", "updated_at"])
    CustomerIdentity.objects.filter(pk__in=undo["identities"], customer_id=customer_id).delete()
    MergeSuggestion.objects.filter(pk__in=undo["rejected"], decided_at=decided_at).update(
        status=MergeSuggestion.Status.PENDING, decided_by=None, decided_at=None, undo={}
    )


def merge_suggestions_undo(*, suggestions: list[MergeSuggestion]) -> None:
    """Undo one decision exactly, all the suggestions decided together. Each order is
    as it was (unmatched with its reason, or the customer's already), the identities
    binding added leave the customer, and the suggestions wait for a decision again
    with those the decision rejected for their orders. Refused when an order has moved
    since, for part of a decision, for decisions made before undo was kept, and for a
    rejection that made its buyer's account a customer of its own (a merge of that
    customer into the suggested one is the undo: it is recorded and undoable itself)."""
    decided = (MergeSuggestion.Status.CONFIRMED, MergeSuggestion.Status.REJECTED)
    with transaction.atomic():
        locked = _locked_suggestions(suggestions)
        if (
            not locked
            or len(locked) < len(suggestions)
            or any(s.status not in decided or not s.undo for s in locked)
            or len({s.status for s in locked}) > 1
        ):
            raise ValueError(_("只能撤销已确认或已拒绝的建议。"))
        lead = locked[0]
        together = MergeSuggestion.objects.filter(
            status=lead.status, customer_id=lead.customer_id, decided_at=lead.decided_at
        ).exclude(undo={})
        if set(together.values_list("pk", flat=True)) != {s.pk for s in locked}:
            raise ValueError(_("一次处理的建议要一起撤销。"))
        confirmed = lead.status == MergeSuggestion.Status.CONFIRMED
        # where the decision left each order: the suggested customer, or (rejected) the
        # customer of its buyer's account, or unmatched
        left_at = {s.pk: s.customer_id if confirmed else s.undo["to"] for s in locked}
        created = next((s.undo["created"] for s in locked if s.undo.get("created")), None)
        if created is not None:  # undone, it would leave a customer of no one, or go
            raise ValueError(
                _(
                    "拒绝时为买家账号新建了客户 #%(customer)s，无法撤销；如拒绝错了，"
                    "请在 %(suggested)s 的页面把那位客户并入（合并可以撤销）。"
                )
                % {"customer": created, "suggested": lead.customer.label}
            )
        moved = [s.order.channel_order_id for s in locked if s.order.customer_id != left_at[s.pk]]
        if moved:
            message = (
                _("订单 %(orders)s 已经不在这位客户名下，无法撤销。")
                if confirmed
                else _("订单 %(orders)s 在拒绝之后已归到别处，无法撤销。")
            )
            raise ValueError(message % {"orders": _("、").join(moved)})
        for suggestion in locked:
            if left_at[suggestion.pk] is not None:
                _order_unbind(
                    order=suggestion.order,
                    customer_id=left_at[suggestion.pk],
                    undo=suggestion.undo,
                    decided_at=suggestion.decided_at,
                )
        MergeSuggestion.objects.filter(pk__in=[s.pk for s in locked]).update(
            status=MergeSuggestion.Status.PENDING, decided_by=None, decided_at=None, undo={}
        )


def order_bind(*, order: Order, customer: Customer) -> list[int]:
    """Link an order (and its buyer's exact keys) to a customer: a confirmed suggestion,
    or a guide binding the order number of the customer they are chatting with. Returns
    the ids of the identities this inserted (a key someone has already stays theirs)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        facts_mark_pending([order.customer_id, customer.pk])
        order.customer, order.unmatched_reason = customer, ""
        order.save(update_fields=["customer", "unmatched_reason", "updated_at"])
        keys = [
            (CustomerIdentity.Kind.UNIONID, order.buyer_unionid, ""),
            (CustomerIdentity.Kind.PHONE_HASH, order.buyer_phone_hash, order.buyer_phone_masked),
            (
                CustomerIdentity.Kind.BUYER_ID,
                f"{order.channel}:{order.buyer_id}" if order.buyer_id else "",
                "",
            ),
        ]
        added = []
        with connection.cursor() as cursor:
            for kind, value, display in keys:
                if not value:
                    continue
                # RETURNING gives the row only when this statement inserted it.
                cursor.execute(
                    """INSERT INTO contacts_customeridentity
                           (customer_id, kind, value, display, created_at)
                       VALUES (%s, %s, %s, %s, now())
                       ON CONFLICT (kind, value) DO NOTHING RETURNING id""",
                    [customer.pk, kind, value, display],
                )
                added += [row[0] for row in cursor.fetchall()]
        return added


# A guide's binding that fails says only that it did: whether an order number exists,
# whose it is and its buyer's phone are not the guide's to learn. Failures are limited,
# so that numbers cannot be tried in bulk.
GUIDE_BIND_FAILURES = HourlyLimit("guide-bind-failure", per_hour=20)


def order_bind_by_number(*, guide: Guide, customer: Customer, channel_order_id: str) -> list[Order]:
    """A guide binds an order number to a customer they follow (live): the order, with
    the other sub-orders of its checkout (a Douyin sub-order's number, or the checkout's
    主订单编号, binds them all: one purchase is one buyer's). See `_checkout_bind`.
    An order not found, another customer's, or of another buyer phone: LookupError."""
    if not Relationship.objects.filter(customer=customer, guide=guide, is_active=True).exists():
        raise PermissionError(_("只能绑定到你自己跟进的客户。"))
    if GUIDE_BIND_FAILURES.reached(guide.user):
        raise LimitReached(
            _("一小时内绑定失败已有 %(most)s 次，%(minutes)s 分钟后可以再试；急的话请运营处理。")
            % {
                "most": GUIDE_BIND_FAILURES.per_hour,
                "minutes": GUIDE_BIND_FAILURES.minutes_left(guide.user),
            }
        )
    number = channel_order_id.strip()
    if not number:  # nothing tried: not a failure
        raise LookupError(_("请填写订单号。"))
    try:
        return _checkout_bind(number=number, customer=customer, guide=guide, by=guide.user)
    except (LookupError, ValueError) as error:
        GUIDE_BIND_FAILURES.count(guide.user)
        raise LookupError(
            _("没有能绑定给这位客户的订单 %(order)s：请核对订单号，没错的话请运营处理。")
            % {"order": number}
        ) from error


def order_assign(*, order: Order, customer: Customer, by) -> list[Order]:
    """An operator puts an unmatched order, with the other sub-orders of its checkout, on
    a customer (one with no suggestion, or whose suggestion was rejected). See
    `_checkout_bind`."""
    number = order.parent_order_id or order.channel_order_id
    return _checkout_bind(
        number=number, customer=customer, guide=None, by=by, channel=order.channel
    )


def _checkout_bind(
    *, number: str, customer: Customer, guide: Guide | None, by, channel: str = ""
) -> list[Order]:
    """The checkout's orders go to the customer with their buyer's keys. Refused when an
    order is another customer's, or its buyer phone is not one of the customer's (when
    both are known): the binding would give the customer the buyer's phone, and their
    later orders with it. Each order bound is recorded (`OrderBinding`, one time for
    all) for operators to review and undo. Returns the checkout's orders."""
    customer = Customer.objects.get(pk=customer.pk)
    if customer.merged_into_id:  # a guide both records had may still follow this one
        raise PermissionError(
            _("这位客户已合并到 #%(pk)s，请在合并后的客户名下绑定。")
            % {"pk": customer.merged_into_id}
        )
    with transaction.atomic():
        orders = _checkout_locked(number, channel)
        bound = [order for order in orders if order.customer_id == customer.pk]
        others = [order for order in orders if order.customer_id not in (None, customer.pk)]
        if others and guide is None:  # an operator: whose it is, and what to do
            raise ValueError(
                _("订单 %(order)s 已属于客户 #%(owner)s；如是同一人，请合并两位客户。")
                % {"order": others[0].channel_order_id, "owner": others[0].customer_id}
            )
        if others:
            raise ValueError(
                _("订单 %(order)s 已属于另一位客户，请联系运营处理。")
                % {"order": others[0].channel_order_id}
            )
        unbound = [order for order in orders if order.customer_id is None]
        differs = [order for order in unbound if _phone_differs(order, customer)]
        if differs:
            message = (
                _(
                    "订单 %(order)s 的买家手机号 %(phone)s 与这位客户的手机号不符，"
                    "可能不是同一人，没有归入。"
                )
                if guide is None
                else _(
                    "订单 %(order)s 的买家手机号 %(phone)s 与这位客户的手机号不符，请联系运营处理。"
                )
            )
            order = differs[0]
            raise ValueError(
                message % {"order": order.channel_order_id, "phone": order.buyer_phone_masked}
            )
        now = timezone.now()
        for order in unbound:
            undo = _order_bind_undoable(order=order, customer=customer, by=by, now=now)
            OrderBinding.objects.create(
                order=order, customer=customer, guide=guide, bound_by=by, bound_at=now, undo=undo
            )
        bound += unbound
    return list(Order.objects.filter(pk__in=[order.pk for order in bound]).order_by("pk"))


def _checkout_locked(number: str, channel: str = "") -> list[Order]:
    """The orders a number names (in `channel`, or in whichever has it), locked: the
    order, or all the sub-orders of its checkout when it is one (by a sub-order's number
    or the checkout's own)."""
    named = Order.objects.filter(Q(channel_order_id=number) | Q(parent_order_id=number))
    if channel:
        named = named.filter(channel=channel)
    named = list(named.values_list("channel", "parent_order_id").distinct()[:10])
    if not named:
        raise LookupError(_("找不到订单号 %(order)s。") % {"order": number})
    if len({channel for channel, _parent in named}) > 1:
        raise LookupError(
            _("订单号 %(order)s 在多个渠道都存在，请联系运营处理。") % {"order": number}
        )
    channel = named[0][0]
    parent = next((parent for _channel, parent in named if parent), "")
    checkout = Order.objects.filter(channel=channel)
    checkout = (
        checkout.filter(parent_order_id=parent)
        if parent
        else checkout.filter(channel_order_id=number)
    )
    return list(checkout.select_for_update().order_by("pk"))


def _phone_differs(order: Order, customer: Customer) -> bool:
    """The order's buyer phone (full, or masked 138****5601) is none of the customer's
    phones; False when either side has none."""
    phones = list(
        customer.identities.filter(kind=CustomerIdentity.Kind.PHONE_HASH).values_list(
            "value", "display"
        )
    )
    if not phones:
        return False
    if order.buyer_phone_hash:
        return order.buyer_phone_hash not in {value for value, _ in phones}
    masked = order.buyer_phone_masked
    if not masked:
        return False
    return not any(d[:3] == masked[:3] and d[-4:] == masked[-4:] for _, d in phones)


def order_binding_undo(*, binding: OrderBinding, by) -> None:
    """Undo a guide's binding exactly, with the bindings made with it (the sub-orders of
    one checkout): each order unmatched again with its reason, the identities it added
    off the customer, the suggestions it rejected pending again. Refused once one of
    the orders has moved since."""
    with transaction.atomic():
        together = list(
            OrderBinding.objects.select_for_update()
            .filter(customer_id=binding.customer_id, bound_at=binding.bound_at)
            .filter(guide_id=binding.guide_id)
            .order_by("-pk")
        )
        orders = Order.objects.select_for_update().in_bulk([b.order_id for b in together])
        if any(b.undone_at is not None for b in together):
            raise ValueError(_("这次绑定已经撤销了。"))
        moved = [
            orders[b.order_id].channel_order_id
            for b in together
            if orders[b.order_id].customer_id != b.customer_id
        ]
        if moved:
            raise ValueError(
                _("订单 %(orders)s 已经不在这位客户名下，无法撤销。")
                % {"orders": _("、").join(moved)}
            )
        now = timezone.now()
        for undone in together:  # the last made first: the first added the identities
            _order_unbind(
                order=orders[undone.order_id],
                customer_id=undone.customer_id,
                undo=undone.undo,
                decided_at=undone.bound_at,
            )
            undone.undone_by, undone.undone_at = by, now
            undone.save(update_fields=["undone_by", "undone_at"])


def orders_push(
    *, rows: list[dict], imported_by=None, key: str | None = None, digest: str = ""
) -> OrderImport:
    """Orders pushed through the API, in the generic columns: written as a generic CSV and
    loaded by the same reader and loader as files, so both accept exactly the same rows.
    Error rows (and the rejected rows kept) are renumbered to the line's 1-based
    position in the request."""
    record = OrderImport.objects.create(
        channel="generic",
        files=["api"],
        imported_by=imported_by,
        source="api",
        idempotency_key=key,
        request_digest=digest,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "api.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=GENERIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        orders_import(paths=[path], channel="generic", record=record)
    record.refresh_from_db()
    record.errors = [_error_as_line(error) for error in record.errors]
    for rejected in record.rejected_cells:
        rejected["rows"] = [[row - 1, cells] for row, cells in rejected["rows"]]
    record.save(update_fields=["errors", "rejected_cells"])
    return record


def _error_as_line(error: dict) -> dict:
    """An import error of the request's CSV, its rows (the header is row 1) as 1-based
    lines of the request, in the reason too ("与第 1 行重复")."""
    spec = error.get("reason_spec")
    if spec is None:
        return {**error, "row": error["row"] - 1}
    spec = spec_rows_shifted(spec, -1)
    with translation.override(settings.LANGUAGE_CODE):  # stored as made: in Chinese
        reason = reason_text(spec)
    return {**error, "row": error["row"] - 1, "reason": reason, "reason_spec": spec}


PRODUCT_COLUMNS = ["sku", "name", "category", "material", "style"]


def products_upload(*, upload) -> dict:
    """An uploaded catalogue (small: read now, not on a worker), as `products_import`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(upload.name).name
        with open(path, "wb") as target:
            for chunk in upload.chunks():
                target.write(chunk)
        return products_import(path=path)


def products_import(*, path: Path) -> dict:
    """Upsert the product catalogue from a file (sku,name,category,material,style; CSV in
    UTF-8 or GB18030, or XLSX, read as order files are), then fill the attributes of the
    order lines of the products added or changed that arrived without them. A bad row
    (no sku, a value too long) is reported, the others load; an unreadable file raises
    OrderFileError and changes nothing."""
    rows, errors = {}, []
    limits = {field.name: field.max_length for field in Product._meta.fields if field.max_length}
    with Table(path) as table:
        missing = [column for column in PRODUCT_COLUMNS if column not in table.index]
        if missing:
            raise OrderFileError(
                _("%(file)s：商品文件缺少列：%(columns)s")
                % {"file": table.name, "columns": ", ".join(missing)}
            )
        positions = [table.index[column] for column in PRODUCT_COLUMNS]
        for number, cells, _overflow in table.rows():
            values = tuple(cells[position].replace("\x00", "") for position in positions)
            if not values[0]:
                errors.append({"row": number, "column": "sku", "reason": _("商品编码为空")})
                continue
            too_long = [
                (column, value)
                for column, value in zip(PRODUCT_COLUMNS, values, strict=True)
                if len(value) > limits[column]
            ]
            if too_long:
                column, value = too_long[0]
                reason = _("%(column)s 最多 %(most)s 个字，这里有 %(count)s 个") % {
                    "column": column,
                    "most": limits[column],
                    "count": len(value),
                }
                errors.append({"row": number, "column": column, "reason": reason})
                continue
            rows[values[0]] = values
    with transaction.atomic(), connection.cursor() as cursor:
        changed = []
        if rows:
            changed = execute_values(
                cursor,
                """
                INSERT INTO contacts_product (sku, name, category, material, style, updated_at)
                SELECT v.sku, v.name, v.category, v.material, v.style, now()
                FROM (VALUES %s) AS v(sku, name, category, material, style)
                ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name,
                    category = EXCLUDED.category, material = EXCLUDED.material,
                    style = EXCLUDED.style, updated_at = now()
                WHERE (contacts_product.name, contacts_product.category, contacts_product.material,
                       contacts_product.style)
                      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category, EXCLUDED.material,
                       EXCLUDED.style)
                RETURNING sku
                """,
                list(rows.values()),
                fetch=True,
            )
        # Lines of the other products took their attributes when they were imported;
        # those of the changed ones take the catalogue's where it decides them.
        cursor.execute(
            f"""
            DROP TABLE IF EXISTS filled_order;
            CREATE TEMP TABLE filled_order ON COMMIT DROP AS
            WITH filled AS (
                UPDATE contacts_orderline l
                SET (category, material, style) = ({LINE_ATTRIBUTES})
                FROM contacts_product p
                WHERE p.sku = ANY(%s) AND p.sku = l.sku
                  AND (NOT l.attributes_from_export OR l.category = '' OR l.material = ''
                       OR l.style = '')
                  AND (l.category, l.material, l.style)
                      IS DISTINCT FROM ({LINE_ATTRIBUTES})
                RETURNING l.order_id
            )
            SELECT order_id, count(*) AS lines FROM filled GROUP BY order_id
            """,  # noqa: S608 - fixed SQL
            [[sku for (sku,) in changed]],
        )
        cursor.execute("SELECT coalesce(sum(lines), 0)::int FROM filled_order")
        filled = cursor.fetchone()[0]
        # Their buyers' preferences (category, material, style shares) change with them.
        facts_mark_pending_selected(
            "SELECT DISTINCT o.customer_id FROM filled_order f"
            " JOIN contacts_order o ON o.id = f.order_id WHERE o.customer_id IS NOT NULL",
            [],
        )
    return {
        "products": len(rows),
        "changed": len(changed),
        "lines_filled": filled,
        "errors": errors,
    }
