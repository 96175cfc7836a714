from django.db import models
from django.utils.translation import pgettext_lazy


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker ran the beat's heartbeat task.

    One row per worker host. /healthz reads it to tell whether beat and a
    worker are alive end to end (beat → Redis → worker → PostgreSQL).
    """

    hostname = models.CharField(max_length=255, unique=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class Access(models.Model):
    """Holder of the platform-wide permissions that make up the roles.

    No table: it exists so that the permissions below have a content type.
    The role groups (operator, guide, manager, admin) are created with these
    permissions by migration 0002; pages and the API check the permissions.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_console", "可查看运营后台（全品牌数据）"),
            ("change_console", "可在运营后台修改数据"),
            ("use_guide_app", "可使用导购任务页（仅本人客户）"),
            ("change_report_recipients", "可修改报告接收人"),
            ("connect_wecom", "可连接企业微信（查看和修改密钥）"),
        ]

    def __str__(self) -> str:
        return "platform access"


class CallbackEvent(models.Model):
    """A WeCom callback as received (decrypted), stored once, handled on a worker."""

    class Status(models.TextChoices):
        RECEIVED = "received", pgettext_lazy("CallbackEvent.Status", "已接收")
        HANDLING = "handling", pgettext_lazy("CallbackEvent.Status", "处理中")
        HANDLED = "handled", pgettext_lazy("CallbackEvent.Status", "已处理")
        FAILED = "failed", pgettext_lazy("CallbackEvent.Status", "失败")

    # Event, ChangeType, the ids and CreateTime: a replay of the same event has the same key.
    key = models.CharField(max_length=300, unique=True)
    event = models.CharField(max_length=64)
    change_type = models.CharField(max_length=64, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "回调事件"
        verbose_name_plural = "回调事件"

    def __str__(self) -> str:
        return f"{self.event}/{self.change_type} {self.status}"


class WeComSetup(models.Model):
    """The corp's WeCom credentials as an admin entered them on the setup page (one row).

    Secrets are stored encrypted (Fernet, key SCRM_ENCRYPTION_KEY) and never shown
    again in full. Without a row the platform uses the WECOM_* settings.
    """

    corp_id = models.CharField(max_length=64)
    agent_id = models.BigIntegerField()
    contact_secret = models.TextField()
    agent_secret = models.TextField()
    callback_token = models.TextField()
    callback_aes_key = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = "企业微信配置"
        verbose_name_plural = "企业微信配置"

    def __str__(self) -> str:
        return self.corp_id
