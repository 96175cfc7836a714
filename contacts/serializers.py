from rest_framework import serializers

from contacts.models import Guide, Store


class StoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = Store
        fields = ["id", "code", "name", "city", "wecom_department_id"]


class GuideSerializer(serializers.ModelSerializer):
    class Meta:
        model = Guide
        fields = ["id", "wecom_userid", "name", "store", "is_active"]
