from celery import shared_task
from django.utils import timezone

from scrm.models import WorkerHeartbeat


@shared_task(name="scrm.tasks.heartbeat")
def heartbeat() -> None:
    """Beat sends this every minute. Safe to run twice: it only moves a timestamp."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=heartbeat.request.hostname or "unknown", defaults={"beat_at": timezone.now()}
    )
