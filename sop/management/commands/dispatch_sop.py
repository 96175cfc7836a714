"""python manage.py dispatch_sop [--now ISO8601] [--json]

One dispatch of due SOP touchpoints, in this process (the beat task does the same
every minute): counts of tasks created, suppressed by reason, stopped by reason,
expired, and seconds.
"""

import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sop.scheduling import SHANGHAI, dispatch


class Command(BaseCommand):
    help = "Turn due SOP touchpoints into guides' tasks."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--now", help="the moment to dispatch for (ISO 8601; default now)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options) -> None:
        now = timezone.now()
        if options["now"]:
            try:
                now = datetime.fromisoformat(options["now"])
            except ValueError:
                raise CommandError(f"--now 不是 ISO 8601 时间：{options['now']}") from None
            if now.tzinfo is None:
                now = now.replace(tzinfo=SHANGHAI)  # like the order files: Shanghai by default
        result = dispatch(now=now).as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
            return
        self.stdout.write(
            f"生成任务 {result['created']} 个，过期 {result['expired']} 个，"
            f"推迟到免打扰结束 {result['deferred']} 个，用时 {result['seconds']} 秒"
        )
        for label, counts in (("拦截", result["suppressed"]), ("停止", result["stopped"])):
            for reason, count in sorted(counts.items()):
                self.stdout.write(f"  {label} {reason}: {count}")
