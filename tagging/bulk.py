"""A manual tag added to every customer a list's filters select, by a worker in batches,
and undone the same way (docs/BULK_TAGGING.md).

A page asks for one (`bulk_tagging_request`) with its query string; the worker
chooses the customers with the page's own filters when it starts and tags them a
batch at a time, each batch one transaction with its progress (`bulk_tagging_run`).
Every tag it adds is dated by its start, which is how its undo finds them.
"""

import logging

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Now
from django.http import Http404, QueryDict
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from contacts.listing import console_customers
from tagging import selectors
from tagging.models import BulkTagging, CustomerTag, Tag
from tagging.services import customer_tags_set, manual_tag_check

logger = logging.getLogger(__name__)

BATCH = 5000  # customers tagged in one transaction, between two updates of the progress
# pg_try_advisory_lock(BULK_TAGGING_LOCK, bulk tagging id): held while a worker runs it.
BULK_TAGGING_LOCK = 7_301_005


def bulk_tagging_request(*, user, tag: Tag, source: str, query: QueryDict) -> BulkTagging:
    """Queue adding `tag` to every customer the list's filters (`query`) select.
    ValueError (in the reader's words) for a tag that is not changed by hand, filters
    that are not valid or that select nobody; Http404 for a guide that is not there."""
    manual_tag_check(tag)
    query = query.copy()
    query.pop("after", None)  # the page's place in the list: the tagging has all of it
    bulk = BulkTagging(tag=tag, source=source, query=query.urlencode(), requested_by=user)
    if not _customers(bulk).exists():
        raise ValueError(_("没有符合筛选条件的客户。"))
    return _queued(bulk)


def bulk_tagging_undo(*, user, bulk: BulkTagging) -> BulkTagging:
    """Queue removing the tag from the customers `bulk` added it to who still carry that
    very addition. ValueError (in the reader's words) when it cannot be undone."""
    with transaction.atomic():
        bulk = BulkTagging.objects.select_for_update().select_related("tag__group").get(pk=bulk.pk)
        if bulk.source == BulkTagging.Source.UNDO:  # the reasons `BulkTagging.undoable` sums up
            raise ValueError(_("撤销操作不能再撤销；需要时请重新加标签。"))
        if bulk.is_active:
            raise ValueError(_("这次批量加标签还没有结束，结束后才能撤销。"))
        if BulkTagging.objects.filter(undoes=bulk).exists():
            raise ValueError(_("这次批量加标签已经撤销过了。"))
        if bulk.started_at is None:  # failed before it began: it added nothing
            raise ValueError(_("这次批量加标签没有加上任何标签，无需撤销。"))
        manual_tag_check(bulk.tag)
        return _queued(
            BulkTagging(
                tag=bulk.tag, source=BulkTagging.Source.UNDO, undoes=bulk, requested_by=user
            )
        )


def _queued(bulk: BulkTagging) -> BulkTagging:
    from tagging.tasks import run_bulk_tagging

    bulk.language = translation.get_language() or settings.LANGUAGE_CODE
    bulk.save()
    transaction.on_commit(lambda: run_bulk_tagging.delay(bulk.pk))
    return bulk


def bulk_tagging_run(*, bulk_id: int) -> BulkTagging | None:
    """Run one bulk tagging. Safe twice: it runs while it holds the tagging's lock, only
    a queued one or a running one nobody holds (its worker was killed: it is delivered
    again and goes through the customers again). None when another worker has it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [BULK_TAGGING_LOCK, bulk_id])
        if not cursor.fetchone()[0]:
            return None
    try:
        started = BulkTagging.objects.filter(
            pk=bulk_id, status__in=[BulkTagging.Status.QUEUED, BulkTagging.Status.RUNNING]
        ).update(
            status=BulkTagging.Status.RUNNING,
            # kept on a second delivery: the date of the tags it added already
            started_at=Coalesce(F("started_at"), Now()),
            done=0,
        )
        bulk = (
            BulkTagging.objects.select_related("tag__group", "undoes", "requested_by")
            .filter(pk=bulk_id)
            .first()
        )
        if started and bulk is not None:
            with translation.override(bulk.language):
                _run(bulk)
        return bulk
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [BULK_TAGGING_LOCK, bulk_id])


def _customers(bulk: BulkTagging):
    """The ids of the customers the tagging goes through, chosen as its page does.
    ValueError for list filters no longer valid; Http404 for a guide not there."""
    query = QueryDict(bulk.query)
    if bulk.source == BulkTagging.Source.UNDO:
        added = CustomerTag.objects.filter(tag=bulk.tag, added_at=bulk.undoes.started_at)
        return added.values_list("customer_id", flat=True)
    if bulk.source == BulkTagging.Source.CUSTOMERS:
        customers, form = console_customers(query)
        if form.errors:  # ignoring the filter would tag the whole list
            raise ValueError(
                _("筛选条件已失效（例如其中的标签已删除），未加任何标签。请回到客户列表重新筛选。")
            )
    else:
        customers = selectors.tag_customers(
            tag=bulk.tag, filters=selectors.tag_page_filter(query, bulk.tag)
        )
    return customers.values_list("pk", flat=True)


def _run(bulk: BulkTagging) -> None:
    add = bulk.source != BulkTagging.Source.UNDO
    try:
        ids = _customers(bulk).order_by()
        BulkTagging.objects.filter(pk=bulk.pk).update(total=ids.count())
        batch: list[int] = []
        for customer_id in ids.iterator(chunk_size=BATCH):
            batch.append(customer_id)
            if len(batch) == BATCH:
                _batch(bulk, batch, add)
                batch = []
        if batch:
            _batch(bulk, batch, add)
    except Http404:
        _fail(bulk, _("筛选条件中的导购已删除，未加任何标签。请回到标签页重新筛选。"))
        return
    except ValueError as refused:  # filters no longer valid, or the tag not manual any more
        _fail(bulk, str(refused))
        return
    except SoftTimeLimitExceeded:
        minutes = settings.CELERY_TASK_SOFT_TIME_LIMIT // 60
        _fail(
            bulk,
            _("超过 %(minutes)s 分钟仍未完成，已停止；已加上的标签保留，可撤销。")
            % {"minutes": minutes},
        )
        return
    except Exception:
        logger.exception("bulk tagging %s failed", bulk.pk)
        _fail(bulk, _("批量加标签时出错，已加上的标签保留。请稍后重试；仍然失败请联系管理员。"))
        return
    BulkTagging.objects.filter(pk=bulk.pk).update(
        status=BulkTagging.Status.SUCCEEDED, total=F("done"), finished_at=timezone.now()
    )


def _batch(bulk: BulkTagging, customer_ids: list[int], add: bool) -> None:
    """One batch and its progress, in one transaction."""
    with transaction.atomic():
        changed = customer_tags_set(
            tag=bulk.tag,
            customer_ids=customer_ids,
            add=add,
            by=bulk.requested_by,
            at=bulk.started_at,
        )
        BulkTagging.objects.filter(pk=bulk.pk).update(
            done=F("done") + len(customer_ids), changed=F("changed") + changed
        )


def _fail(bulk: BulkTagging, reason: str) -> None:
    BulkTagging.objects.filter(pk=bulk.pk).update(
        status=BulkTagging.Status.FAILED, failure=reason, finished_at=timezone.now()
    )
