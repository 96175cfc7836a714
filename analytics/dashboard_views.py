"""The 数据 pages: one view renders every dashboard from its cached results, one serves
a table of it as CSV or XLSX (exactly the rows the page shows)."""

import csv
import io
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from openpyxl import Workbook

from analytics import dashboards
from analytics.forms import BY_NAMES, MEMBER_NAMES, PERIOD_NAMES, DashboardFilterForm
from analytics.tables import DEFINITIONS, PAGES, Content, Table
from contacts.order_files import ORDER_CHANNEL_NAMES
from scrm.roles import Perm, permission_required
from scrm.spreadsheets import MONEY_FORMAT, csv_row, xlsx_row

XLSX_FORMATS = {
    "rate": "0.0%",
    "money": MONEY_FORMAT,
    "int": "#,##0",
    "days": "0.0",
    "decimal": "0.0000",
}


def _page_content(request: HttpRequest, slug: str):
    if slug not in PAGES:
        raise Http404("no such dashboard")
    page = PAGES[slug]
    options = dashboards.options()["data"]
    months = max(dashboards.METRICS[name].default_months for name in page.metrics)
    form = DashboardFilterForm(request.GET or None, options=options, default_months=months)
    params = form.params()
    results = {name: dashboards.result(name, params) for name in page.metrics}
    if slug == "ltv" and (predicted := dashboards.predicted_ltv()) is not None:
        results[dashboards.PREDICTED] = predicted  # stored by the refresh, never computed here
    return page, form, params, options, results, page.build(results)


@permission_required(Perm.VIEW_CONSOLE)
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    page, form, params, options, results, content = _page_content(request, slug)
    query = urlencode(
        {
            name: value
            for name in page.fields
            if (value := request.GET.get(name, "")) and name in form.fields
        }
    )
    context = {
        "page": page,
        "pages": PAGES.values(),
        "form": form,
        "params": params,
        "options": options,
        "choices": {
            "period": PERIOD_NAMES.items(),
            "by": BY_NAMES.items(),
            "channel": ORDER_CHANNEL_NAMES.items(),
            "member": MEMBER_NAMES.items(),
        },
        "content": content,
        "as_of": min(result["as_of"] for result in results.values()),
        "generation": max(result["generation"] for result in results.values()),
        "query": query,
        "nav_section": "dashboards",
    }
    if slug == "ltv":
        context["predicted"] = results.get(dashboards.PREDICTED)
        context["predicted_note"] = DEFINITIONS["predicted_ltv"]
    return render(request, "analytics/dashboards/page.html", context)


def _table(content: Content, key: str) -> Table:
    for table in content.tables:
        if table.key == key:
            return table
    raise Http404("no such table")


@permission_required(Perm.VIEW_CONSOLE)
def export(request: HttpRequest, slug: str, table: str, file_format: str) -> HttpResponse:
    """The table as the page shows it: its columns as the header, its rows unrounded."""
    _page, _form, params, _options, _results, content = _page_content(request, slug)
    chosen = _table(content, table)
    header = [str(column.label) for column in chosen.columns]
    name = f"{slug}-{table}-{params.start}-{params.end}"
    if file_format == "csv":
        buffer = io.StringIO()
        buffer.write("\ufeff")  # so Excel opens it as UTF-8
        writer = csv.writer(buffer)
        writer.writerow(header)
        for row in chosen.rows:
            writer.writerow(csv_row(["" if value is None else value for value in row]))
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return response
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = table[:31]
    sheet.append(header)
    for row in chosen.rows:
        sheet.append(xlsx_row(sheet, row))
    for index, column in enumerate(chosen.columns, start=1):
        number_format = XLSX_FORMATS.get(column.kind)
        if number_format is None:
            continue
        for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
            cell.number_format = number_format
    buffer = io.BytesIO()
    workbook.save(buffer)
    response = HttpResponse(
        buffer.getvalue(),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    response["Content-Disposition"] = f'attachment; filename="{name}.xlsx"'
    return response
