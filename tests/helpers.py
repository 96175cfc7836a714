import time

import pytest

from scrm.celery import app as celery_app


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    """Poll until predicate() is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


def worker_idle(*, scheduled: bool = True) -> bool:
    """The test worker runs and holds no task, nor has one scheduled for later unless
    `scheduled` is False. A task on its way from the queue to the pool shows in none of
    these: ask twice."""
    inspect = celery_app.control.inspect(timeout=1)
    states = [inspect.active() or {}, inspect.reserved() or {}]
    if scheduled:
        states.append(inspect.scheduled() or {})
    return not any(tasks for state in states for tasks in state.values())


def another_waits_for_a_lock() -> bool:
    """Another session of this test database waits for a lock (the statistics are read
    afresh: within a transaction they would be read once)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid() AND datname = current_database()"
        )
        return bool(cursor.fetchone()[0])


def exported(client, url: str, query: dict | None = None, file_format: str = "xlsx"):
    """Ask for an export as the page's button does, write it as the worker would (here,
    in the test's transaction) and download it: the download's response."""
    from urllib.parse import urlencode

    from django.urls import reverse

    from scrm.exports import export_run
    from scrm.models import Export

    newest = Export.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    asked = {"query": urlencode(query or {}, doseq=True), "format": file_format}
    response = client.post(url, asked)
    assert response.status_code == 302 and response["Location"] == reverse("exports")
    export = Export.objects.get(pk__gt=newest)
    export_run(export_id=export.pk)
    return client.get(reverse("export_download", args=[export.pk]))


def bulk_tagged(client, url: str, data: dict):
    """Ask for a bulk tagging as the page's button does and run it as the worker would
    (here, in the test's transaction): the tagging, as it ended, and the tag's page."""
    from django.urls import reverse

    from tagging.bulk import bulk_tagging_run
    from tagging.models import BulkTagging

    newest = BulkTagging.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    response = client.post(url, data)
    bulk = BulkTagging.objects.get(pk__gt=newest)
    assert response.status_code == 302
    assert response["Location"] == reverse("tag_detail", args=[bulk.tag_id]) + "#bulk"
    bulk_tagging_run(bulk_id=bulk.pk)
    bulk.refresh_from_db()
    return bulk, client.get(response["Location"]).content.decode()
