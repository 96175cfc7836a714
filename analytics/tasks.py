from celery import shared_task

from analytics import services, weekly
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


@shared_task(
    name="analytics.tasks.refresh_dashboards",
    acks_late=True,
    soft_time_limit=1800,
    time_limit=1900,
)
def refresh_dashboards() -> dict:
    """After imports (debounced) and nightly: a new cache generation and the default views
    computed. Safe twice: a second run bumps again and computes the same numbers."""
    return services.dashboards_refresh()
