from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from campaigns import group_sop, sending
from campaigns.models import Campaign
from scrm.wecom.gateway import WeComGateway


@shared_task(
    name="campaigns.tasks.send_campaign",
    acks_late=True,
    autoretry_for=(sending.CampaignBusy,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=12,
)
def send_campaign(campaign_id: int) -> dict:
    """Hand a campaign to WeCom. Safe twice and after a killed worker: one run at a time
    (another waits and retries), the campaign is claimed by a conditional UPDATE, and each
    guide's task is recorded before its call, so a task cut off mid-call is never sent
    again."""
    result = sending.campaign_send(campaign_id=campaign_id, gateway=WeComGateway.from_settings())
    return {
        "messages": result.messages,
        "recipients": result.recipients,
        "failed": result.failed,
        "unknown": result.unknown,
        "skipped": result.skipped,
    }


@shared_task(name="campaigns.tasks.send_due_campaigns")
def send_due_campaigns() -> int:
    """Beat, every minute: scheduled campaigns whose time has come."""
    due = Campaign.objects.filter(
        status=Campaign.Status.SCHEDULED, schedule_at__lte=timezone.now()
    ).values_list("pk", flat=True)
    for campaign_id in due:
        send_campaign.delay(campaign_id)
    return len(due)


@shared_task(name="campaigns.tasks.fetch_campaign_results")
def fetch_campaign_results() -> int:
    """Beat, every ten minutes: results of campaigns sent in the last 30 days (WeCom keeps
    them). Safe twice: statuses only move forward."""
    gateway = WeComGateway.from_settings()
    recent = Campaign.objects.filter(
        status=Campaign.Status.SENT, sent_at__gte=timezone.now() - timedelta(days=30)
    )
    for campaign in recent:
        sending.campaign_results(campaign=campaign, gateway=gateway)
    return recent.count()


@shared_task(name="campaigns.tasks.send_due_group_messages")
def send_due_group_messages() -> dict:
    """Beat, every minute: group SOP slots that are due, one WeCom call per group owner.
    Safe twice (two beats, a retry): each (schedule, slot, owner) is claimed by a unique
    row committed before its call, so a second run finds it and calls nothing."""
    result = group_sop.group_sends_dispatch(gateway=WeComGateway.from_settings())
    return {
        "sends": result.sends,
        "owner_left": result.owner_left,
        "failed": result.failed,
        "unknown": result.unknown,
    }


@shared_task(name="campaigns.tasks.fetch_group_message_results")
def fetch_group_message_results() -> dict:
    """Beat, every ten minutes: which groups the owners sent to, for the sends WeCom still
    keeps results of. Safe twice: statuses only move forward."""
    return group_sop.group_send_results(
        sends=group_sop.recent_sends(), gateway=WeComGateway.from_settings()
    )
