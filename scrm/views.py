from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from scrm.models import Export
from scrm.roles import Perm, permission_required
from scrm.spreadsheets import XLSX_TYPE


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if request.user.has_perm(Perm.VIEW_CONSOLE):
        return render(request, "home.html")
    if request.user.has_perm(Perm.USE_GUIDE_APP):
        return redirect("guide_home")
    return render(request, "no_role.html", status=403)


EXPORTS_PER_PAGE = 30


def _own_export(request: HttpRequest, pk: int) -> Export:
    """An export is its requester's alone: anyone else's is not there (404)."""
    return get_object_or_404(Export, pk=pk, requested_by=request.user)


@permission_required(Perm.VIEW_CONSOLE)
def export_list(request: HttpRequest) -> HttpResponse:
    exports = Export.objects.filter(requested_by=request.user)
    page = Paginator(exports, EXPORTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "scrm/export_list.html",
        {"page": page, "retention_days": Export.RETENTION.days},
    )


def _progress(export: Export) -> str:
    if export.status == Export.Status.QUEUED:
        return _("排队中：后台任务空闲后马上开始…")
    if export.status == Export.Status.RUNNING:
        if export.total:
            return _("导出中：已写入 %(rows)s / %(total)s 行") % {
                "rows": number_format(export.rows, force_grouping=True),
                "total": number_format(export.total, force_grouping=True),
            }
        return _("导出中：正在读取…")
    return export.get_status_display()


@permission_required(Perm.VIEW_CONSOLE)
def export_status(request: HttpRequest, pk: int) -> JsonResponse:
    export = _own_export(request, pk)
    return JsonResponse(
        {
            "status": export.status,
            "rows": export.rows,
            "total": export.total,
            "message": _progress(export),
        }
    )


@permission_required(Perm.VIEW_CONSOLE)
def export_download(request: HttpRequest, pk: int) -> FileResponse:
    export = _own_export(request, pk)
    if export.status != Export.Status.SUCCEEDED or export.expires_at <= timezone.now():
        raise Http404("no file")  # not written yet, failed, or past its week
    content_type = XLSX_TYPE if export.file_format == Export.Format.XLSX else "text/csv"
    return FileResponse(
        export.file.open("rb"),
        as_attachment=True,
        filename=export.filename,
        content_type=content_type,
    )
