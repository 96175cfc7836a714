from django.db import models
from django.utils.translation import pgettext_lazy


class WeeklyReport(models.Model):
    """The weekly repurchase report of one ISO week (Monday to Sunday, Shanghai): built
    once, kept, delivered to its recipients."""

    week = models.CharField("周", max_length=8, unique=True)  # 2026-W47
    starts_on = models.DateField()
    data = models.JSONField()
    xlsx = models.BinaryField()
    built_at = models.DateTimeField()

    class Meta:
        ordering = ["-starts_on"]
        verbose_name = "周报"
        verbose_name_plural = "周报"

    def __str__(self) -> str:
        return self.week


class ReportRecipient(models.Model):
    """Who receives the weekly report: by e-mail, by WeCom app message, or both. The one
    thing managers may change."""

    name = models.CharField("姓名", max_length=100)
    email = models.EmailField("邮箱", blank=True)
    wecom_userid = models.CharField("企业微信 UserID", max_length=64, blank=True)
    is_active = models.BooleanField("接收", default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "周报接收人"
        verbose_name_plural = "周报接收人"

    def __str__(self) -> str:
        return self.name


class ReportDelivery(models.Model):
    """One delivery of one report to one recipient on one channel, with its outcome; a
    failed one is retried and shown."""

    class Channel(models.TextChoices):
        EMAIL = "email", pgettext_lazy("ReportDelivery.Channel", "邮件")
        WECOM = "wecom", pgettext_lazy("ReportDelivery.Channel", "企业微信")

    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("ReportDelivery.Status", "待发送")
        SENT = "sent", pgettext_lazy("ReportDelivery.Status", "已发送")
        FAILED = "failed", pgettext_lazy("ReportDelivery.Status", "失败")

    report = models.ForeignKey(WeeklyReport, on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.ForeignKey(ReportRecipient, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "周报发送"
        verbose_name_plural = "周报发送"
        constraints = [
            models.UniqueConstraint(
                fields=["report", "recipient", "channel"], name="report_delivery_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.report_id} → {self.recipient_id} ({self.channel})"
