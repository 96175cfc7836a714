"""Exports of the lists, written by a worker for the person who asked (docs/EXPORTS.md).

A page asks for one (`export_request`) with its query string; the worker turns
the query back into rows with the kind's source (a function of the list's own app,
`register_export_source`) and writes them to a temporary file, which is published under
MEDIA_ROOT only once it is whole (`export_run`). Memory stays flat: sources yield
rows read in chunks, openpyxl's write-only mode spools rows to disk.
"""

import csv
import io
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib import messages
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.http import Http404, HttpResponseBadRequest, QueryDict
from django.shortcuts import redirect
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from openpyxl import Workbook

from scrm.models import Export
from scrm.spreadsheets import csv_row, xlsx_row

logger = logging.getLogger(__name__)

# Each kind's rows: a function (query: QueryDict, object_id: int | None) -> Table, which
# raises Http404 for what is not there (any more). The lists' apps register theirs in
# `AppConfig.ready()` (`register_export_source`).
_sources: dict[str, Callable[[QueryDict, int | None], "Table"]] = {}
SHEET_ROWS = 1_048_575  # an Excel sheet's rows but the header; then the next sheet
PROGRESS_ROWS = 2000  # rows written between two updates of `Export.rows`
# pg_try_advisory_lock(EXPORT_LOCK, export id): held while a worker writes the export.
EXPORT_LOCK = 7_301_004


@dataclass
class Table:
    """What an export writes: the header, then one list of cells per row."""

    sheet: str  # the Excel sheet's title
    header: list[str]
    rows: Iterable[list]  # read only when the export is written
    count: Callable[[], int]  # how many rows there are, for the progress
    money: tuple[int, ...] = ()  # the places of the columns that hold money (`xlsx_row`)


def export_request(
    *, user, kind: str, query: QueryDict, title: str, file_format: str, object_id: int | None = None
) -> Export:
    """Queue an export of what the page shows. The source is built once here, so a
    made-up filter is the page's 404 now rather than a failed export later."""
    source(kind)(query, object_id)
    query = query.copy()
    query.pop("after", None)  # the page's place in the list: an export has all of it
    export = Export.objects.create(
        requested_by=user,
        kind=kind,
        object_id=object_id,
        title=title[:200],
        query=query.urlencode(),
        file_format=file_format,
        language=translation.get_language() or "zh-hans",
    )
    from scrm.tasks import run_export

    transaction.on_commit(lambda: run_export.delay(export.pk))
    return export


def export_asked(request, *, kind: str, title: str, object_id: int | None = None):
    """A page's export button (POST format, and query: the page's query string): the
    export is queued and the asker sent to the exports page to follow it."""
    file_format = request.POST.get("format", "")
    if file_format not in Export.Format.values:
        return HttpResponseBadRequest(_("未知的导出格式。"))
    export_request(
        user=request.user,
        kind=kind,
        query=QueryDict(request.POST.get("query", "")),
        title=title,
        file_format=file_format,
        object_id=object_id,
    )
    messages.success(request, _("已开始导出，完成后可在此下载。"))
    return redirect("exports")


def register_export_source(kind: str, source: Callable[[QueryDict, int | None], Table]) -> None:
    _sources[kind] = source


def source(kind: str) -> Callable[[QueryDict, int | None], Table]:
    return _sources[kind]


def export_run(*, export_id: int) -> Export | None:
    """Write one export. Safe twice: it runs while it holds the export's lock, only
    a queued export or a running one nobody holds (its worker was killed: it is
    delivered again and starts the file over). None when another worker has it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [EXPORT_LOCK, export_id])
        if not cursor.fetchone()[0]:
            return None
    try:
        started = Export.objects.filter(
            pk=export_id, status__in=[Export.Status.QUEUED, Export.Status.RUNNING]
        ).update(status=Export.Status.RUNNING, started_at=timezone.now(), rows=0)
        export = Export.objects.filter(pk=export_id).first()  # None: its requester was deleted
        if started and export is not None:
            with translation.override(export.language):
                _run(export)
        return export
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [EXPORT_LOCK, export_id])


def _run(export: Export) -> None:
    try:
        table = source(export.kind)(QueryDict(export.query), export.object_id)
        Export.objects.filter(pk=export.pk).update(total=table.count())
        with tempfile.TemporaryFile() as spool:
            rows = _write(export, table, spool)
            spool.seek(0)
            export.file.save(f"{export.pk}-{export.filename}", File(spool), save=False)
    except Http404:
        _fail(export, _("要导出的内容已不存在（标签或筛选条件中的导购已删除），未生成文件。"))
        return
    except SoftTimeLimitExceeded:
        minutes = settings.CELERY_TASK_SOFT_TIME_LIMIT // 60
        _fail(
            export,
            _("导出超过 %(minutes)s 分钟仍未写完，已停止，未生成文件。请缩小筛选范围后再导出。")
            % {"minutes": minutes},
        )
        return
    except Exception:
        logger.exception("export %s failed", export.pk)
        _fail(export, _("导出时出错，未生成文件。请稍后重试；仍然失败请联系管理员。"))
        return
    finished = Export.objects.filter(pk=export.pk).update(
        status=Export.Status.SUCCEEDED,
        rows=rows,
        total=rows,  # the rows are read after they were counted
        file=export.file.name,
        size=export.file.size,
        finished_at=timezone.now(),
    )
    if not finished:  # its requester's account was deleted meanwhile, and the row with it
        export.file.delete(save=False)
        return
    export.refresh_from_db()


def _fail(export: Export, reason: str) -> None:
    export.status, export.failure = Export.Status.FAILED, reason
    export.finished_at = timezone.now()
    Export.objects.filter(pk=export.pk).update(
        status=export.status, failure=export.failure, finished_at=export.finished_at
    )


def _write(export: Export, table: Table, spool) -> int:
    """Write the table to `spool` as the export's format; returns the rows written."""
    progress = _Progress(export)
    if export.file_format == Export.Format.CSV:
        return _write_csv(table, spool, progress)
    return _write_xlsx(table, spool, progress)


class _Progress:
    """Called with the rows written so far after each row: every `PROGRESS_ROWS`, saved."""

    def __init__(self, export: Export) -> None:
        self.export_id = export.pk

    def __call__(self, rows: int) -> None:
        if rows % PROGRESS_ROWS == 0:
            Export.objects.filter(pk=self.export_id).update(rows=rows)


def _csv_cell(value) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def _write_csv(table: Table, spool, progress: Callable[[int], None]) -> int:
    text = io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")  # so Excel reads UTF-8
    writer = csv.writer(text)
    writer.writerow(table.header)
    written = 0
    for row in table.rows:
        writer.writerow(csv_row([_csv_cell(value) for value in row]))
        written += 1
        progress(written)
    text.flush()
    text.detach()
    return written


def _write_xlsx(
    table: Table, spool, progress: Callable[[int], None], sheet_rows: int = SHEET_ROWS
) -> int:
    """Excel's sheets hold 1,048,576 rows: past them the rows go on in a next sheet
    (客户 (2)), under the same header."""
    workbook = Workbook(write_only=True)
    sheet, left, sheets, written = None, 0, 0, 0
    for row in table.rows:
        if not left:
            sheets += 1
            title = table.sheet if sheets == 1 else f"{table.sheet} ({sheets})"
            sheet = workbook.create_sheet(title=title[:31])
            sheet.append(table.header)
            left = sheet_rows
        sheet.append(xlsx_row(sheet, row, table.money))
        left -= 1
        written += 1
        progress(written)
    if sheet is None:  # no rows: the header alone
        workbook.create_sheet(title=table.sheet[:31]).append(table.header)
    workbook.save(spool)
    return written


# An export still queued or running this long after it was asked for never will finish:
# its worker was killed past the time limit, and the task is not delivered again.
STALE_AFTER = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 600)


def exports_forget() -> int:
    """Exports asked for more than `Export.RETENTION` ago, files and all, and the files of
    a deleted account's exports (the rows went with it); the exports that will never
    finish are failed, with the reason."""
    now = timezone.now()
    stale = Export.objects.filter(
        status__in=[Export.Status.QUEUED, Export.Status.RUNNING], created_at__lt=now - STALE_AFTER
    )
    for export in stale:
        with translation.override(export.language):
            _fail(export, _("导出被中断，未生成文件，请重新导出。"))
    deleted, _kinds = Export.objects.filter(created_at__lt=now - Export.RETENTION).delete()
    # Then every file whose export is gone: those just deleted, and those of the exports
    # of a deleted account. Files are named "<export id>-…" (`_run`).
    if default_storage.exists(Export.FOLDER):
        kept = {str(pk) for pk in Export.objects.values_list("pk", flat=True)}
        for name in default_storage.listdir(Export.FOLDER)[1]:
            if name.split("-", 1)[0] not in kept:
                default_storage.delete(f"{Export.FOLDER}/{name}")
    return deleted
