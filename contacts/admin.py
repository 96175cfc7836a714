from django.contrib import admin

from contacts.models import Guide, Store


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "city", "wecom_department_id")
    search_fields = ("code", "name", "city")


@admin.register(Guide)
class GuideAdmin(admin.ModelAdmin):
    list_display = ("wecom_userid", "name", "store", "user", "is_active")
    list_filter = ("is_active", "store")
    search_fields = ("wecom_userid", "name")
    raw_id_fields = ("user",)
