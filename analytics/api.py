"""API: each dashboard metric as JSON, the same cached result the pages draw
(`{metric, params, generation, as_of, data}`), with the pages' filter parameters."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import dashboards
from analytics.forms import DashboardFilterForm
from scrm.roles import ConsolePermission

FILTER_PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="窗口开始日（上海时间，含）"),
    OpenApiParameter("end", OpenApiTypes.DATE, description="窗口结束日（上海时间，含）；默认今天"),
    OpenApiParameter("period", OpenApiTypes.STR, enum=["month", "week"]),
    OpenApiParameter("by", OpenApiTypes.STR, enum=["first_purchase", "joined"]),
    OpenApiParameter("channel", OpenApiTypes.STR, enum=list(dashboards.CHANNELS)),
    OpenApiParameter("member", OpenApiTypes.STR, enum=list(dashboards.MEMBER_CHOICES)),
    OpenApiParameter("store", OpenApiTypes.INT),
    OpenApiParameter("guide", OpenApiTypes.INT),
    OpenApiParameter("category", OpenApiTypes.STR),
    OpenApiParameter("state", OpenApiTypes.STR, description="渠道码（仅客户增长）"),
]


class MetricView(APIView):
    """One metric; the parameters a metric does not read are ignored."""

    permission_classes = [ConsolePermission]
    metric = ""

    @extend_schema(parameters=FILTER_PARAMETERS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        form = DashboardFilterForm(
            request.query_params or None,
            options=dashboards.options()["data"],
            default_months=dashboards.METRICS[self.metric].default_months,
        )
        if form.is_bound and not form.is_valid():
            return Response(form.errors, status=400)
        return Response(dashboards.result(self.metric, form.params()))
