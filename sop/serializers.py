from datetime import time

from django import forms
from django.utils.translation import gettext as _
from rest_framework import serializers

from sop.forms import MAX_SCRIPT, MAX_STEPS, POLICY_FIELDS, attachments_clean, policy_problems
from sop.models import ContactPolicy, SopPlan, SopStep, Touchpoint
from tagging.models import Tag


class StepSerializer(serializers.ModelSerializer):
    class Meta:
        model = SopStep
        fields = [
            "id",
            "position",
            "offset_days",
            "offset_hours",
            "window_start",
            "window_end",
            "action",
            "script",
            "attachments",
            "is_automatic",
        ]


class StepWriteSerializer(serializers.Serializer):
    """A step as plan_save takes it: with the `id` of one of the plan's steps, that step
    (kept with its numbers); without, a new step. The action and the window's order are
    checked by plan_save (a 400 with its reason), not here."""

    id = serializers.IntegerField(required=False, allow_null=True)
    offset_days = serializers.IntegerField(min_value=0, max_value=3650, default=0)
    offset_hours = serializers.IntegerField(min_value=0, max_value=3650, default=0)
    window_start = serializers.TimeField(default=time(10))
    window_end = serializers.TimeField(default=time(21))
    action = serializers.CharField(max_length=20, default=SopStep.Action.MESSAGE)
    script = serializers.CharField(max_length=MAX_SCRIPT, allow_blank=True, default="")
    attachments = serializers.JSONField(default=list)
    is_automatic = serializers.BooleanField(default=False)


class PlanSerializer(serializers.ModelSerializer):
    """A plan with what it achieved (`stats`, from sop.selectors.plan_stats)."""

    steps_count = serializers.IntegerField(read_only=True)
    stats = serializers.SerializerMethodField()

    class Meta:
        model = SopPlan
        fields = [
            "id",
            "name",
            "description",
            "trigger",
            "trigger_params",
            "audience",
            "priority",
            "is_active",
            "stop_on_purchase",
            "stop_on_contact_deleted",
            "stop_on_tag_added",
            "stop_on_tag_removed",
            "started_at",
            "created_at",
            "steps_count",
            "stats",
        ]

    def get_stats(self, plan: SopPlan) -> dict:
        stats = self.context.get("stats", {}).get(plan.pk)
        return stats.as_dict() if stats is not None else {}


class PlanDetailSerializer(PlanSerializer):
    steps = StepSerializer(many=True, read_only=True)

    class Meta(PlanSerializer.Meta):
        fields = [*PlanSerializer.Meta.fields, "steps"]


class PlanWriteSerializer(serializers.Serializer):
    """A plan to create or change through sop.services.plan_save; the steps replace the
    plan's steps as given (position = order in the list; the plan's steps left out are
    retired)."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=300, allow_blank=True, default="")
    trigger = serializers.CharField(max_length=32)
    trigger_params = serializers.JSONField(default=dict)
    audience = serializers.JSONField(allow_null=True, default=None)
    priority = serializers.IntegerField(min_value=-1000, max_value=1000, default=0)
    is_active = serializers.BooleanField(default=True)
    stop_on_purchase = serializers.BooleanField(default=False)
    stop_on_contact_deleted = serializers.BooleanField(default=True)
    stop_on_tag_added = serializers.PrimaryKeyRelatedField(
        queryset=Tag.objects.all(), allow_null=True, default=None
    )
    stop_on_tag_removed = serializers.PrimaryKeyRelatedField(
        queryset=Tag.objects.all(), allow_null=True, default=None
    )
    steps = StepWriteSerializer(many=True)

    def validate_trigger_params(self, value) -> dict:
        """Only the parameters a trigger reads, in their types: `state` (text), `tag` (an
        existing tag's id), `days` (an integer; plan_save says when it must be > 0)."""
        if not isinstance(value, dict):
            raise serializers.ValidationError(_("应是一个 JSON 对象。"))
        params = {}
        if "state" in value:
            params["state"] = str(value["state"] or "")[:64]
        if value.get("tag") not in (None, ""):
            tag = value["tag"]
            if not str(tag).isdecimal() or not Tag.objects.filter(pk=int(tag)).exists():
                raise serializers.ValidationError(_("找不到标签：%(tag)s") % {"tag": tag})
            params["tag"] = int(tag)
        if value.get("days") not in (None, ""):
            try:
                params["days"] = int(value["days"])
            except (TypeError, ValueError):
                raise serializers.ValidationError(_("days 应是整数。")) from None
        return params

    def validate_audience(self, value):
        # The visual builder's empty group is no condition at all.
        return None if value in ({}, {"all": []}) else value

    def validate_steps(self, value: list) -> list:
        if len(value) > MAX_STEPS:
            raise serializers.ValidationError(_("一个计划最多 %(n)s 个步骤。") % {"n": MAX_STEPS})
        for number, step in enumerate(value, start=1):
            try:
                step["attachments"] = attachments_clean(step.get("attachments"), number)
            except forms.ValidationError as error:
                raise serializers.ValidationError(error.messages) from None
        return value


class EnrollRequestSerializer(serializers.Serializer):
    customer_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=100_000
    )


class EnrollResultSerializer(serializers.Serializer):
    enrolled = serializers.IntegerField()


class PolicySerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactPolicy
        fields = ["id", *POLICY_FIELDS, "updated_at"]
        read_only_fields = ["id", "updated_at"]

    def validate(self, attrs: dict) -> dict:
        values = {name: getattr(self.instance, name, None) for name in POLICY_FIELDS}
        values.update(attrs)
        problems = policy_problems(values)
        if problems:
            errors: dict[str, list[str]] = {}
            for name, reason in problems:
                errors.setdefault(name, []).append(reason)
            raise serializers.ValidationError(errors)
        return attrs


class TouchpointSerializer(serializers.ModelSerializer):
    plan_name = serializers.CharField(source="plan.name", read_only=True)
    step_position = serializers.IntegerField(source="step.position", read_only=True)
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    guide_name = serializers.CharField(source="guide.name", read_only=True)

    class Meta:
        model = Touchpoint
        fields = [
            "id",
            "plan",
            "plan_name",
            "step",
            "step_position",
            "customer",
            "customer_name",
            "guide",
            "guide_name",
            "status",
            "reason",
            "due_at",
            "window_ends_at",
            "task_at",
            "done_at",
        ]
