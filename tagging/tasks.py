from celery import shared_task

from tagging import services


@shared_task(name="tagging.tasks.retag_pending", acks_late=True)
def retag_pending() -> dict:
    """Incremental retag of queued customers. Safe twice: batches are claimed in the
    transaction that evaluates them, and evaluating unchanged customers writes nothing."""
    return services.retag_pending().as_dict()


@shared_task(name="tagging.tasks.retag_full_task", acks_late=True)
def retag_full_task() -> dict:
    """Every rule over every customer (a rule changed, or nightly). Safe twice: a second
    run finds nothing to change."""
    return services.retag_full().as_dict()


@shared_task(name="tagging.tasks.retag_nightly")
def retag_nightly() -> dict:
    """Nightly: refresh every customer's facts, then a full retag (time moves lifecycle
    and recency even when no data changed)."""
    from contacts.facts import facts_refresh

    facts_refresh()
    return services.retag_full().as_dict()
