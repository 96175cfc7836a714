from django.conf import settings
from django.db import models


class ChannelCode(models.Model):
    """A channel code (渠道活码): a WeCom 「联系我」 QR code with a `state` of its own, so every
    customer who scans it is known to have come from this source, gets its welcome
    message and tags, and enters its SOP plan."""

    class Source(models.TextChoices):
        PARCEL_CARD = "parcel_card", "包裹卡"
        STORE = "store", "门店"
        LIVE = "live", "直播"
        EVENT = "event", "线下活动"
        OTHER = "other", "其他"

    class Distribution(models.TextChoices):
        ROUND_ROBIN = "round_robin", "轮流分配"
        LEAST_LOADED = "least_loaded", "客户最少的导购优先"
        BY_STORE = "by_store", "门店的导购"

    name = models.CharField("名称", max_length=100)
    source = models.CharField("来源", max_length=16, choices=Source.choices)
    distribution = models.CharField(
        "分配方式", max_length=16, choices=Distribution.choices, default=Distribution.ROUND_ROBIN
    )
    guides = models.ManyToManyField("contacts.Guide", related_name="+", blank=True)
    store = models.ForeignKey(
        "contacts.Store", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    tags = models.ManyToManyField("tagging.Tag", related_name="+", blank=True)
    welcome_text = models.TextField("欢迎语", blank=True)
    # [{"type": "image"|"link"|"miniprogram", "title", "url", "pic_url", "appid", "page"}]
    welcome_attachments = models.JSONField(default=list, blank=True)
    sop_plan = models.ForeignKey(
        "sop.SopPlan", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cost = models.DecimalField("成本（元）", max_digits=12, decimal_places=2, default=0)
    # WeCom's side: state ≤ 30 characters comes back on every add; config_id and qr_code
    # come from add_contact_way.
    state = models.CharField(max_length=30, unique=True)
    config_id = models.CharField(max_length=64, blank=True)
    qr_code = models.URLField(max_length=500, blank=True)
    wecom_users = models.JSONField(default=list, blank=True)  # who WeCom hands adds to now
    is_active = models.BooleanField("启用", default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "渠道活码"
        verbose_name_plural = "渠道活码"

    def __str__(self) -> str:
        return self.name


class WelcomeSend(models.Model):
    """One welcome message for one add through a channel code: sent once per welcome code,
    with the time from the callback arriving to WeCom accepting it."""

    class Status(models.TextChoices):
        SENT = "sent", "已发送"
        FAILED = "failed", "失败"
        EXPIRED = "expired", "超过 20 秒"

    code = models.ForeignKey(ChannelCode, on_delete=models.CASCADE, related_name="welcomes")
    welcome_code = models.CharField(max_length=128, unique=True)
    external_userid = models.CharField(max_length=64)
    userid = models.CharField(max_length=64)
    status = models.CharField(max_length=8, choices=Status.choices)
    error = models.CharField(max_length=300, blank=True)
    callback_at = models.DateTimeField()
    sent_at = models.DateTimeField()
    latency_ms = models.IntegerField()

    class Meta:
        verbose_name = "欢迎语发送"
        verbose_name_plural = "欢迎语发送"
        indexes = [models.Index(fields=["code", "-sent_at"], name="welcome_code_idx")]

    def __str__(self) -> str:
        return f"{self.code_id} → {self.external_userid} ({self.status})"
