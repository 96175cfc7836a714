from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from contacts.api import CanReadCustomers
from contacts.models import Customer
from scrm.roles import ConsolePermission, Perm
from tagging import selectors, services
from tagging.models import Tag, TagGroup, TagRule
from tagging.rules import RuleError
from tagging.serializers import (
    CustomerTagChangeSerializer,
    CustomerTagEventSerializer,
    CustomerTagSerializer,
    CustomerTagsSerializer,
    RulePreviewRequestSerializer,
    RulePreviewSerializer,
    TagGroupSerializer,
    TagRuleSerializer,
    TagSerializer,
)


class CanViewConsole(BasePermission):
    """Reading, also by POST (a preview changes nothing): console viewers."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.has_perm(Perm.VIEW_CONSOLE))


class TagGroupViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = TagGroup.objects.all()
    serializer_class = TagGroupSerializer
    permission_classes = [ConsolePermission]


class TagViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Tags with how many customers carry each; POST creates a manual tag."""

    queryset = selectors.tags_with_counts().order_by("group__order", "group_id", "order", "id")
    serializer_class = TagSerializer
    permission_classes = [ConsolePermission]
    filterset_fields = ["group", "source"]

    def perform_create(self, serializer) -> None:
        serializer.save(source=Tag.Source.MANUAL)


def _rule_save(*, tag: Tag | None, data: dict, by) -> TagRule:
    """rule_save with its refusals as 400s: the condition's reason, or a duplicate name."""
    try:
        rule = services.rule_save(
            tag=tag,
            group=data["group"],
            name=data["name"],
            color=data["color"],
            condition=data["condition"],
            is_active=data["is_active"],
            by=by,
        )
    except RuleError as error:
        raise serializers.ValidationError({"condition": [str(error)]}) from None
    except IntegrityError:
        raise serializers.ValidationError({"name": ["这个标签组里已有同名标签。"]}) from None
    return TagRule.objects.select_related("tag").get(pk=rule.pk)


class TagRuleViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Rule tags. Writes go through the rule_save service: an invalid condition (or a
    cycle between rules) is a 400 with `{"condition": [reason]}` and writes nothing."""

    queryset = TagRule.objects.select_related("tag").order_by("tag_id")
    serializer_class = TagRuleSerializer
    permission_classes = [ConsolePermission]
    filterset_fields = ["is_active"]

    def create(self, request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rule = _rule_save(
            tag=None,
            data={
                **data["tag"],
                "condition": data["condition"],
                "is_active": data.get("is_active", True),
            },
            by=request.user,
        )
        return Response(self.get_serializer(rule).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs) -> Response:
        rule = self.get_object()
        serializer = self.get_serializer(rule, data=request.data, partial=kwargs.get("partial"))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        changes = data.get("tag", {})
        saved = _rule_save(
            tag=rule.tag,
            data={
                "group": changes.get("group", rule.tag.group),
                "name": changes.get("name", rule.tag.name),
                "color": changes.get("color", rule.tag.color),
                "condition": data.get("condition", rule.condition),
                "is_active": data.get("is_active", rule.is_active),
            },
            by=request.user,
        )
        return Response(self.get_serializer(saved).data)

    @extend_schema(request=RulePreviewRequestSerializer, responses=RulePreviewSerializer)
    @action(detail=False, methods=["post"], permission_classes=[CanViewConsole])
    def preview(self, request) -> Response:
        """How many customers a condition matches now, and the first of them; saves
        nothing. 400 with `{"condition": [reason]}` when it cannot be evaluated."""
        serializer = RulePreviewRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            preview = services.rule_preview(condition=serializer.validated_data["condition"])
        except RuleError as error:
            return Response({"condition": [str(error)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"audience": preview.audience, "sample": preview.sample})


class CustomerTagsView(GenericAPIView):
    """A customer's tags and history. Guides read their own customers' (404 for anyone
    else's); console writers add (POST `{"tag": id}`) and remove (DELETE `?tag=id`)
    manual tags."""

    permission_classes = [CanReadCustomers]
    serializer_class = CustomerTagsSerializer

    def _customer(self, customer_id: int) -> Customer:
        customer = get_object_or_404(Customer.objects.visible_to(self.request.user), pk=customer_id)
        if self.request.method != "GET" and not self.request.user.has_perm(Perm.CHANGE_CONSOLE):
            self.permission_denied(self.request)
        return customer

    def _state(self, customer: Customer) -> Response:
        current = selectors.customer_tags(customer_id=customer.pk)
        return Response(
            {
                "customer": customer.pk,
                "tags": CustomerTagSerializer(
                    [a for _, assignments in current.groups for a in assignments], many=True
                ).data,
                "history": CustomerTagEventSerializer(current.history, many=True).data,
            }
        )

    def _change(self, customer: Customer, tag_id, *, add: bool) -> Response:
        tag = Tag.objects.filter(pk=tag_id).first() if str(tag_id).isdecimal() else None
        if tag is None:
            return Response({"tag": ["找不到这个标签。"]}, status=status.HTTP_400_BAD_REQUEST)
        try:
            services.customer_tags_set(
                tag=tag, customer_ids=[customer.pk], add=add, by=self.request.user
            )
        except ValueError as error:
            return Response({"tag": [str(error)]}, status=status.HTTP_400_BAD_REQUEST)
        return self._state(customer)

    def get(self, request, customer_id: int) -> Response:
        return self._state(self._customer(customer_id))

    @extend_schema(request=CustomerTagChangeSerializer, responses=CustomerTagsSerializer)
    def post(self, request, customer_id: int) -> Response:
        customer = self._customer(customer_id)
        serializer = CustomerTagChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._change(customer, serializer.validated_data["tag"], add=True)

    @extend_schema(
        parameters=[OpenApiParameter("tag", int, OpenApiParameter.QUERY, required=True)],
        responses=CustomerTagsSerializer,
    )
    def delete(self, request, customer_id: int) -> Response:
        customer = self._customer(customer_id)
        return self._change(customer, request.query_params.get("tag", ""), add=False)
