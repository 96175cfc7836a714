from django.db.models import Prefetch
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from contacts.api import CanReadCustomers
from scrm.roles import ConsolePermission, Perm
from sop import selectors, services
from sop.models import ContactPolicy, SopPlan, SopStep, Touchpoint
from sop.serializers import (
    EnrollRequestSerializer,
    EnrollResultSerializer,
    PlanDetailSerializer,
    PlanSerializer,
    PlanWriteSerializer,
    PolicySerializer,
    TouchpointSerializer,
)
from sop.services import PlanError

LIVE_STEPS = Prefetch("steps", queryset=SopStep.objects.filter(is_retired=False))

REFUSED = inline_serializer("PlanRefused", {"detail": serializers.CharField()})


class SopPlanViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """SOP plans with what they achieved (`stats`). Writes go through plan_save: a plan it
    refuses is a 400 with `{"detail": reason}` and writes nothing."""

    permission_classes = [ConsolePermission]
    serializer_class = PlanSerializer
    filterset_fields = ["trigger", "is_active"]

    def get_queryset(self):
        queryset = selectors.plans_listed()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(LIVE_STEPS)
        return queryset

    def get_serializer_class(self):
        if self.action in ("create", "update", "partial_update"):
            return PlanWriteSerializer
        return PlanDetailSerializer if self.action == "retrieve" else PlanSerializer

    def list(self, request, *args, **kwargs) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        stats = selectors.plan_stats([plan.pk for plan in page])
        data = PlanSerializer(page, many=True, context={"stats": stats}).data
        return self.get_paginated_response(data)

    def _detail(self, plan_id: int) -> dict:
        plan = selectors.plans_listed().prefetch_related(LIVE_STEPS).get(pk=plan_id)
        return PlanDetailSerializer(plan, context={"stats": selectors.plan_stats([plan.pk])}).data

    def retrieve(self, request, *args, **kwargs) -> Response:
        return Response(self._detail(self.get_object().pk))

    def _save(self, plan: SopPlan | None, data: dict) -> Response:
        steps = data.pop("steps")
        try:
            saved = services.plan_save(plan=plan, fields=data, steps=steps, by=self.request.user)
        except PlanError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            self._detail(saved.pk),
            status=status.HTTP_201_CREATED if plan is None else status.HTTP_200_OK,
        )

    @extend_schema(request=PlanWriteSerializer, responses={201: PlanDetailSerializer, 400: REFUSED})
    def create(self, request, *args, **kwargs) -> Response:
        serializer = PlanWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._save(None, dict(serializer.validated_data))

    @extend_schema(request=PlanWriteSerializer, responses={200: PlanDetailSerializer, 400: REFUSED})
    def update(self, request, *args, **kwargs) -> Response:
        """PUT replaces the plan and its steps; PATCH changes the fields given (the steps
        stay as they are unless `steps` is given)."""
        plan = self.get_object()
        partial = kwargs.get("partial", False)
        serializer = PlanWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if partial:
            current = {
                name: getattr(plan, name)
                for name in PlanWriteSerializer().fields
                if name != "steps"
            }
            data = {**current, **data}
            if "steps" not in data:
                data["steps"] = [
                    {
                        name: getattr(step, name)
                        for name in (
                            "id",
                            "offset_days",
                            "offset_hours",
                            "window_start",
                            "window_end",
                            "action",
                            "script",
                            "attachments",
                            "is_automatic",
                        )
                    }
                    for step in selectors.plan_steps(plan)
                ]
        return self._save(plan, data)

    @extend_schema(request=PlanWriteSerializer, responses={200: PlanDetailSerializer, 400: REFUSED})
    def partial_update(self, request, *args, **kwargs) -> Response:
        kwargs["partial"] = True
        return self.update(request, *args, **kwargs)

    @extend_schema(request=EnrollRequestSerializer, responses=EnrollResultSerializer)
    @action(detail=True, methods=["post"])
    def enroll(self, request, pk=None) -> Response:
        """Enrol customers by id (once per customer per day; those outside the audience or
        without a guide are left out). Returns how many were enrolled."""
        plan = self.get_object()
        serializer = EnrollRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        enrolled = services.enroll_manual(
            plan=plan,
            customer_ids=sorted(set(serializer.validated_data["customer_ids"])),
            by=request.user,
        )
        return Response({"enrolled": enrolled})


class PolicyView(GenericAPIView):
    """The contact policy (one row). GET before anyone saved it shows the defaults."""

    permission_classes = [ConsolePermission]
    serializer_class = PolicySerializer

    def _policy(self) -> ContactPolicy:
        return ContactPolicy.objects.order_by("pk").first() or ContactPolicy()

    def get(self, request) -> Response:
        return Response(PolicySerializer(self._policy()).data)

    def put(self, request) -> Response:
        serializer = PolicySerializer(self._policy(), data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)


class TouchpointFilter(filters.FilterSet):
    # By id, not a choice (contacts.api.OrderFilter): a guide reads this API too.
    plan = filters.NumberFilter(field_name="plan_id")
    step = filters.NumberFilter(field_name="step_id")
    guide = filters.NumberFilter(field_name="guide_id")
    customer = filters.NumberFilter(field_name="customer_id")

    class Meta:
        model = Touchpoint
        fields = ["status", "reason", "plan", "step", "guide", "customer"]


class TouchpointViewSet(viewsets.ReadOnlyModelViewSet):
    """Touchpoints, newest first. Console viewers read all; a guide reads their own."""

    serializer_class = TouchpointSerializer
    permission_classes = [CanReadCustomers]
    filterset_class = TouchpointFilter

    def get_queryset(self):
        queryset = Touchpoint.objects.select_related("plan", "step", "customer", "guide")
        user = self.request.user
        if not user.has_perm(Perm.VIEW_CONSOLE):
            guide = getattr(user, "guide", None)
            if guide is None:
                return queryset.none()
            queryset = queryset.of_guide(guide)
        return queryset.order_by("-id")
