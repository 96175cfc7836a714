"""Pushing rule and system tags to WeCom, so guides see them on the customer in WeCom.

Our tags live in one corp tag group of their own (`PUSH_GROUP_NAME`, created
when missing); each pushed tag gets a corp tag named「组·标签」. For every
customer queued in `TagPushPending` (the evaluation queues those whose pushed
tags changed) and each live relationship, `mark_tag` adds the tags the
customer should carry and removes those of our group it no longer should:
only the difference, never the whole set, so tags guides set by hand in WeCom
survive. The relationship's `wecom_tag_ids` is updated through contacts once
WeCom accepted the call, and the customer leaves the queue only when all its
relationships are done: a push killed half way resumes, and re-sending a
relationship's difference is harmless (it is empty by then).

Rate limits are the gateway's (token bucket in Redis, backoff on 45009).
A relationship WeCom refuses for good (84061: no such relation any more) is
recorded on the queue row and retried at most `MAX_ATTEMPTS` times.
"""

import logging
import time
from dataclasses import dataclass

from django.db import connection, transaction

from contacts.services import corp_tags_store, relationship_tags_update
from scrm.wecom.gateway import WeComError
from tagging.evaluation import PUSH_GROUP_NAME
from tagging.models import Tag, TagPushPending

logger = logging.getLogger(__name__)

PUSH_BATCH = 200  # customers per claim; each costs one mark_tag per live relationship
MAX_ATTEMPTS = 3
NAME_LIMIT = 30  # WeCom: corp tag names ≤ 30 characters
ADD_BATCH = 100  # tags per add_corp_tag call


@dataclass
class PushResult:
    customers: int = 0
    calls: int = 0
    failed: int = 0
    tags_created: int = 0
    more: bool = False  # stopped at its time limit with customers still queued


def wecom_name(tag: Tag) -> str:
    return f"{tag.group.name}·{tag.name}"[:NAME_LIMIT]


def corp_tags_ensure(*, gateway) -> int:
    """Give every pushed tag a corp tag in our group (add_corp_tag creates the group
    with its first tags); returns how many were created."""
    missing = list(
        Tag.objects.filter(source__in=[Tag.Source.RULE, Tag.Source.SYSTEM], wecom_tag_id="")
        .select_related("group")
        .order_by("pk")
    )
    if not missing:
        return 0
    existing = {}
    for group in gateway.corp_tag_list():
        if group["group_name"] == PUSH_GROUP_NAME:
            existing = {tag["name"]: tag["id"] for tag in group.get("tag", [])}
    created = 0
    for start in range(0, len(missing), ADD_BATCH):
        batch = [tag for tag in missing[start : start + ADD_BATCH]]
        wanted = [wecom_name(tag) for tag in batch if wecom_name(tag) not in existing]
        if wanted:
            result = gateway.corp_tag_add(group_name=PUSH_GROUP_NAME, names=wanted)
            for tag in result.get("tag", []):
                existing[tag["name"]] = tag["id"]
            created += len(wanted)
        for tag in batch:
            tag.wecom_tag_id = existing.get(wecom_name(tag), "")
        Tag.objects.bulk_update(batch, ["wecom_tag_id"])
    # The API raises no callback for our own changes: mirror the library now.
    corp_tags_store(groups=gateway.corp_tag_list())
    return created


def push_pending(*, gateway, batch: int = PUSH_BATCH, seconds: float | None = None) -> PushResult:
    """Push the queued customers' changed tags, a batch at a time, until the queue is
    empty (or holds only customers that failed MAX_ATTEMPTS times), or, given
    `seconds`, until the batch that passes that much time (`more` tells)."""
    until = None if seconds is None else time.monotonic() + seconds
    result = PushResult(tags_created=corp_tags_ensure(gateway=gateway))
    ours = dict(
        Tag.objects.filter(source__in=[Tag.Source.RULE, Tag.Source.SYSTEM])
        .exclude(wecom_tag_id="")
        .values_list("pk", "wecom_tag_id")
    )
    ours_ids = set(ours.values())
    while True:
        with transaction.atomic():
            claimed = list(
                TagPushPending.objects.select_for_update(skip_locked=True)
                .filter(attempts__lt=MAX_ATTEMPTS)
                .order_by("customer_id")[:batch]
            )
            if not claimed:
                return result
            for row in claimed:
                done = _push_customer(row.customer_id, ours, ours_ids, gateway, result)
                if done is None:
                    row.delete()
                else:
                    row.attempts += 1
                    row.last_error = done[:300]
                    row.save(update_fields=["attempts", "last_error"])
                    result.failed += 1
                result.customers += 1
        if until is not None and time.monotonic() >= until:
            result.more = TagPushPending.objects.filter(attempts__lt=MAX_ATTEMPTS).exists()
            return result


def _push_customer(customer_id: int, ours: dict, ours_ids: set, gateway, result) -> str | None:
    """mark_tag on each live relationship of one customer; the error text if one failed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT r.id, g.wecom_userid, c.external_userid, r.wecom_tag_ids
            FROM contacts_relationship r
            JOIN contacts_guide g ON g.id = r.guide_id
            JOIN contacts_customer c ON c.id = r.customer_id
            WHERE r.customer_id = %s AND r.is_active AND c.external_userid IS NOT NULL
            ORDER BY r.id
            """,
            [customer_id],
        )
        relationships = cursor.fetchall()
        cursor.execute(
            "SELECT tag_id FROM tagging_customertag WHERE customer_id = %s", [customer_id]
        )
        desired = {ours[tag_id] for (tag_id,) in cursor.fetchall() if tag_id in ours}
    error = None
    for relationship_id, userid, external_userid, current in relationships:
        present = set(current) & ours_ids
        add, remove = sorted(desired - present), sorted(present - desired)
        if not add and not remove:
            continue
        try:
            gateway.mark_tag(userid=userid, external_userid=external_userid, add=add, remove=remove)
        except WeComError as failure:
            logger.warning("mark_tag %s/%s failed: %s", userid, external_userid, failure)
            error = f"{userid}: {failure.errcode} {failure.errmsg}"
            continue
        result.calls += 1
        relationship_tags_update(relationship_id=relationship_id, add=add, remove=remove)
    return error
