from datetime import time

from django.conf import settings
from django.db import models
from django.utils.translation import pgettext_lazy


class ContactPolicy(models.Model):
    """The brand's rules for not flooding customers (无价值不打扰), one row.

    Touches it holds back are recorded as suppressed with the reason."""

    max_per_day = models.PositiveSmallIntegerField("每位客户每天最多触达", default=1)
    max_per_week = models.PositiveSmallIntegerField("每位客户每周最多触达", default=3)
    quiet_start = models.TimeField("免打扰开始", default=time(21, 30))
    quiet_end = models.TimeField("免打扰结束", default=time(9, 0))
    complaint_tag = models.ForeignKey(
        "tagging.Tag",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="投诉标签",
    )
    complaint_days = models.PositiveSmallIntegerField("投诉后多少天内不触达", default=30)
    morning_reminder_at = models.TimeField("每日提醒时间", default=time(9, 30))
    overdue_after_minutes = models.PositiveIntegerField("到期多少分钟后算逾期", default=120)
    escalate_after_minutes = models.PositiveIntegerField("逾期多少分钟后上报店长", default=360)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "触达规则"
        verbose_name_plural = "触达规则"

    def __str__(self) -> str:
        return f"≤{self.max_per_day}/天 ≤{self.max_per_week}/周"

    @classmethod
    def current(cls) -> "ContactPolicy":
        policy = cls.objects.order_by("pk").first()
        return policy or cls.objects.create()


class SopPlan(models.Model):
    """An SOP plan: when a customer enters it (trigger, audience), what the guide does
    and when (steps), and when the customer leaves it (stop conditions)."""

    class Trigger(models.TextChoices):
        CONTACT_ADDED = "contact_added", pgettext_lazy("SopPlan.Trigger", "添加为企业微信好友")
        FIRST_ORDER = "first_order", pgettext_lazy("SopPlan.Trigger", "首次下单")
        PAID_ORDER = "paid_order", pgettext_lazy("SopPlan.Trigger", "每次支付订单")
        TAG_ADDED = "tag_added", pgettext_lazy("SopPlan.Trigger", "被打上标签")
        DAYS_SINCE_PURCHASE = (
            "days_since_purchase",
            pgettext_lazy("SopPlan.Trigger", "距最近购买 N 天"),
        )
        REPURCHASE_DUE = "repurchase_due", pgettext_lazy("SopPlan.Trigger", "到了复购周期")
        BIRTHDAY = "birthday", pgettext_lazy("SopPlan.Trigger", "生日")
        MANUAL = "manual", pgettext_lazy("SopPlan.Trigger", "手动加入")

    name = models.CharField("名称", max_length=100)
    description = models.CharField("说明", max_length=300, blank=True)
    trigger = models.CharField("触发条件", max_length=32, choices=Trigger.choices)
    # contact_added: {"state": "pkg_card"} ("" = any); tag_added: {"tag": id};
    # days_since_purchase: {"days": 30}
    trigger_params = models.JSONField(default=dict, blank=True)
    audience = models.JSONField("人群条件", null=True, blank=True)  # tagging's rule language
    priority = models.IntegerField("优先级", default=0)  # higher wins the day's one touch
    is_active = models.BooleanField("启用", default=True)
    stop_on_purchase = models.BooleanField("客户下单后停止", default=False)
    stop_on_contact_deleted = models.BooleanField("删除好友后停止", default=True)
    stop_on_tag_added = models.ForeignKey(
        "tagging.Tag", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    stop_on_tag_removed = models.ForeignKey(
        "tagging.Tag", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Enrolment considers only events from this moment on (a new plan does not reach
    # back over years of orders).
    started_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-priority", "pk"]
        verbose_name = "SOP 计划"
        verbose_name_plural = "SOP 计划"

    def __str__(self) -> str:
        return self.name


class SopStep(models.Model):
    """One step of a plan: an offset from the trigger, a send window, an action, content."""

    class Action(models.TextChoices):
        MESSAGE = "message", pgettext_lazy("SopStep.Action", "一对一消息")
        MOMENTS_LIKE = "moments_like", pgettext_lazy("SopStep.Action", "朋友圈点赞")
        MOMENTS_COMMENT = "moments_comment", pgettext_lazy("SopStep.Action", "朋友圈评论")
        GROUP_INVITE = "group_invite", pgettext_lazy("SopStep.Action", "邀请进群")
        CALL = "call", pgettext_lazy("SopStep.Action", "电话回访")

    plan = models.ForeignKey(SopPlan, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    offset_days = models.PositiveIntegerField("第几天", default=0)
    offset_hours = models.PositiveIntegerField("之后几小时", default=0)
    window_start = models.TimeField("发送窗口开始", default=time(10, 0))
    window_end = models.TimeField("发送窗口结束", default=time(21, 0))
    action = models.CharField("动作", max_length=20, choices=Action.choices, default=Action.MESSAGE)
    script = models.TextField("话术", blank=True)
    # [{"type": "image"|"link"|"miniprogram", "title": …, "url": …, "pic_url": …, "appid": …}]
    attachments = models.JSONField(default=list, blank=True)
    is_automatic = models.BooleanField("自动发送", default=False)
    # Removed from the plan in the editor: no longer shown there nor scheduled; kept (with
    # its position) for the numbers of the touchpoints it already had.
    is_retired = models.BooleanField("已删除", default=False)

    class Meta:
        ordering = ["plan", "position"]
        verbose_name = "SOP 步骤"
        verbose_name_plural = "SOP 步骤"
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "position"],
                condition=models.Q(is_retired=False),
                name="sop_step_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(window_start__lt=models.F("window_end")),
                name="sop_step_window",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan_id}#{self.position}"


class Enrollment(models.Model):
    """A customer in a plan for one firing of its trigger, with the guide who acts."""

    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("Enrollment.Status", "进行中")
        STOPPED = "stopped", pgettext_lazy("Enrollment.Status", "已停止")

    plan = models.ForeignKey(SopPlan, on_delete=models.CASCADE, related_name="enrollments")
    customer = models.ForeignKey("contacts.Customer", on_delete=models.CASCADE, related_name="+")
    guide = models.ForeignKey("contacts.Guide", on_delete=models.CASCADE, related_name="+")
    trigger_key = models.CharField(max_length=100)
    triggered_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    stopped_reason = models.CharField(max_length=32, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "SOP 参与"
        verbose_name_plural = "SOP 参与"
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "customer", "trigger_key"], name="enrollment_unique"
            )
        ]
        indexes = [models.Index(fields=["customer"], name="enrollment_customer_idx")]

    def __str__(self) -> str:
        return f"{self.plan_id}:{self.customer_id}:{self.trigger_key}"


class TouchpointQuerySet(models.QuerySet):
    def followed(self) -> "TouchpointQuerySet":
        """Touchpoints whose guide still follows the customer (a live relationship): the
        ones guides see, so every list and count of a guide's tasks reads these (a
        customer who deleted the guide, or was transferred away, is no longer theirs).
        One lookup of relationship_unique (customer, guide) per touchpoint."""
        from contacts.models import Relationship

        return self.filter(
            models.Exists(
                Relationship.objects.filter(
                    customer=models.OuterRef("customer_id"),
                    guide=models.OuterRef("guide_id"),
                    is_active=True,
                )
            )
        )

    @staticmethod
    def awake(now) -> models.Q:
        """Not snoozed (any more) at `now`: the tasks to do now, that lists and reminders
        count as open and may call overdue."""
        return models.Q(snoozed_until__isnull=True) | models.Q(snoozed_until__lte=now)

    def of_guide(self, guide) -> "TouchpointQuerySet":
        """A guide's touchpoints of the customers they still follow: all the guide may see."""
        return self.filter(guide=guide).followed()


class Touchpoint(models.Model):
    """One planned contact of one customer by one guide at one time, for one reason
    (DESIGN.md, "Touchpoint"); a task once due and handed to the guide."""

    class Status(models.TextChoices):
        PLANNED = "planned", pgettext_lazy("Touchpoint.Status", "待触达")
        TASK = "task", pgettext_lazy("Touchpoint.Status", "待办")
        DONE = "done", pgettext_lazy("Touchpoint.Status", "已完成")
        SKIPPED = "skipped", pgettext_lazy("Touchpoint.Status", "已跳过")
        EXPIRED = "expired", pgettext_lazy("Touchpoint.Status", "已过期")
        SUPPRESSED = "suppressed", pgettext_lazy("Touchpoint.Status", "被规则拦截")
        STOPPED = "stopped", pgettext_lazy("Touchpoint.Status", "已停止")

    # Every status change of a touchpoint writes an entry into each of its indexes whose
    # predicate the new row meets (the status is indexed: no HOT update); at a million
    # touchpoints a day that is most of the dispatch's cost (each full index about 15% of
    # it). So: the foreign keys covered by a composite index have no index of their own,
    # enrollment (touchpoint_unique), customer (touchpoint_customer_idx); a plan's
    # touchpoints are read through its steps (the step index); and plan and guide have no
    # index here at all: deleting a plan or a guide (admin only; plans are paused, guides
    # deactivated) scans the touchpoints.
    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="touchpoints", db_index=False
    )
    step = models.ForeignKey(SopStep, on_delete=models.CASCADE, related_name="touchpoints")
    # Copied from the enrollment and plan so the dispatch and the task list read one table.
    plan = models.ForeignKey(SopPlan, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(
        "contacts.Customer", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    guide = models.ForeignKey(
        "contacts.Guide", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    priority = models.IntegerField(default=0)
    due_at = models.DateTimeField()
    window_ends_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLANNED)
    reason = models.CharField(max_length=200, blank=True)  # why suppressed / skipped / stopped
    task_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)

    objects = TouchpointQuerySet.as_manager()

    class Meta:
        verbose_name = "触达点"
        verbose_name_plural = "触达点"
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step"], name="touchpoint_unique")
        ]
        indexes = [
            # The dispatch: planned rows in the order it claims them (due time, then id:
            # read in order, no sort of the rows due at the same minute), nothing else.
            models.Index(
                fields=["due_at", "id"],
                name="touchpoint_due_idx",
                condition=models.Q(status="planned"),
            ),
            # The guide's list of open tasks, and their expiry sweep.
            models.Index(
                fields=["guide", "due_at"],
                name="touchpoint_task_idx",
                condition=models.Q(status="task"),
            ),
            models.Index(
                fields=["window_ends_at"],
                name="touchpoint_open_idx",
                condition=models.Q(status="task"),
            ),
            # A customer's touchpoints and, by task_at, the touches given today and this
            # week (the caps).
            models.Index(fields=["customer", "task_at"], name="touchpoint_customer_idx"),
            # What guides did (task list, leaderboard): written when a task is done or
            # skipped, not when the dispatch gives or holds back a touch.
            models.Index(
                fields=["guide", "done_at"],
                name="touchpoint_done_idx",
                condition=models.Q(status__in=["done", "skipped"]),
            ),
        ]

    def __str__(self) -> str:
        return f"touchpoint {self.pk} ({self.status})"


class AutomaticSend(models.Model):
    """An automatic step sent through WeCom (add_msg_template): committed as `sending`
    before the call, so a retry never sends twice."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("AutomaticSend.Status", "待发送")
        SENDING = "sending", pgettext_lazy("AutomaticSend.Status", "发送中")
        SENT = "sent", pgettext_lazy("AutomaticSend.Status", "已创建群发")
        CONFIRMED = "confirmed", pgettext_lazy("AutomaticSend.Status", "已送达")
        FAILED = "failed", pgettext_lazy("AutomaticSend.Status", "失败")
        UNKNOWN = "unknown", pgettext_lazy("AutomaticSend.Status", "结果未知")
        UNCONFIRMED = (
            "unconfirmed",
            pgettext_lazy("AutomaticSend.Status", "未确认发送"),
        )  # no result within SOP_SEND_RESULT_DAYS
        CANCELLED = "cancelled", pgettext_lazy("AutomaticSend.Status", "已取消")  # stopped first

    touchpoint = models.OneToOneField(Touchpoint, on_delete=models.CASCADE, related_name="send")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    msgid = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "自动发送"
        verbose_name_plural = "自动发送"

    def __str__(self) -> str:
        return f"send {self.touchpoint_id} {self.status}"


class OptOut(models.Model):
    """A customer who asked not to be contacted: no SOP touch reaches them."""

    customer = models.OneToOneField("contacts.Customer", on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "拒绝触达"
        verbose_name_plural = "拒绝触达"

    def __str__(self) -> str:
        return str(self.customer_id)


class GuideReminder(models.Model):
    """A WeCom app message sent to a guide (morning list, overdue) or their store manager
    (escalation): how reminders are kept to one per guide per half hour."""

    class Kind(models.TextChoices):
        MORNING = "morning", pgettext_lazy("GuideReminder.Kind", "每日任务")
        OVERDUE = "overdue", pgettext_lazy("GuideReminder.Kind", "逾期提醒")
        ESCALATION = "escalation", pgettext_lazy("GuideReminder.Kind", "上报店长")

    guide = models.ForeignKey("contacts.Guide", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    recipient = models.CharField(max_length=64)  # the WeCom userid messaged
    tasks = models.IntegerField()
    sent_at = models.DateTimeField()
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "导购提醒"
        verbose_name_plural = "导购提醒"
        indexes = [models.Index(fields=["guide", "kind", "-sent_at"], name="reminder_guide_idx")]

    def __str__(self) -> str:
        return f"{self.kind} → {self.recipient}"


class TriggerPending(models.Model):
    """Customers whose facts changed (new orders): checked for order triggers soon after."""

    customer_id = models.BigIntegerField(primary_key=True)
    marked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "待检查触发"
        verbose_name_plural = "待检查触发"

    def __str__(self) -> str:
        return str(self.customer_id)


class TouchpointMergeMove(models.Model):
    """The touchpoints and enrolments a customer merge moved to the kept customer, and the
    moved open touchpoints it stopped as duplicates, so undoing the merge puts them back
    exactly."""

    merge = models.OneToOneField(
        "contacts.CustomerMerge", on_delete=models.CASCADE, related_name="+"
    )
    touchpoint_ids = models.JSONField(default=list)
    enrollment_ids = models.JSONField(default=list)
    stopped = models.JSONField(default=list)  # [touchpoint id, status, reason] before the merge

    class Meta:
        verbose_name = "合并移动的触达点"
        verbose_name_plural = "合并移动的触达点"

    def __str__(self) -> str:
        return f"merge {self.merge_id}"
