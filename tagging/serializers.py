from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from tagging.models import CustomerTag, CustomerTagEvent, Tag, TagGroup, TagRule
from tagging.selectors import editable_groups


class TagGroupSerializer(serializers.ModelSerializer):
    class Meta:
        model = TagGroup
        fields = ["id", "name", "system_key", "order"]
        read_only_fields = ["system_key"]


class _EditableGroupField(serializers.PrimaryKeyRelatedField):
    """A group operators may put tags in (not a system or WeCom group): another group is
    refused by name, not as one that does not exist."""

    default_error_messages = {
        "not_editable": _("「{name}」是系统或企业微信的标签组，不能放入自建标签，请选其他组。")
    }

    def get_queryset(self):
        return TagGroup.objects.all()

    def to_internal_value(self, data):
        group = super().to_internal_value(data)
        if not editable_groups().filter(pk=group.pk).exists():
            self.fail("not_editable", name=group.name)
        return group


class TagSerializer(serializers.ModelSerializer):
    """A tag with how many customers carry it; created through the API as a manual tag."""

    group = _EditableGroupField()
    group_name = serializers.CharField(source="group.name", read_only=True)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", default="#1677ff")
    # Annotated by selectors.tags_with_counts; a tag just created carries no one.
    customers = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Tag
        fields = [
            "id",
            "group",
            "group_name",
            "name",
            "color",
            "source",
            "description",
            "wecom_tag_id",
            "customers",
        ]
        read_only_fields = ["source", "wecom_tag_id"]

    def validate_color(self, value: str) -> str:
        return value.lower()


class TagRuleSerializer(serializers.ModelSerializer):
    """A rule tag: its tag's name, group and colour, and the rule's condition. Written
    through tagging.services.rule_save (the view), which validates the condition."""

    name = serializers.CharField(source="tag.name", max_length=30)
    group = _EditableGroupField(source="tag.group")
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", source="tag.color", default="#1677ff")
    condition = serializers.JSONField()

    def validate_color(self, value: str) -> str:
        return value.lower()

    class Meta:
        model = TagRule
        fields = [
            "id",
            "tag",
            "name",
            "group",
            "color",
            "condition",
            "is_active",
            "audience",
            "evaluated_at",
            "updated_at",
        ]
        read_only_fields = ["tag", "audience", "evaluated_at", "updated_at"]


class RulePreviewRequestSerializer(serializers.Serializer):
    condition = serializers.JSONField()


class PreviewCustomerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    purchase_days = serializers.IntegerField()
    net_revenue = serializers.CharField()
    last_purchase_on = serializers.DateField(allow_null=True)


class RulePreviewSerializer(serializers.Serializer):
    audience = serializers.IntegerField()
    sample = PreviewCustomerSerializer(many=True)


class CustomerTagSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="tag.id")
    name = serializers.CharField(source="tag.name")
    group = serializers.IntegerField(source="tag.group_id")
    group_name = serializers.CharField(source="tag.group.name")
    color = serializers.CharField(source="tag.color")
    source = serializers.CharField(source="tag.source")

    class Meta:
        model = CustomerTag
        fields = ["id", "name", "group", "group_name", "color", "source", "added_at"]


class CustomerTagEventSerializer(serializers.ModelSerializer):
    tag_name = serializers.CharField(source="tag.name")
    group_name = serializers.CharField(source="tag.group.name")
    by = serializers.CharField(source="by.username", allow_null=True, default=None)

    class Meta:
        model = CustomerTagEvent
        fields = ["at", "action", "tag", "tag_name", "group_name", "cause", "by"]


class CustomerTagsSerializer(serializers.Serializer):
    """One customer's tags now, and their latest changes (newest first)."""

    customer = serializers.IntegerField()
    tags = CustomerTagSerializer(many=True)
    history = CustomerTagEventSerializer(many=True)


class CustomerTagChangeSerializer(serializers.Serializer):
    tag = serializers.IntegerField()
