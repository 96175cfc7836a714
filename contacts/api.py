from rest_framework import viewsets

from contacts.models import Guide, Store
from contacts.serializers import GuideSerializer, StoreSerializer
from scrm.roles import ConsolePermission


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
