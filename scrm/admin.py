from django.contrib import admin

from scrm.models import CallbackEvent, WeComSetup, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "beat_at")


@admin.register(CallbackEvent)
class CallbackEventAdmin(admin.ModelAdmin):
    list_display = ("event", "change_type", "status", "attempts", "received_at")
    list_filter = ("status", "event")
    readonly_fields = ("key", "payload")


@admin.register(WeComSetup)
class WeComSetupAdmin(admin.ModelAdmin):
    """Read-only here: the setup page (/settings/wecom/) encrypts and checks the secrets."""

    list_display = ("corp_id", "agent_id", "updated_at", "updated_by")
    exclude = ("contact_secret", "agent_secret", "callback_token", "callback_aes_key")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
