"""Exports written by a worker (docs/EXPORTS.md): the real worker end to end, whose
exports are whose, Excel's sheet limit, failures, the week's retention, a second
delivery, and the requester's language. What each list exports is tested with its
list (tests/contacts/test_customer_export.py, tests/tagging/test_pages.py)."""

import io
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.urls import reverse
from django.utils import timezone

from contacts.models import Customer
from scrm import exports
from scrm.celery import route_task
from scrm.exports import Table, export_run
from scrm.models import Export
from tagging.models import Tag, TagGroup
from tests.helpers import exported, wait_for

pytestmark = pytest.mark.django_db


def _ask(client, query: str = "", file_format: str = "xlsx") -> Export:
    newest = Export.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    response = client.post(reverse("customer_export"), {"query": query, "format": file_format})
    assert response.status_code == 302 and response["Location"] == reverse("exports")
    return Export.objects.get(pk__gt=newest)


def _sheets(response) -> dict[str, list[tuple]]:
    body = b"".join(response.streaming_content)
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    return {sheet.title: list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets}


@pytest.mark.django_db(transaction=True)
def test_the_worker_writes_a_large_export_and_reports_its_progress(
    celery_worker, client_for, operator
):
    """More rows than one progress step: the status counts them; the file has each once."""
    count = exports.PROGRESS_ROWS + 500
    Customer.objects.bulk_create(
        Customer(name=f"客户{n:05d}", joined_at=timezone.now() - timedelta(minutes=n))
        for n in range(count)
    )
    client = client_for(operator)
    export = _ask(client, query="sort=name")
    status_url = reverse("export_status", args=[export.pk])
    state = wait_for(
        lambda: (reply := client.get(status_url).json())["status"] == "succeeded" and reply,
        timeout=60,
    )
    assert (state["rows"], state["total"]) == (count, count)
    sheets = _sheets(client.get(reverse("export_download", args=[export.pk])))
    assert list(sheets) == ["客户"]
    names = [row[1] for row in sheets["客户"][1:]]
    assert names == sorted(Customer.objects.values_list("name", flat=True))  # sorted by name
    listing = client.get(reverse("exports")).content.decode()
    assert reverse("export_download", args=[export.pk]) in listing
    assert "data-status-url" not in listing  # nothing left to follow


def test_an_export_is_its_requesters_alone(client_for, operator, manager, guide_user):
    Customer.objects.create(name="林一")
    mine = client_for(operator)
    export = _ask(mine)
    export_run(export_id=export.pk)
    assert mine.get(reverse("export_download", args=[export.pk])).status_code == 200
    theirs = client_for(manager)
    assert reverse("export_download", args=[export.pk]) not in (
        theirs.get(reverse("exports")).content.decode()
    )
    for name in ("export_status", "export_download"):
        assert theirs.get(reverse(name, args=[export.pk])).status_code == 404
    guide = client_for(guide_user)
    assert guide.get(reverse("exports")).status_code == 403
    assert guide.get(reverse("export_download", args=[export.pk])).status_code == 403


def test_past_an_excel_sheets_rows_the_rows_go_on_in_the_next_sheet(tmp_path):
    rows = [[f"客户{n}", n] for n in range(7)]
    table = Table(sheet="客户", header=["姓名", "编号"], rows=iter(rows), count=len)
    progress = []
    with open(tmp_path / "x.xlsx", "w+b") as spool:
        written = exports._write_xlsx(table, spool, progress.append, sheet_rows=3)
    book = openpyxl.load_workbook(tmp_path / "x.xlsx", read_only=True)
    sheets = {sheet.title: list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets}
    assert list(sheets) == ["客户", "客户 (2)", "客户 (3)"]
    assert all(sheet[0] == ("姓名", "编号") for sheet in sheets.values())
    assert [list(row) for sheet in sheets.values() for row in sheet[1:]] == rows
    assert written == 7 and progress == list(range(1, 8))


def test_an_export_of_a_tag_deleted_before_it_ran_fails_with_the_reason(client_for, operator):
    group = TagGroup.objects.create(name="价值")
    tag = Tag.objects.create(group=group, name="高价值", source=Tag.Source.MANUAL)
    client = client_for(operator)
    response = client.post(reverse("tag_export", args=[tag.pk]), {"query": "", "format": "csv"})
    assert response.status_code == 302
    export = Export.objects.get()
    tag.delete()
    export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED and not export.file
    assert "已不存在" in export.failure
    assert client.get(reverse("export_download", args=[export.pk])).status_code == 404
    assert export.failure in client.get(reverse("exports")).content.decode()


def test_exports_are_kept_a_week(client_for, operator):
    Customer.objects.create(name="林一")
    client = client_for(operator)
    old, new = _ask(client), _ask(client)
    for export in (old, new):
        export_run(export_id=export.pk)
    old.refresh_from_db()
    path = old.file.path
    Export.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=7, hours=1))
    # Past its week, the download stops on the dot, before the hourly clean-up runs.
    assert client.get(reverse("export_download", args=[old.pk])).status_code == 404
    assert exports.exports_forget() == 1
    assert not Export.objects.filter(pk=old.pk).exists()
    assert not Path(path).exists()
    assert client.get(reverse("export_download", args=[new.pk])).status_code == 200


def test_a_second_delivery_writes_nothing_twice(client_for, operator):
    Customer.objects.create(name="林一")
    export = _ask(client_for(operator))
    first = export_run(export_id=export.pk)
    again = export_run(export_id=export.pk)
    assert first.status == again.status == Export.Status.SUCCEEDED
    assert again.file.name == first.file.name and again.finished_at == first.finished_at


def test_a_run_killed_midway_is_started_over(client_for, operator):
    Customer.objects.create(name="林一")
    export = _ask(client_for(operator))
    Export.objects.filter(pk=export.pk).update(status=Export.Status.RUNNING, rows=1234)
    done = export_run(export_id=export.pk)
    assert (done.status, done.rows) == (Export.Status.SUCCEEDED, 1)


def test_the_header_is_in_the_language_the_page_was_in(client_for, operator):
    Customer.objects.create(name="林一")
    client = client_for(operator)
    response = client.post(
        reverse("customer_export"),
        {"query": "", "format": "xlsx"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 302
    export = Export.objects.get()
    export_run(export_id=export.pk)
    sheets = _sheets(client.get(reverse("export_download", args=[export.pk])))
    (rows,) = sheets.values()
    assert rows[0][:3] == ("Customer ID", "Name", "Phone") and rows[1][1] == "林一"


def test_exports_run_on_the_heavy_analytics_queue():
    assert route_task("scrm.tasks.run_export", (), {}, {}) == {"queue": "analytics"}
    assert route_task("scrm.tasks.forget_exports", (), {}, {}) == {"queue": "default"}


def test_the_helper_downloads_what_was_asked_for(client_for, operator):
    """tests.helpers.exported, which the lists' export tests use, goes the pages' way."""
    Customer.objects.create(name="林一")
    response = exported(client_for(operator), reverse("customer_export"), file_format="csv")
    assert response["Content-Disposition"].startswith('attachment; filename="customers-')
    assert "林一" in b"".join(response.streaming_content).decode("utf-8-sig")


def _rows_then(error: BaseException):
    yield ["林一"]
    raise error


def _stopped_source(query, object_id):
    return Table("x", ["姓名"], _rows_then(SoftTimeLimitExceeded()), count=lambda: 2)


def _broken_source(query, object_id):
    return Table("x", ["姓名"], _rows_then(ValueError("a bug of ours")), count=lambda: 2)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("_stopped_source", "分钟仍未写完，已停止，未生成文件"),
        ("_broken_source", "导出时出错，未生成文件"),
    ],
)
def test_an_export_stopped_midway_publishes_no_file_and_says_why(
    client_for, operator, monkeypatch, caplog, source, reason
):
    monkeypatch.setitem(exports._sources, Export.Kind.CUSTOMERS, globals()[source])
    client = client_for(operator)
    export = _ask(client)
    export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED and not export.file and export.size == 0
    assert reason in export.failure
    assert client.get(reverse("export_download", args=[export.pk])).status_code == 404
    assert ("a bug of ours" in caplog.text) == (source == "_broken_source")  # ours to fix


def test_an_export_that_will_never_finish_is_failed_and_a_deleted_users_files_go(
    client_for, operator, manager
):
    Customer.objects.create(name="林一")
    stuck = _ask(client_for(operator))  # its worker was killed past the time limit
    Export.objects.filter(pk=stuck.pk).update(
        status=Export.Status.RUNNING,
        created_at=timezone.now() - exports.STALE_AFTER - timedelta(minutes=1),
    )
    exports.exports_forget()
    stuck.refresh_from_db()
    assert stuck.status == Export.Status.FAILED and "导出被中断" in stuck.failure
    theirs = _ask(client_for(manager))
    export_run(export_id=theirs.pk)
    theirs.refresh_from_db()
    path = Path(theirs.file.path)
    assert path.exists()
    mine = Export.objects.get(pk=stuck.pk)
    manager.delete()
    assert not Export.objects.filter(pk=theirs.pk).exists()
    exports.exports_forget()  # the hourly clean-up: files no export holds any more
    assert not path.exists() and Export.objects.filter(pk=mine.pk).exists()
