from celery import shared_task
from django.db.models import F
from django.utils import timezone

from scrm.models import WorkerHeartbeat


@shared_task(name="scrm.tasks.heartbeat")
def heartbeat() -> None:
    """Beat sends this every minute. Safe to run twice: it only moves a timestamp."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=heartbeat.request.hostname or "unknown", defaults={"beat_at": timezone.now()}
    )


@shared_task(name="scrm.tasks.handle_callback_event", bind=True, max_retries=5)
def handle_callback_event(self, event_id: int) -> str:
    """Run the registered handlers of one stored callback. Safe twice: the event is
    claimed with a conditional UPDATE, and only a received or failed one is claimed."""
    from scrm.models import CallbackEvent
    from scrm.wecom.events import handlers_for
    from scrm.wecom.gateway import WeComGateway

    claimed = CallbackEvent.objects.filter(
        pk=event_id, status__in=[CallbackEvent.Status.RECEIVED, CallbackEvent.Status.FAILED]
    ).update(status=CallbackEvent.Status.HANDLING, attempts=F("attempts") + 1)
    if not claimed:
        return "already handled or being handled"
    event = CallbackEvent.objects.get(pk=event_id)
    try:
        gateway = WeComGateway.from_settings()
        for handler in handlers_for(event.event, event.change_type):
            handler(event=event.payload, gateway=gateway)
    except Exception as error:
        CallbackEvent.objects.filter(pk=event_id).update(
            status=CallbackEvent.Status.FAILED, error=f"{type(error).__name__}: {error}"
        )
        raise self.retry(exc=error, countdown=2**event.attempts) from error
    CallbackEvent.objects.filter(pk=event_id).update(
        status=CallbackEvent.Status.HANDLED, handled_at=timezone.now(), error=""
    )
    return "handled"


@shared_task(name="scrm.tasks.handle_fast_event", acks_late=True)
def handle_fast_event(event_id: int) -> int:
    """The event's fast handlers (a welcome message within WeCom's 20 s), apart from the
    ordered ones. Safe twice: each fast handler records what it did, keyed by the event's
    own ids (a welcome code is sent once)."""
    from scrm.models import CallbackEvent
    from scrm.wecom.events import fast_handlers_for
    from scrm.wecom.gateway import WeComGateway

    event = CallbackEvent.objects.get(pk=event_id)
    handlers = fast_handlers_for(event.event, event.change_type)
    gateway = WeComGateway.from_settings()
    for handler in handlers:
        handler(event=event.payload, received_at=event.received_at, gateway=gateway)
    return len(handlers)


@shared_task(name="scrm.tasks.run_export", acks_late=True)
def run_export(export_id: int) -> dict:
    """Write one export (`scrm.exports.export_run`: safe twice). On the analytics queue."""
    from scrm.exports import export_run

    export = export_run(export_id=export_id)
    if export is None:
        return {"skipped": "running elsewhere"}
    return {"status": export.status, "rows": export.rows}


@shared_task(name="scrm.tasks.forget_exports")
def forget_exports() -> dict:
    """Hourly: exports asked for more than a week ago, files and all."""
    from scrm.exports import exports_forget

    return {"deleted": exports_forget()}
