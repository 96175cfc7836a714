from django.contrib import admin

from scrm.models import CallbackEvent, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "beat_at")


@admin.register(CallbackEvent)
class CallbackEventAdmin(admin.ModelAdmin):
    list_display = ("event", "change_type", "status", "attempts", "received_at")
    list_filter = ("status", "event")
    readonly_fields = ("key", "payload")
