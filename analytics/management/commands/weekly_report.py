"""python manage.py weekly_report [--week 2026-W47] [--send] [--json]

Builds the weekly repurchase report of that ISO week (default: last week) once, and
with --send delivers it to the recipients (e-mail and WeCom app message).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from analytics import weekly
from scrm.wecom.gateway import WeComGateway


class Command(BaseCommand):
    help = "Build (and send) the weekly repurchase report."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--week", help="ISO week, e.g. 2026-W47 (default: last week)")
        parser.add_argument("--send", action="store_true", help="deliver it to the recipients")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options) -> None:
        try:
            week_start = weekly.week_of(options["week"]) if options["week"] else weekly.last_week()
        except ValueError as error:
            raise CommandError(str(error)) from None
        report, created = weekly.report_build(week_start=week_start)
        delivered = None
        if options["send"]:
            result = weekly.report_deliver(report=report, gateway=WeComGateway.for_app())
            delivered = {"sent": result.sent, "failed": result.failed}
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "week": report.week,
                        "created": created,
                        "delivered": delivered,
                        "report": report.data,
                    },
                    ensure_ascii=False,
                )
            )
            return
        self.stdout.write(f"周报 {report.week}：{'新生成' if created else '已存在'}")
        for sentence in report.data["sentences"]:
            self.stdout.write(f"  {sentence}")
        if delivered is not None:
            self.stdout.write(f"  发送成功 {delivered['sent']}，失败 {delivered['failed']}")
