from celery import shared_task

from analytics import weekly
from scrm.wecom.gateway import WeComGateway

DELIVERY_RETRIES = 5
DELIVERY_RETRY_SECONDS = 300


@shared_task(name="analytics.tasks.weekly_report", bind=True, max_retries=DELIVERY_RETRIES)
def weekly_report(self, week: str | None = None) -> dict:
    """Beat, Mondays 09:00 Shanghai: last week's report, built once and delivered. Safe
    twice: the week is unique, and sent deliveries are not sent again; failed ones make
    the task retry later."""
    week_start = weekly.week_of(week) if week else weekly.last_week()
    report, created = weekly.report_build(week_start=week_start)
    result = weekly.report_deliver(report=report, gateway=WeComGateway.for_app())
    if result.failed:
        raise self.retry(countdown=DELIVERY_RETRY_SECONDS)
    return {"week": report.week, "created": created, "sent": result.sent}
