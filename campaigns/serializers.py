from decimal import Decimal

from django import forms
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.forms import MAX_ATTACHMENTS, MAX_TEXT, attachments_clean, segment_clean
from campaigns.models import Campaign, ChannelCode


def _form_error(error: forms.ValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(error.messages)


class CodeStatsSerializer(serializers.Serializer):
    """campaigns.services.code_stats for one code."""

    adds = serializers.IntegerField()
    deleted_within_7d = serializers.IntegerField()
    members = serializers.IntegerField()
    eligible = serializers.IntegerField(help_text="added without having bought before")
    converted_7d = serializers.IntegerField()
    converted_30d = serializers.IntegerField()
    rate_7d = serializers.FloatField(allow_null=True)
    rate_30d = serializers.FloatField(allow_null=True)
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2)
    cost_per_member = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    welcomes = serializers.IntegerField()
    welcome_median_ms = serializers.FloatField(allow_null=True)


class ChannelCodeSerializer(serializers.ModelSerializer):
    """A channel code with its numbers (`stats`, from code_stats) and its QR image. Writes
    go through channel_code_save, which creates or changes the code in WeCom: its
    refusals (nobody to hand adds to, a tag that is not manual, a store missing, WeCom
    refusing) are a 400 with `{"detail": reason}` and keep nothing."""

    stats = serializers.SerializerMethodField()
    qr_png = serializers.HyperlinkedIdentityField(view_name="channel-code-qr")

    class Meta:
        model = ChannelCode
        fields = [
            "id",
            "name",
            "source",
            "distribution",
            "guides",
            "store",
            "tags",
            "welcome_text",
            "welcome_attachments",
            "sop_plan",
            "cost",
            "state",
            "config_id",
            "qr_code",
            "wecom_users",
            "is_active",
            "created_at",
            "stats",
            "qr_png",
        ]
        read_only_fields = [
            "state",
            "config_id",
            "qr_code",
            "wecom_users",
            "is_active",
            "created_at",
        ]
        # WeCom keeps the name as the contact way's remark: at most 30 characters.
        extra_kwargs = {
            "name": {"max_length": 30},
            "welcome_text": {"max_length": MAX_TEXT},
            "cost": {"min_value": Decimal(0)},
        }

    @extend_schema_field(CodeStatsSerializer(allow_null=True))
    def get_stats(self, code: ChannelCode) -> dict | None:
        stats = self.context.get("stats", {}).get(code.pk)
        return CodeStatsSerializer(stats).data if stats is not None else None

    def validate_welcome_attachments(self, value) -> list[dict]:
        try:
            return attachments_clean(value)
        except forms.ValidationError as error:
            raise _form_error(error) from None

    def service_arguments(self, code: ChannelCode | None) -> dict:
        """channel_code_save's fields, guide_ids and tag_ids: what was sent, the code's
        current settings for what was not (PATCH)."""
        data = dict(self.validated_data)
        guides = data.pop("guides", None)
        tags = data.pop("tags", None)
        if code is not None:
            if guides is None:
                guides = list(code.guides.all())
            if tags is None:
                tags = list(code.tags.all())
        return {
            "fields": data,
            "guide_ids": [guide.pk for guide in guides or []],
            "tag_ids": [tag.pk for tag in tags or []],
        }


class CampaignReachSerializer(serializers.Serializer):
    """Recipients by status (from campaigns.selectors.campaign_stats): matched = reach +
    held + holdout; handed = given to guides in WeCom; sent = received."""

    matched = serializers.IntegerField()
    reach = serializers.IntegerField()
    held = serializers.IntegerField()
    holdout = serializers.IntegerField()
    handed = serializers.IntegerField()
    sent = serializers.IntegerField()
    not_friend = serializers.IntegerField()
    over_limit = serializers.IntegerField()
    buyers = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2)
    roi = serializers.FloatField(allow_null=True)


class AttributionSerializer(serializers.Serializer):
    """campaigns.sending.attribution: last touch within the window, against the holdout."""

    rule = serializers.CharField()
    received = serializers.IntegerField()
    buyers = serializers.IntegerField()
    revenue = serializers.FloatField()
    conversion = serializers.FloatField(allow_null=True)
    # of all but the holdout (received or not), after the handover: the uplift's side
    targeted_conversion = serializers.FloatField(allow_null=True)
    holdout = serializers.IntegerField()
    holdout_conversion = serializers.FloatField(allow_null=True)
    uplift = serializers.FloatField(allow_null=True)
    roi = serializers.FloatField(allow_null=True)
    # with content B: received, buyers, revenue and conversion of each ("a", "b")
    variants = serializers.JSONField()


class GuideReachSerializer(serializers.Serializer):
    userid = serializers.CharField()
    name = serializers.CharField()
    reach = serializers.IntegerField()
    held = serializers.IntegerField()


class PrepareSerializer(serializers.Serializer):
    """campaigns.sending.campaign_prepare's reach: held back by reason, and per guide."""

    matched = serializers.IntegerField()
    reach = serializers.IntegerField()
    held = serializers.DictField(child=serializers.IntegerField())
    holdout = serializers.IntegerField()
    guides = GuideReachSerializer(many=True)


class SendAcceptedSerializer(serializers.Serializer):
    status = serializers.CharField()
    reach = PrepareSerializer()


class CampaignSerializer(serializers.ModelSerializer):
    """A campaign with its recipients' numbers (`reach`) and, on retrieve, what it earned
    (`attribution`; null in the list). Create and change drafts and scheduled campaigns;
    sending is `prepare/` and `send/`."""

    reach = serializers.SerializerMethodField()
    attribution = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "segment",
            "text",
            "text_b",
            "attachments",
            "holdout_percent",
            "schedule_at",
            "attribution_days",
            "cost",
            "status",
            "prepared_at",
            "sent_at",
            "created_at",
            "reach",
            "attribution",
        ]
        read_only_fields = ["status", "prepared_at", "sent_at", "created_at"]
        extra_kwargs = {
            "segment": {"help_text": "tagging's rule language"},
            "text": {"max_length": MAX_TEXT},
            "text_b": {"max_length": MAX_TEXT},
            "holdout_percent": {"min_value": 0, "max_value": 50},
            "attribution_days": {"min_value": 1, "max_value": 90},
            "cost": {"min_value": Decimal(0)},
        }

    @extend_schema_field(CampaignReachSerializer(allow_null=True))
    def get_reach(self, campaign: Campaign) -> dict | None:
        stats = self.context.get("stats", {}).get(campaign.pk)
        return CampaignReachSerializer(stats.as_dict()).data if stats is not None else None

    @extend_schema_field(AttributionSerializer(allow_null=True))
    def get_attribution(self, campaign: Campaign) -> dict | None:
        result = self.context.get("attribution", {}).get(campaign.pk)
        return AttributionSerializer(result).data if result is not None else None

    def validate_segment(self, value):
        try:
            return segment_clean(value)
        except forms.ValidationError as error:
            raise _form_error(error) from None

    def validate_attachments(self, value) -> list[dict]:
        try:
            items = attachments_clean(value)
        except forms.ValidationError as error:
            raise _form_error(error) from None
        if len(items) > MAX_ATTACHMENTS:
            raise serializers.ValidationError(_("最多 %(n)s 个附件。") % {"n": MAX_ATTACHMENTS})
        return items


class GroupStatsSerializer(serializers.Serializer):
    """One customer group's numbers in the window (campaigns.groups.group_stats)."""

    chat_id = serializers.CharField()
    name = serializers.CharField()
    owner_userid = serializers.CharField()
    owner_name = serializers.CharField()
    members = serializers.IntegerField()
    customers = serializers.IntegerField()
    size_at_start = serializers.IntegerField()
    joins = serializers.IntegerField()
    quits = serializers.IntegerField()
    quit_rate = serializers.FloatField(allow_null=True)
    buyers = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2)
