from django.db.models import Prefetch
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from contacts import services
from contacts.models import Customer, Guide, Relationship, Store, SyncRun
from contacts.serializers import (
    CustomerDetailSerializer,
    CustomerSerializer,
    GuideSerializer,
    StoreSerializer,
    SyncRunSerializer,
)
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
            queryset = queryset.search(text)
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
                {"detail": "另一个同步正在进行。", "run": SyncRunSerializer(running).data},
                status=status.HTTP_409_CONFLICT,
            )
        run = services.sync_run_start(triggered_by=request.user.username)
        services.sync_run_enqueue(run=run)
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
