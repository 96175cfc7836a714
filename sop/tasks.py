from datetime import datetime

from celery import shared_task
from django.utils import timezone

from scrm.wecom.gateway import WeComGateway
from sop import scheduling, services, triggers


@shared_task(name="sop.tasks.dispatch_due", acks_late=True)
def dispatch_due() -> dict:
    """Beat, every minute: due touchpoints become tasks. Safe twice and in parallel:
    rows are claimed FOR UPDATE SKIP LOCKED and change state in the claiming transaction."""
    return scheduling.dispatch(now=timezone.now()).as_dict()


@shared_task(name="sop.tasks.enroll_pending_orders", acks_late=True)
def enroll_pending_orders() -> int:
    """Order triggers for customers whose facts changed. Safe twice: enrolments are
    keyed by (plan, customer, order)."""
    return services.enroll_pending()


@shared_task(name="sop.tasks.enroll_tags", acks_late=True)
def enroll_tags() -> int:
    """Beat, every minute: tag-added triggers. Safe twice: keyed by the tagging event."""
    return triggers.tags_added()


@shared_task(name="sop.tasks.enroll_daily", acks_late=True)
def enroll_daily(day: str | None = None) -> int:
    """Beat, each morning: date-based triggers. Safe twice: keyed by the date."""
    now = datetime.fromisoformat(day) if day else timezone.now()
    return triggers.daily(now=now)


@shared_task(name="sop.tasks.send_automatic", acks_late=True)
def send_automatic(touchpoint_ids: list[int]) -> dict:
    """Automatic steps through WeCom. Safe twice: a touchpoint is claimed queued → sending
    before the call, so a second run never sends it again."""
    return services.automatic_send(
        touchpoint_ids=touchpoint_ids, gateway=WeComGateway.from_settings()
    )


@shared_task(name="sop.tasks.fetch_automatic_results")
def fetch_automatic_results() -> int:
    """Beat, every five minutes: results of automatic sends. Safe twice: read-only calls,
    and a confirmed touchpoint is not confirmed again."""
    return services.automatic_results(gateway=WeComGateway.from_settings())


@shared_task(name="sop.tasks.send_reminders")
def send_reminders() -> dict:
    """Beat, every five minutes: morning lists, overdue reminders, escalations. Safe twice:
    what was sent is recorded and not sent again within its interval."""
    result = services.reminders_send(gateway=WeComGateway.for_app())
    return {"morning": result.morning, "overdue": result.overdue, "escalated": result.escalated}
