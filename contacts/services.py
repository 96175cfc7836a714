"""Operations on contacts that write several rows or call WeCom."""

from django.db import transaction

from contacts.models import SyncRun
from contacts.wecom_sync import WeComFullSync


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
