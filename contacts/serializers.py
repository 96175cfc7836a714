from rest_framework import serializers

from contacts.models import (
    Customer,
    CustomerIdentity,
    Guide,
    Order,
    OrderLine,
    Relationship,
    Store,
    SyncRun,
)
from scrm.roles import Perm


class StoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = Store
        fields = ["id", "code", "name", "city", "wecom_department_id"]


class GuideSerializer(serializers.ModelSerializer):
    class Meta:
        model = Guide
        fields = ["id", "wecom_userid", "name", "store", "is_active"]


class IdentitySerializer(serializers.ModelSerializer):
    # Phones are shown masked; the hash itself is of no use to a reader.
    value = serializers.SerializerMethodField()

    class Meta:
        model = CustomerIdentity
        fields = ["kind", "value"]

    def get_value(self, identity: CustomerIdentity) -> str:
        """The masked phone; the platforms' ids for console readers only (a guide reads
        that the customer has one, as on the guide's page)."""
        if identity.kind == CustomerIdentity.Kind.PHONE_HASH:
            return identity.display
        request = self.context.get("request")
        if request is not None and request.user.has_perm(Perm.VIEW_CONSOLE):
            return identity.value
        return ""


class RelationshipSerializer(serializers.ModelSerializer):
    guide_userid = serializers.CharField(source="guide.wecom_userid")
    guide_name = serializers.CharField(source="guide.name")

    class Meta:
        model = Relationship
        fields = [
            "guide_userid",
            "guide_name",
            "remark",
            "description",
            "added_at",
            "add_way",
            "state",
            "wecom_tag_ids",
            "is_active",
            "ended_at",
            "ended_by",
        ]

    def to_representation(self, relationship):
        """A guide gets a colleague's relationship without its notes (remark and
        description are each guide's own), as on the guide's customer page."""
        data = super().to_representation(relationship)
        request = self.context.get("request")
        if request and not request.user.has_perm(Perm.VIEW_CONSOLE):
            guide = getattr(request.user, "guide", None)
            if guide is None or relationship.guide_id != guide.pk:
                data["remark"] = data["description"] = None
        return data


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = [
            "id",
            "external_userid",
            "name",
            "type",
            "gender",
            "is_member",
            "joined_at",
            "created_at",
            "merged_into",  # set on a record merged into that customer
        ]


class CustomerDetailSerializer(CustomerSerializer):
    identities = IdentitySerializer(many=True, read_only=True)
    relationships = RelationshipSerializer(many=True, read_only=True)

    class Meta(CustomerSerializer.Meta):
        fields = [*CustomerSerializer.Meta.fields, "identities", "relationships"]


class SyncRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRun
        fields = [
            "id",
            "kind",
            "status",
            "started_at",
            "finished_at",
            "triggered_by",
            "counts",
            "api_calls",
            "seconds",
            "errors",
        ]


class OrderLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderLine
        fields = [
            "line_no",
            "sku",
            "product_name",
            "category",
            "material",
            "style",
            "quantity",
            "unit_price",
            "line_amount",
            "refund_amount",
        ]


class OrderSerializer(serializers.ModelSerializer):
    lines = OrderLineSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "channel",
            "channel_order_id",
            "parent_order_id",
            "status",
            "paid_at",
            "customer",
            "unmatched_reason",
            "buyer_name",
            "buyer_phone_masked",
            "amount",
            "refund_amount",
            "store_code",
            "guide_userid",
            "lines",
        ]


class BulkOrderLineSerializer(serializers.Serializer):
    """One order line in the generic format (DESIGN.md, "Order files"); validated by the
    same reader as the files, so the API and the files accept exactly the same rows."""

    order_id = serializers.CharField(allow_blank=True)
    channel = serializers.CharField(allow_blank=True)
    parent_order_id = serializers.CharField(required=False, allow_blank=True, default="")
    status = serializers.CharField(allow_blank=True)
    paid_at = serializers.CharField(required=False, allow_blank=True, default="")
    buyer_phone = serializers.CharField(required=False, allow_blank=True, default="")
    buyer_unionid = serializers.CharField(required=False, allow_blank=True, default="")
    buyer_id = serializers.CharField(required=False, allow_blank=True, default="")
    buyer_name = serializers.CharField(required=False, allow_blank=True, default="")
    sku = serializers.CharField(allow_blank=True)
    product_name = serializers.CharField(required=False, allow_blank=True, default="")
    category = serializers.CharField(required=False, allow_blank=True, default="")
    material = serializers.CharField(required=False, allow_blank=True, default="")
    style = serializers.CharField(required=False, allow_blank=True, default="")
    quantity = serializers.CharField()
    unit_price = serializers.CharField()
    line_amount = serializers.CharField()
    refund_amount = serializers.CharField(required=False, allow_blank=True, default="0")
    store_code = serializers.CharField(required=False, allow_blank=True, default="")
    guide_userid = serializers.CharField(required=False, allow_blank=True, default="")


BULK_LINES_MAX = 10_000  # order lines of one push


class BulkOrdersSerializer(serializers.Serializer):
    orders = BulkOrderLineSerializer(many=True, allow_empty=False, max_length=BULK_LINES_MAX)


class OrderBindSerializer(serializers.Serializer):
    customer_id = serializers.IntegerField()
    order_number = serializers.CharField(max_length=64)
