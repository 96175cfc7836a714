import hashlib
import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.db.models import Prefetch
from django.utils.translation import gettext as _
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, Throttled
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from contacts import services
from contacts.listing import GUIDE_PHONE_SEARCHES, guide_phone_search_refused
from contacts.models import (
    IDEMPOTENCY_KEY_MAX,
    Customer,
    Guide,
    Order,
    OrderImport,
    Relationship,
    Store,
    SyncRun,
)
from contacts.serializers import (
    BULK_LINES_MAX,
    BulkOrdersSerializer,
    CustomerDetailSerializer,
    CustomerSerializer,
    GuideSerializer,
    OrderBindSerializer,
    OrderSerializer,
    StoreSerializer,
    SyncRunSerializer,
)
from scrm.limits import LimitReached
from scrm.roles import ConsolePermission, Perm


class StoreViewSet(viewsets.ModelViewSet):
    queryset = Store.objects.all()
    serializer_class = StoreSerializer
    permission_classes = [ConsolePermission]
    filterset_fields = ["code", "city"]


class GuideViewSet(viewsets.ModelViewSet):
    queryset = Guide.objects.select_related("store")
    serializer_class = GuideSerializer
    permission_classes = [ConsolePermission]
    filterset_fields = ["store", "is_active", "wecom_userid"]


class CanReadCustomers(BasePermission):
    """Console viewers read every customer; guides read their own (the queryset scopes them)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(
            user and (user.has_perm(Perm.VIEW_CONSOLE) or user.has_perm(Perm.USE_GUIDE_APP))
        )


class CustomerViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [CanReadCustomers]
    filterset_fields = ["is_member", "external_userid"]

    def get_queryset(self):
        queryset = Customer.objects.visible_to(self.request.user).order_by("-joined_at", "-id")
        if text := self.request.query_params.get("q"):
            if refusal := guide_phone_search_refused(self.request.user, text):
                raise Throttled(
                    wait=GUIDE_PHONE_SEARCHES.minutes_left(self.request.user) * 60, detail=refusal
                )
            queryset = queryset.search(text)
        if self.action == "list":  # a record merged away is still read by its id
            queryset = queryset.unmerged()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                "identities",
                Prefetch("relationships", Relationship.objects.select_related("guide")),
            )
        return queryset

    def get_serializer_class(self):
        return CustomerDetailSerializer if self.action == "retrieve" else CustomerSerializer


class SyncRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Sync runs; POST starts a full sync on a worker (one at a time)."""

    queryset = SyncRun.objects.all()
    serializer_class = SyncRunSerializer
    permission_classes = [ConsolePermission]

    def create(self, request, *args, **kwargs) -> Response:
        running = SyncRun.objects.filter(status=SyncRun.Status.RUNNING).first()
        if running:
            return Response(
                {"detail": _("另一个同步正在进行。"), "run": SyncRunSerializer(running).data},
                status=status.HTTP_409_CONFLICT,
            )
        run = services.sync_run_start(triggered_by=request.user.username)
        services.sync_run_enqueue(run=run)
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class OrderFilter(filters.FilterSet):
    # By id, not a choice of customers: the browsable API would list every customer
    # in its filter form, to guides too, and answer whether an id exists.
    customer = filters.NumberFilter(field_name="customer_id")

    class Meta:
        model = Order
        fields = ["channel", "status", "customer"]


class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    """Orders; console viewers read all, guides the orders of their own customers."""

    serializer_class = OrderSerializer
    permission_classes = [CanReadCustomers]
    filterset_class = OrderFilter

    def get_queryset(self):
        queryset = Order.objects.prefetch_related("lines").order_by("-paid_at", "-id")
        if not self.request.user.has_perm(Perm.VIEW_CONSOLE):
            queryset = queryset.filter(customer__in=Customer.objects.visible_to(self.request.user))
        if self.request.query_params.get("unmatched") == "true":
            queryset = queryset.filter(customer__isnull=True)
        return queryset

    @extend_schema(
        request=BulkOrdersSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
    )
    @action(detail=False, methods=["post"], permission_classes=[ConsolePermission])
    def bulk(self, request) -> Response:
        """Push order lines in the generic format, at most 10,000 a call. With an
        `Idempotency-Key` header (≤ 100 characters, each pusher's own) a retry returns the
        first call's result and writes nothing (409 with Retry-After while that call is
        still importing; a call that failed, writing nothing, is run again); other orders
        under a key used already are refused (422), not taken for a retry. Errors carry
        `row`: the line's 1-based position in `orders`; their reasons are in Simplified
        Chinese, or in English with `Accept-Language: en`."""
        try:
            data = request.data
        except RequestDataTooBig:
            words = _("请求体超过 %(most)s MB：请分批推送（每批最多 %(lines)s 行）。")
            most = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2**20
            return Response(
                {"detail": words % {"most": most, "lines": f"{BULK_LINES_MAX:,}"}},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        except ParseError:
            words = _('请求体不是有效的 JSON，这批订单没有导入：应为 {"orders": [订单行, …]}。')
            return Response({"detail": words, "errors": []}, status=status.HTTP_400_BAD_REQUEST)
        key = request.headers.get("Idempotency-Key") or None
        digest = ""
        if key:
            if len(key) > IDEMPOTENCY_KEY_MAX:
                words = _("Idempotency-Key 最多 %(most)s 个字符，这里有 %(count)s 个。")
                return Response(
                    {"detail": words % {"most": IDEMPOTENCY_KEY_MAX, "count": len(key)}},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            digest = _request_digest(data)
            previous = OrderImport.objects.filter(imported_by=request.user, idempotency_key=key)
            if previous := previous.first():
                if (
                    previous.status != OrderImport.Status.FAILED
                    or previous.request_digest != digest
                ):
                    return _replayed(previous, digest)
                # It failed, having written nothing: this retry runs it again under the key.
                OrderImport.objects.filter(pk=previous.pk).update(idempotency_key=None)
        serializer = BulkOrdersSerializer(data=data)
        if not serializer.is_valid():
            return Response(_shape_errors(serializer.errors), status=status.HTTP_400_BAD_REQUEST)
        try:
            record = services.orders_push(
                rows=serializer.validated_data["orders"],
                imported_by=request.user,
                key=key,
                digest=digest,
            )
        except IntegrityError:  # the same key, sent twice at once: the other call won
            previous = OrderImport.objects.get(imported_by=request.user, idempotency_key=key)
            return _replayed(previous, digest)
        return Response(_import_result(record))

    @extend_schema(request=OrderBindSerializer)
    @action(detail=False, methods=["post"], permission_classes=[CanReadCustomers])
    def bind(self, request) -> Response:
        """A guide binds an order number to a customer they follow: the order, with the
        other sub-orders of its checkout (by a sub-order's number or the checkout's
        主订单编号). Answers the orders the customer now has of it (`orders`)."""
        serializer = OrderBindSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        guide = getattr(request.user, "guide", None)
        customer = (
            Customer.objects.visible_to(request.user)
            .filter(pk=serializer.validated_data["customer_id"])
            .first()
        )
        if guide is None or customer is None:
            return Response(
                {"detail": _("只能绑定到你自己跟进的客户。")}, status=status.HTTP_404_NOT_FOUND
            )
        try:
            orders = services.order_bind_by_number(
                guide=guide,
                customer=customer,
                channel_order_id=serializer.validated_data["order_number"],
            )
        except LimitReached as error:
            wait = services.GUIDE_BIND_FAILURES.minutes_left(request.user) * 60
            return Response(
                {"detail": str(error)},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(wait)},
            )
        except LookupError as error:
            return Response({"detail": str(error)}, status=status.HTTP_404_NOT_FOUND)
        except PermissionError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response({"orders": OrderSerializer(orders, many=True).data})


def _shape_errors(errors: dict) -> dict:
    """The serializer's errors of lines that cannot be read at all (a field missing, not
    text), numbered as the import's errors are: `row` is the line's 1-based position in
    `orders`. Nothing of such a push is imported."""
    lines = errors.get("orders")
    if isinstance(lines, list) and all(isinstance(line, dict) for line in lines):
        lines = dict(enumerate(lines))
    if not isinstance(lines, dict) or not all(isinstance(f, dict) for f in lines.values()):
        # No list of lines (none, empty, not a list; a body that is no object): the
        # whole body is at fault, said as a line's fault is, in `detail`.
        words = _("请求体不对，这批订单没有导入：%(faults)s") % {"faults": _body_faults(errors)}
        return {"detail": words, "errors": []}
    rows = [
        {
            "row": int(place) + 1,
            "column": "" if column == "non_field_errors" else column,  # the line, not an object
            "reason": " ".join(map(str, reasons)),
        }
        for place, fields in lines.items()
        for column, reasons in fields.items()
    ]
    words = _("有 %(n)s 行缺少字段或格式不对，这批订单没有导入。")
    return {"detail": words % {"n": len({row["row"] for row in rows})}, "errors": rows}


def _body_faults(errors, field: str = "") -> str:
    """The serializer's errors of the body as one text: each field named with its messages."""
    if isinstance(errors, dict):
        return _("；").join(
            _body_faults(value, key if key != "non_field_errors" else field)
            for key, value in errors.items()
        )
    messages = " ".join(map(str, errors)) if isinstance(errors, list) else str(errors)
    return (
        _("%(field)s：%(messages)s") % {"field": field, "messages": messages} if field else messages
    )


def _request_digest(data) -> str:
    """What a push sent, whatever the order of its keys: a retry sends the same."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _replayed(previous: OrderImport, digest: str) -> Response:
    """A retry gets the first call's result; other orders under a key used already are
    refused (they would be dropped as a retry). A push stored before digests were kept
    cannot be told apart: it is taken for a retry."""
    if previous.request_digest and previous.request_digest != digest:
        words = _(
            "这个 Idempotency-Key 已用于另一批订单（导入 #%(id)s），这批订单没有导入："
            "每批订单请用新的 key。"
        )
        return Response(
            {"detail": words % {"id": previous.pk}, "import_id": previous.pk},
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if previous.status in (OrderImport.Status.QUEUED, OrderImport.Status.RUNNING):
        words = _("这批订单还在导入（导入 #%(id)s），请稍后用同一个 key 再试，会得到它的结果。")
        return Response(
            {"detail": words % {"id": previous.pk}, "import_id": previous.pk},
            status=status.HTTP_409_CONFLICT,
            headers={"Retry-After": str(RETRY_WHILE_IMPORTING_SECONDS)},
        )
    return Response(_import_result(previous), headers={"Idempotent-Replayed": "true"})


# A push of the most lines a call takes loads in a few seconds.
RETRY_WHILE_IMPORTING_SECONDS = 5


def _import_result(record: OrderImport) -> dict:
    return {
        "import_id": record.pk,
        "inserted": record.inserted,
        "updated": record.updated,
        "unchanged": record.unchanged,
        "rejected": record.rejected,
        # each reason in the language the request asks for (Accept-Language; Chinese by default)
        "errors": [{k: e[k] for k in ("row", "column", "reason")} for e in record.errors_by_row],
    }
