"""python manage.py retag [--full] [--json] [--inline]

Evaluates tags: with --full every rule and system segment over every customer,
otherwise the customers queued since the last run (incremental). Runs on the
`tagging` queue and waits for the result, or in this process with --inline.
Prints per-tag counts added, removed and total, and seconds.
"""

import json

from django.core.management.base import BaseCommand

from tagging import services, tasks


class Command(BaseCommand):
    help = "Evaluate tag rules and system tags (full or incremental)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--full", action="store_true", help="every customer, every rule")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--inline", action="store_true", help="run here, not on a worker")

    def handle(self, *args, **options) -> None:
        if options["inline"]:
            summary = services.retag_full() if options["full"] else services.retag_pending()
            result = summary.as_dict()
        else:
            task = tasks.retag_full_task if options["full"] else tasks.retag_pending
            result = task.delay().get(timeout=3600)
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
            return
        kind = "全量" if options["full"] else "增量"
        self.stdout.write(f"{kind}重算标签：{result['seconds']} 秒")
        for row in result["tags"]:
            if row["added"] or row["removed"] or options["full"]:
                self.stdout.write(
                    f"  {row['tag']}: +{row['added']} -{row['removed']} = {row['total']}"
                )
        for rule, reason in result["errors"].items():
            self.stderr.write(f"  规则 {rule} 未执行：{reason}")
