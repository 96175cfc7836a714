"""The weekly report's pages: past reports, one report (HTML and XLSX), and recipients
(the one thing managers may change)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from analytics.models import ReportRecipient, WeeklyReport
from analytics.weekly import cohort_svg, sentences, with_points
from scrm.roles import Perm, permission_required


@permission_required(Perm.VIEW_CONSOLE)
def report_list(request: HttpRequest) -> HttpResponse:
    reports = WeeklyReport.objects.defer("xlsx", "data").prefetch_related("deliveries")
    return render(
        request,
        "analytics/report_list.html",
        {"reports": reports[:104], "recipients": ReportRecipient.objects.all()},
    )


@permission_required(Perm.VIEW_CONSOLE)
def report_detail(request: HttpRequest, week: str) -> HttpResponse:
    report = get_object_or_404(WeeklyReport.objects.defer("xlsx"), week=week)
    return render(
        request,
        "analytics/report_detail.html",
        {
            "report": report,
            "data": with_points(report.data),
            "sentences": sentences(report.data),
            "heatmap": cohort_svg(report.data["cohorts"]),
            "deliveries": report.deliveries.select_related("recipient"),
        },
    )


@permission_required(Perm.VIEW_CONSOLE)
def report_xlsx(request: HttpRequest, week: str) -> HttpResponse:
    report = get_object_or_404(WeeklyReport, week=week)
    response = HttpResponse(
        bytes(report.xlsx),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    response["Content-Disposition"] = f'attachment; filename="weekly-{report.week}.xlsx"'
    return response


@require_POST
@permission_required(Perm.CHANGE_REPORT_RECIPIENTS)
def recipient_save(request: HttpRequest) -> HttpResponse:
    """Add, change or remove a recipient (managers, operators and admins)."""
    pk = request.POST.get("id")
    if request.POST.get("delete") and pk:
        ReportRecipient.objects.filter(pk=pk).delete()
        return redirect("reports")
    recipient = get_object_or_404(ReportRecipient, pk=pk) if pk else ReportRecipient()
    recipient.name = request.POST.get("name", "").strip()
    recipient.email = request.POST.get("email", "").strip()
    recipient.wecom_userid = request.POST.get("wecom_userid", "").strip()
    recipient.is_active = bool(request.POST.get("is_active"))
    if not recipient.name or not (recipient.email or recipient.wecom_userid):
        messages.error(request, _("接收人需要姓名，以及邮箱或企业微信 UserID 之一"))
        return redirect("reports")
    try:
        recipient.full_clean()
    except ValidationError as error:
        messages.error(request, _("邮箱格式不对：%(error)s") % {"error": error})
        return redirect("reports")
    recipient.save()
    messages.success(request, _("已保存接收人 %(name)s") % {"name": recipient.name})
    return redirect("reports")
