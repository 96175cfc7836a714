from dataclasses import asdict

from celery import shared_task
from django.core.cache import cache

from scrm.wecom.gateway import WeComGateway
from tagging import services
from tagging.models import TagPushPending
from tagging.push import MAX_ATTEMPTS, push_pending


@shared_task(name="tagging.tasks.retag_pending", acks_late=True)
def retag_pending() -> dict:
    """Incremental retag of queued customers. Safe twice: batches are claimed in the
    transaction that evaluates them, and evaluating unchanged customers writes nothing."""
    return services.retag_pending().as_dict()


@shared_task(name="tagging.tasks.retag_full_task", acks_late=True)
def retag_full_task() -> dict:
    """Every rule over every customer (a rule changed, or nightly). Safe twice: a second
    run finds nothing to change."""
    cache.delete(services.FULL_SCHEDULED)
    return services.retag_full().as_dict()


@shared_task(name="tagging.tasks.retag_nightly")
def retag_nightly() -> dict:
    """Nightly: refresh every customer's facts, then a full retag (time moves lifecycle
    and recency even when no data changed)."""
    from contacts.facts import facts_refresh

    facts_refresh()
    return services.retag_full().as_dict()


# A push of every customer's tags takes minutes at WeCom's rate limits: it goes on in
# slices, each queued again after the last, so that work waiting for the same workers
# (an operator's order upload) starts in between.
PUSH_SLICE_SECONDS = 20


@shared_task(name="tagging.tasks.push_tags", acks_late=True)
def push_tags() -> dict:
    """Push changed rule and system tags to WeCom for PUSH_SLICE_SECONDS, then queue the
    rest (`rest` is that task's id). One chain of slices at a time: while it goes on the
    push stays scheduled, so a retag meanwhile only queues its customers for it; the last
    slice schedules a push again when some were queued after its last claim. Safe twice:
    each customer leaves the queue once pushed, and a repeated mark_tag sends an empty
    difference (skipped)."""
    result = push_pending(gateway=WeComGateway.from_settings(), seconds=PUSH_SLICE_SECONDS)
    if result.more:
        timeout = services.DEBOUNCE_SECONDS + 60 + PUSH_SLICE_SECONDS
        cache.set(services.PUSH_SCHEDULED, 1, timeout=timeout)
        return asdict(result) | {"rest": push_tags.delay().id}
    cache.delete(services.PUSH_SCHEDULED)
    if TagPushPending.objects.filter(attempts__lt=MAX_ATTEMPTS).exists():
        services.schedule_push()
    return asdict(result) | {"rest": None}


@shared_task(name="tagging.tasks.run_bulk_tagging", acks_late=True)
def run_bulk_tagging(bulk_id: int) -> dict:
    """One bulk tagging (`tagging.bulk.bulk_tagging_run`: safe twice)."""
    from tagging.bulk import bulk_tagging_run

    bulk = bulk_tagging_run(bulk_id=bulk_id)
    if bulk is None:
        return {"skipped": "running elsewhere"}
    return {"status": bulk.status, "done": bulk.done}
