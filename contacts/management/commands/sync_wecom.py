"""python manage.py sync_wecom [--full] [--json] [--inline]

A full sync of guides, customers, relationships, corp tags and customer
groups from WeCom. By default it runs as a Celery task on the `sync` queue
and waits for it; `--inline` runs it in this process. A run left unfinished
(its worker or process killed) is resumed from its cursor instead of starting
over. `--json` prints exactly one JSON object.
"""

import json as json_module
import time

from django.core.management.base import BaseCommand, CommandError

from contacts import services
from contacts.models import SyncRun
from contacts.wecom_sync import SyncAlreadyRunning

ENTITIES = ["customers", "relationships", "guides", "tags", "groups"]


class Command(BaseCommand):
    help = "Full sync from WeCom (customers, relationships, guides, corp tags, groups)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--full", action="store_true", help="a full sync (the only kind today)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--inline", action="store_true", help="run here, not on a worker")
        parser.add_argument(
            "--timeout", type=float, default=3600, help="seconds to wait for a worker"
        )

    def handle(self, *args, inline: bool, timeout: float, **options) -> None:
        run = SyncRun.objects.filter(status=SyncRun.Status.RUNNING).order_by(
            "started_at"
        ).first() or services.sync_run_start(triggered_by="sync_wecom")
        if inline:
            try:
                run = services.sync_run_execute(run_id=run.pk)
            except SyncAlreadyRunning as error:
                raise CommandError(
                    "another sync is running; try again when it has finished"
                ) from error
        else:
            from contacts.tasks import sync_wecom

            sync_wecom.delay(run.pk)
            deadline = time.monotonic() + timeout
            while run.status == SyncRun.Status.RUNNING:
                if time.monotonic() > deadline:
                    raise CommandError(f"sync run {run.pk} still running after {timeout:.0f} s")
                time.sleep(0.5)
                run.refresh_from_db()
        summary = {name: run.counts.get(name, {}) for name in ENTITIES}
        summary.update(api_calls=run.api_calls, seconds=round(run.seconds, 3))
        if options["json"]:
            self.stdout.write(_dumps(summary))
        else:
            for name in ENTITIES:
                counts = summary[name]
                numbers = "  ".join(
                    f"{key} {counts.get(key, 0):>7}"
                    for key in ("created", "updated", "unchanged", "removed")
                )
                self.stdout.write(f"{name:14} {numbers}")
            self.stdout.write(
                f"api calls {run.api_calls}, {run.seconds:.1f} s, run #{run.pk} {run.status}"
            )
        if run.status != SyncRun.Status.SUCCEEDED:
            raise CommandError(f"sync run {run.pk} {run.status}: {run.errors[-1:]}")


def _dumps(data: dict) -> str:
    return json_module.dumps(data, ensure_ascii=False)
