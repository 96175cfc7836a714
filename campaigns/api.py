from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import selectors
from campaigns.forms import GROUP_SORT_LABELS, GroupWindowForm
from campaigns.groups import group_stats_for
from campaigns.models import Campaign, ChannelCode
from campaigns.sending import CampaignError
from campaigns.serializers import (
    CampaignSerializer,
    ChannelCodeSerializer,
    GroupStatsSerializer,
    PrepareSerializer,
    SendAcceptedSerializer,
)
from campaigns.services import (
    ChannelCodeError,
    campaign_reach_compute,
    campaign_save,
    campaign_send_now,
    channel_code_save,
    code_stats,
    qr_png,
)
from contacts.api import CanReadCustomers
from scrm.roles import ConsolePermission
from scrm.wecom.gateway import WeComError, WeComGateway

REFUSED = inline_serializer("CampaignRefused", {"detail": serializers.CharField()})


class PNGRenderer(renderers.BaseRenderer):
    media_type = "image/png"
    format = "png"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class ChannelCodeViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Channel codes with their numbers (`stats`). Writes go through channel_code_save,
    which creates or changes the code in WeCom: a refusal is a 400 with `{"detail":
    reason}` and keeps nothing."""

    permission_classes = [ConsolePermission]
    serializer_class = ChannelCodeSerializer
    filterset_fields = ["source", "is_active"]

    def get_queryset(self):
        return selectors.codes_listed().prefetch_related("tags")

    def _data(self, codes: list[ChannelCode], many: bool):
        context = {
            **self.get_serializer_context(),
            "stats": code_stats(code_ids=[code.pk for code in codes]),
        }
        if many:
            return ChannelCodeSerializer(codes, many=True, context=context).data
        return ChannelCodeSerializer(codes[0], context=context).data

    def list(self, request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._data(list(page), many=True))

    def retrieve(self, request, *args, **kwargs) -> Response:
        return Response(self._data([self.get_object()], many=False))

    def _save(self, code: ChannelCode | None, partial: bool = False) -> Response:
        serializer = ChannelCodeSerializer(
            code, data=self.request.data, partial=partial, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        try:
            saved = channel_code_save(
                code=code,
                **serializer.service_arguments(code),
                gateway=WeComGateway.from_settings(),
                by=self.request.user,
            )
        except ChannelCodeError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        except WeComError as error:
            return Response(
                {"detail": _("无法连接企业微信：%(error)s") % {"error": error}},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        saved = self.get_queryset().get(pk=saved.pk)
        return Response(
            self._data([saved], many=False),
            status=status.HTTP_201_CREATED if code is None else status.HTTP_200_OK,
        )

    @extend_schema(responses={201: ChannelCodeSerializer, 400: REFUSED})
    def create(self, request, *args, **kwargs) -> Response:
        return self._save(None)

    @extend_schema(responses={200: ChannelCodeSerializer, 400: REFUSED})
    def update(self, request, *args, **kwargs) -> Response:
        """PUT replaces the code's settings; PATCH changes the fields given."""
        return self._save(self.get_object(), partial=kwargs.get("partial", False))

    @extend_schema(responses={200: ChannelCodeSerializer, 400: REFUSED})
    def partial_update(self, request, *args, **kwargs) -> Response:
        kwargs["partial"] = True
        return self.update(request, *args, **kwargs)


class ChannelCodeQRView(GenericAPIView):
    """The code's QR image (PNG), to print."""

    permission_classes = [ConsolePermission]
    renderer_classes = [PNGRenderer, renderers.JSONRenderer]
    queryset = ChannelCode.objects.all()

    def handle_exception(self, exc):
        """An error (403, 404) is JSON, whatever image the client asked for."""
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = renderers.JSONRenderer.media_type
        return super().handle_exception(exc)

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request, pk: int) -> HttpResponse:
        code = self.get_object()
        response = HttpResponse(qr_png(code), content_type="image/png")
        response["Content-Disposition"] = f'inline; filename="channel-code-{code.pk}.png"'
        return response


class CampaignViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Mass-message campaigns with their recipients' numbers (`reach`) and, on retrieve,
    what they earned (`attribution`). Create and change drafts (and scheduled ones);
    `prepare/` computes who is reached, `send/` hands the campaign to the worker."""

    permission_classes = [ConsolePermission]
    serializer_class = CampaignSerializer
    filterset_fields = ["status"]

    def get_queryset(self):
        return selectors.campaigns_listed()

    def get_serializer_class(self):
        if self.action == "prepare":
            return PrepareSerializer
        if self.action == "send":
            return SendAcceptedSerializer
        return CampaignSerializer

    def list(self, request, *args, **kwargs) -> Response:
        page = list(self.paginate_queryset(self.filter_queryset(self.get_queryset())))
        context = {**self.get_serializer_context(), "stats": selectors.campaign_stats(page)}
        return self.get_paginated_response(
            CampaignSerializer(page, many=True, context=context).data
        )

    def _detail(self, campaign: Campaign) -> dict:
        context = {
            **self.get_serializer_context(),
            "stats": selectors.campaign_stats([campaign]),
            "attribution": {campaign.pk: selectors.campaign_attribution(campaign)},
        }
        return CampaignSerializer(campaign, context=context).data

    def retrieve(self, request, *args, **kwargs) -> Response:
        return Response(self._detail(self.get_object()))

    def _save(self, campaign: Campaign | None, partial: bool = False) -> Response:
        serializer = CampaignSerializer(campaign, data=self.request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        try:
            saved = campaign_save(
                campaign=campaign, fields=dict(serializer.validated_data), by=self.request.user
            )
        except CampaignError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            self._detail(saved),
            status=status.HTTP_201_CREATED if campaign is None else status.HTTP_200_OK,
        )

    @extend_schema(responses={201: CampaignSerializer, 400: REFUSED})
    def create(self, request, *args, **kwargs) -> Response:
        return self._save(None)

    @extend_schema(responses={200: CampaignSerializer, 400: REFUSED})
    def update(self, request, *args, **kwargs) -> Response:
        """PUT replaces the campaign's settings; PATCH changes the fields given. Refused
        once the campaign is being sent."""
        return self._save(self.get_object(), partial=kwargs.get("partial", False))

    @extend_schema(responses={200: CampaignSerializer, 400: REFUSED})
    def partial_update(self, request, *args, **kwargs) -> Response:
        kwargs["partial"] = True
        return self.update(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: PrepareSerializer, 400: REFUSED})
    @action(detail=True, methods=["post"])
    def prepare(self, request, pk=None) -> Response:
        """Choose the recipients now: who is reached, held back by reason, the holdout,
        and per guide. Sending later sends to these recipients."""
        campaign = self.get_object()
        try:
            reach = campaign_reach_compute(campaign=campaign)
        except CampaignError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(PrepareSerializer(reach).data)

    @extend_schema(
        request=None,
        responses={
            202: SendAcceptedSerializer,
            400: OpenApiResponse(REFUSED, description="cannot be sent; nothing changed"),
        },
    )
    @action(detail=True, methods=["post"])
    def send(self, request, pk=None) -> Response:
        """Prepare and hand the campaign to the worker (after the transaction commits).
        202: accepted; the campaign page and `GET` follow its progress."""
        campaign = self.get_object()
        try:
            reach = campaign_send_now(campaign=campaign)
        except CampaignError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            {"status": campaign.status, "reach": PrepareSerializer(reach).data},
            status=status.HTTP_202_ACCEPTED,
        )


class GroupStatsView(APIView):
    """The customer groups' numbers in a window, as the 社群 page shows them:
    `{start, end, groups: [...]}`; a bad window is a 400 with the reason."""

    permission_classes = [CanReadCustomers]  # guides: the groups they own

    @extend_schema(
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, description="窗口开始日（上海时间，含）"),
            OpenApiParameter("end", OpenApiTypes.DATE, description="窗口结束日（上海时间，含）"),
            OpenApiParameter("q", OpenApiTypes.STR, description="群名、群 ID 或群主含此文字的群"),
            OpenApiParameter(
                "sort",
                OpenApiTypes.STR,
                enum=list(GROUP_SORT_LABELS),
                description="排序：数字从大到小，群名按字母；默认当前人数",
            ),
        ],
        responses=inline_serializer(
            "GroupStatsWindow",
            {
                "start": serializers.DateField(),
                "end": serializers.DateField(),
                "groups": GroupStatsSerializer(many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        form = GroupWindowForm(request.query_params or None)
        if form.is_bound and not form.is_valid():
            return Response(form.errors, status=status.HTTP_400_BAD_REQUEST)
        start, end = form.window()
        search, sort = form.listing()
        rows = group_stats_for(request.user, start=start, end=end, search=search, sort=sort)
        return Response(
            {
                "start": start,
                "end": end,
                "groups": GroupStatsSerializer(rows, many=True).data,
            }
        )
