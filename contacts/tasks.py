from celery import shared_task

from contacts import services
from contacts.models import SyncRun
from contacts.wecom_sync import SyncAlreadyRunning


@shared_task(name="contacts.tasks.sync_wecom", acks_late=True)
def sync_wecom(run_id: int) -> dict:
    """Run or resume one sync run. Safe twice: it resumes from the saved cursor,
    and a second copy running at the same time stops at the advisory lock."""
    try:
        run = services.sync_run_execute(run_id=run_id)
    except SyncAlreadyRunning:
        return {"skipped": "another sync is running"}
    return {"status": run.status, "counts": run.counts}


@shared_task(name="contacts.tasks.reconcile_wecom")
def reconcile_wecom() -> dict:
    """Nightly: a full sync that repairs drift from missed callbacks and reports it."""
    run = services.sync_run_start(kind=SyncRun.Kind.RECONCILE, triggered_by="beat")
    return sync_wecom(run.pk)


# pg_try_advisory_lock(UPLOAD_LOCK, import id): held while a worker runs an upload.
UPLOAD_LOCK = 7_301_003


@shared_task(name="contacts.tasks.import_orders_file")
def import_orders_file(import_id: int) -> dict:
    """Load an uploaded export. Safe twice: it runs while it holds the upload's lock, only
    a queued upload or a running one nobody holds (its worker was killed: redelivered,
    it runs again; the upsert makes a second load change nothing)."""
    from django.db import connection

    from contacts.models import OrderImport

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [UPLOAD_LOCK, import_id])
        if not cursor.fetchone()[0]:
            return {"skipped": "running elsewhere"}
    try:
        started = OrderImport.objects.filter(
            pk=import_id, status__in=[OrderImport.Status.QUEUED, OrderImport.Status.RUNNING]
        ).update(status=OrderImport.Status.RUNNING)
        record = OrderImport.objects.get(pk=import_id)
        if not started:
            return {"skipped": record.status}
        services.order_upload_process(record=record)
        record.refresh_from_db()
        return {"status": record.status, "inserted": record.inserted, "rejected": record.rejected}
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [UPLOAD_LOCK, import_id])


@shared_task(name="contacts.tasks.forget_rejected_rows")
def forget_rejected_rows() -> dict:
    """Hourly: the rejected rows of imports older than a week (they hold full phones)."""
    return {"cleared": services.order_imports_forget_rejected_cells()}


@shared_task(name="contacts.tasks.refresh_pending_facts", acks_late=True)
def refresh_pending_facts() -> dict:
    """Refresh the facts of customers marked pending. Safe twice: each batch is claimed in
    the transaction that refreshes it, and a refresh of unchanged data writes nothing."""
    from contacts.facts import facts_refresh_pending

    return {"customers": facts_refresh_pending()}
