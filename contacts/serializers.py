from rest_framework import serializers

from contacts.models import Customer, CustomerIdentity, Guide, Relationship, Store, SyncRun


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
        return (
            identity.display
            if identity.kind == CustomerIdentity.Kind.PHONE_HASH
            else identity.value
        )


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
