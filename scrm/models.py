import re
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy


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


class Export(models.Model):
    """A list exported as a file by a worker, for the person who asked (docs/EXPORTS.md)."""

    RETENTION = timedelta(days=7)  # then the file and the row are deleted
    FOLDER = "exports"  # the files', under MEDIA_ROOT

    class Kind(models.TextChoices):
        CUSTOMERS = "customers", pgettext_lazy("Export.Kind", "客户列表")
        TAG = "tag", pgettext_lazy("Export.Kind", "标签客户")

    class Format(models.TextChoices):
        XLSX = "xlsx", "Excel"
        CSV = "csv", "CSV"

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("Export.Status", "排队中")
        RUNNING = "running", pgettext_lazy("Export.Status", "导出中")
        SUCCEEDED = "succeeded", pgettext_lazy("Export.Status", "完成")
        FAILED = "failed", pgettext_lazy("Export.Status", "失败")

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exports"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    object_id = models.BigIntegerField(null=True, blank=True)  # the tag of a tag's export
    # A tag's name; empty for the customer list (`display_title` words it for the reader)
    title = models.CharField(max_length=200)
    query = models.TextField(blank=True)  # the page's query string: its filters and sort
    file_format = models.CharField(max_length=8, choices=Format.choices)
    language = models.CharField(max_length=16)  # the header's, as the page was shown
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows = models.IntegerField(default=0)  # written so far
    total = models.IntegerField(null=True, blank=True)
    file = models.FileField(upload_to=f"{FOLDER}/", blank=True)
    size = models.BigIntegerField(default=0)
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "导出"
        verbose_name_plural = "导出"

    def __str__(self) -> str:
        return f"export #{self.pk} {self.kind} {self.status}"

    @property
    def expires_at(self):
        return self.created_at + self.RETENTION

    @property
    def filename(self) -> str:
        """customers-20261202.xlsx, 高价值客户-20261202.csv (a tag's, by its name when
        exported): the file's name for its reader, without what a file name cannot hold."""
        name = "customers"
        if self.kind == self.Kind.TAG:
            name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", self.title).strip(" ._") or "tag"
        day = timezone.localtime(self.created_at)
        return f"{name}-{day:%Y%m%d}.{self.file_format}"

    @property
    def display_title(self) -> str:
        """What was exported, in the reader's language: a tag's name, or for the customer
        list whether it was filtered."""
        if self.title:
            return self.title
        filtered = any(v for k, v in QueryDict(self.query).items() if k != "sort")
        return gettext("筛选结果") if filtered else gettext("全部客户")

    @property
    def list_url(self) -> str:
        """The list exported, with the filters and sort it had."""
        if self.kind == self.Kind.TAG:
            path = reverse("tag_detail", args=[self.object_id])
        else:
            path = reverse("customers")
        return f"{path}?{self.query}" if self.query else path

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)
