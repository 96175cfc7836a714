from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models
from django.utils.translation import pgettext_lazy

SHANGHAI = ZoneInfo("Asia/Shanghai")


class ChannelCode(models.Model):
    """A channel code (渠道活码): a WeCom 「联系我」 QR code with a `state` of its own, so every
    customer who scans it is known to have come from this source, gets its welcome
    message and tags, and enters its SOP plan."""

    class Source(models.TextChoices):
        PARCEL_CARD = "parcel_card", pgettext_lazy("ChannelCode.Source", "包裹卡")
        STORE = "store", pgettext_lazy("ChannelCode.Source", "门店")
        LIVE = "live", pgettext_lazy("ChannelCode.Source", "直播")
        EVENT = "event", pgettext_lazy("ChannelCode.Source", "线下活动")
        OTHER = "other", pgettext_lazy("ChannelCode.Source", "其他")

    class Distribution(models.TextChoices):
        ROUND_ROBIN = "round_robin", pgettext_lazy("ChannelCode.Distribution", "轮流分配")
        LEAST_LOADED = (
            "least_loaded",
            pgettext_lazy("ChannelCode.Distribution", "客户最少的导购优先"),
        )
        BY_STORE = "by_store", pgettext_lazy("ChannelCode.Distribution", "门店的导购")

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
        SENDING = "sending", pgettext_lazy("WelcomeSend.Status", "发送中")
        SENT = "sent", pgettext_lazy("WelcomeSend.Status", "已发送")
        FAILED = "failed", pgettext_lazy("WelcomeSend.Status", "失败")
        EXPIRED = "expired", pgettext_lazy("WelcomeSend.Status", "超过 20 秒")

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


class Campaign(models.Model):
    """A mass message (群发) to a segment, sent by each customer's guide through WeCom
    (add_msg_template: the guide confirms in WeCom), with an optional A/B split and a
    holdout group that receives nothing, and orders attributed to it."""

    class Status(models.TextChoices):
        DRAFT = "draft", pgettext_lazy("Campaign.Status", "草稿")
        SCHEDULED = "scheduled", pgettext_lazy("Campaign.Status", "待发送")
        SENDING = "sending", pgettext_lazy("Campaign.Status", "发送中")
        SENT = "sent", pgettext_lazy("Campaign.Status", "已交给导购")
        CANCELLED = "cancelled", pgettext_lazy("Campaign.Status", "已取消")

    name = models.CharField("名称", max_length=100)
    segment = models.JSONField("人群条件")  # tagging's rule language
    text = models.TextField("内容 A", blank=True)
    text_b = models.TextField("内容 B（A/B 测试）", blank=True)
    attachments = models.JSONField(default=list, blank=True)
    holdout_percent = models.PositiveSmallIntegerField("对照组比例 %", default=0)
    schedule_at = models.DateTimeField("发送时间", null=True, blank=True)
    attribution_days = models.PositiveSmallIntegerField("归因窗口（天）", default=7)
    cost = models.DecimalField("成本（元）", max_digits=12, decimal_places=2, default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    prepared_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "群发活动"
        verbose_name_plural = "群发活动"

    def __str__(self) -> str:
        return self.name


class CampaignRecipient(models.Model):
    """One customer of a campaign: their guide, variant, and what happened to them."""

    class Variant(models.TextChoices):
        A = "a", "A"
        B = "b", "B"
        HOLDOUT = "holdout", pgettext_lazy("CampaignRecipient.Variant", "对照组")

    class Status(models.TextChoices):
        TARGETED = "targeted", pgettext_lazy("CampaignRecipient.Status", "待发送")
        HELD = "held", pgettext_lazy("CampaignRecipient.Status", "被拦截")
        QUEUED = "queued", pgettext_lazy("CampaignRecipient.Status", "待导购确认")
        SENT = "sent", pgettext_lazy("CampaignRecipient.Status", "已送达")
        NOT_FRIEND = "not_friend", pgettext_lazy("CampaignRecipient.Status", "已不是好友")
        OVER_LIMIT = "over_limit", pgettext_lazy("CampaignRecipient.Status", "超过企业微信接收上限")
        HOLDOUT = "holdout", pgettext_lazy("CampaignRecipient.Status", "对照组（不发送）")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    customer = models.ForeignKey("contacts.Customer", on_delete=models.CASCADE, related_name="+")
    guide = models.ForeignKey("contacts.Guide", on_delete=models.CASCADE, related_name="+")
    variant = models.CharField(max_length=8, choices=Variant.choices)
    status = models.CharField(max_length=12, choices=Status.choices)
    reason = models.CharField(max_length=40, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "群发对象"
        verbose_name_plural = "群发对象"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "customer"], name="recipient_unique")
        ]
        indexes = [
            models.Index(fields=["campaign", "guide", "variant"], name="recipient_guide_idx"),
            models.Index(fields=["customer", "sent_at"], name="recipient_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.customer_id} {self.status}"


class CampaignMessage(models.Model):
    """One add_msg_template call: a guide's recipients of one variant (≤ 10,000). Created
    as `sending` and committed before the call, so a retry never sends it twice."""

    class Status(models.TextChoices):
        SENDING = "sending", pgettext_lazy("CampaignMessage.Status", "发送中")
        CREATED = "created", pgettext_lazy("CampaignMessage.Status", "待导购确认")
        CONFIRMED = "confirmed", pgettext_lazy("CampaignMessage.Status", "导购已发送")
        FAILED = "failed", pgettext_lazy("CampaignMessage.Status", "失败")
        UNKNOWN = "unknown", pgettext_lazy("CampaignMessage.Status", "结果未知")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="messages")
    guide = models.ForeignKey("contacts.Guide", on_delete=models.CASCADE, related_name="+")
    variant = models.CharField(max_length=8)
    part = models.PositiveIntegerField(default=0)  # the n-th 10,000 of this guide
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SENDING)
    msgid = models.CharField(max_length=64, blank=True)
    recipients = models.IntegerField(default=0)
    reminders = models.IntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "群发任务"
        verbose_name_plural = "群发任务"
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "guide", "variant", "part"], name="campaign_message_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.guide_id}:{self.variant} {self.status}"


class GroupSchedule(models.Model):
    """A group SOP (群 SOP): a message for chosen customer groups at a time slot — once,
    every day or on chosen weekdays (Asia/Shanghai) — sent by each group's owner through
    WeCom (add_msg_template with chat_type group: the owner confirms in WeCom)."""

    class Repeat(models.TextChoices):
        ONCE = "once", pgettext_lazy("GroupSchedule.Repeat", "一次")
        DAILY = "daily", pgettext_lazy("GroupSchedule.Repeat", "每天")
        WEEKLY = "weekly", pgettext_lazy("GroupSchedule.Repeat", "每周")

    name = models.CharField("名称", max_length=100)
    text = models.TextField("内容", blank=True)
    attachments = models.JSONField(default=list, blank=True)  # as a campaign's
    groups = models.ManyToManyField("contacts.CustomerGroup", related_name="+")
    repeat = models.CharField("重复", max_length=8, choices=Repeat.choices)
    send_at = models.DateTimeField("发送时间", null=True, blank=True)  # once
    slot_time = models.TimeField("每次发送时刻", null=True, blank=True)  # daily / weekly
    weekdays = models.JSONField(default=list, blank=True)  # weekly: ISO weekdays, 1 = Monday
    is_active = models.BooleanField("启用", default=True)
    # Slots before this are never sent: saving or enabling a schedule does not send
    # the slots it missed.
    active_since = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "群 SOP"
        verbose_name_plural = "群 SOP"

    def __str__(self) -> str:
        return self.name

    def _slot_on(self, day: date) -> datetime | None:
        if self.repeat == self.Repeat.WEEKLY and day.isoweekday() not in self.weekdays:
            return None
        return datetime.combine(day, self.slot_time, tzinfo=SHANGHAI)

    def latest_slot(self, now: datetime) -> datetime | None:
        """The latest slot at or before `now`, if it is not before `active_since`."""
        if self.repeat == self.Repeat.ONCE:
            slot = self.send_at
        else:
            today = now.astimezone(SHANGHAI).date()
            slots = (self._slot_on(today - timedelta(days=back)) for back in range(8))
            slot = next((s for s in slots if s is not None and s <= now), None)
        if slot is None or slot > now or slot < self.active_since:
            return None
        return slot

    def next_slot(self, now: datetime) -> datetime | None:
        """The first slot after `now` (None: a one-off already past)."""
        if self.repeat == self.Repeat.ONCE:
            return self.send_at if self.send_at and self.send_at > now else None
        today = now.astimezone(SHANGHAI).date()
        slots = (self._slot_on(today + timedelta(days=ahead)) for ahead in range(8))
        return next((s for s in slots if s is not None and s > now), None)


class GroupSend(models.Model):
    """One slot of a group SOP for one group owner: one add_msg_template (chat_type group)
    with the owner's groups. Created as `sending` and committed before the call, so a
    slot goes out once per owner however often the dispatch runs."""

    class Status(models.TextChoices):
        SENDING = "sending", pgettext_lazy("GroupSend.Status", "发送中")
        CREATED = "created", pgettext_lazy("GroupSend.Status", "待群主确认")
        CONFIRMED = "confirmed", pgettext_lazy("GroupSend.Status", "群主已发送")
        OWNER_LEFT = "owner_left", pgettext_lazy("GroupSend.Status", "群主已离职")
        FAILED = "failed", pgettext_lazy("GroupSend.Status", "失败")
        UNKNOWN = "unknown", pgettext_lazy("GroupSend.Status", "结果未知")

    schedule = models.ForeignKey(GroupSchedule, on_delete=models.CASCADE, related_name="sends")
    occurrence = models.DateTimeField()  # the slot
    owner_userid = models.CharField(max_length=64)
    chat_ids = models.JSONField(default=list)  # the owner's groups handed to WeCom
    refused = models.JSONField(default=list)  # groups not sent to: dismissed, or WeCom's fail_list
    # groups held back: they had this month's quota of WeCom group messages already
    over_limit = models.JSONField(default=list)
    # chat_id → get_groupmsg_send_result's status: 1 sent, 2 failed, 3 over WeCom's limit
    results = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SENDING)
    msgid = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-occurrence", "owner_userid"]
        verbose_name = "群 SOP 发送"
        verbose_name_plural = "群 SOP 发送"
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "occurrence", "owner_userid"], name="group_send_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id}@{self.occurrence:%Y-%m-%d %H:%M}:{self.owner_userid}"
