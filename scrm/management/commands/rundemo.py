"""Run the whole platform for a demo: the WeCom emulator, web, two Celery workers and beat.

First syncs WeCom from the emulator, creates the logins, loads demo orders, tags
every customer and gives the demo guides today's SOP tasks.

Starts each part as a child process, prints the URL and the logins, and on
Ctrl-C stops everything it started. The Makefile's `demo` target prepares the
database first.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand

from scrm.celery import HEAVY_QUEUES, LIVE_QUEUES, Queues


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answers on port {port} after {seconds:.0f} s")


def _demo_export() -> None:
    """The operator's export of a rule tag's customers, written already: 导出记录 has a file."""
    from django.contrib.auth.models import User
    from django.http import QueryDict
    from django.utils import translation

    from scrm.exports import export_request, export_run
    from scrm.models import Export
    from tagging.models import Tag

    tag = Tag.objects.filter(source=Tag.Source.RULE).select_related("group").order_by("pk").first()
    with translation.override("zh-hans"):
        export = export_request(
            user=User.objects.get(username="operator"),
            kind=Export.Kind.TAG,
            object_id=tag.pk,
            query=QueryDict(""),
            title=f"{tag.group.label} / {tag.label}",
            file_format=Export.Format.XLSX,
        )
        export_run(export_id=export.pk)


def _demo_bulk_tagging() -> None:
    """The operator's bulk tagging from the customer list, done already: the manual tag's
    page shows it with what it changed and its undo."""
    from django.contrib.auth.models import User
    from django.http import QueryDict
    from django.utils import translation

    from tagging.bulk import bulk_tagging_request, bulk_tagging_run
    from tagging.models import BulkTagging, Tag

    tag = Tag.objects.get(group__name="运营手动", name="重点维护")
    with translation.override("zh-hans"):
        bulk = bulk_tagging_request(
            user=User.objects.get(username="operator"),
            tag=tag,
            source=BulkTagging.Source.CUSTOMERS,
            query=QueryDict("revenue_min=3000"),
        )
        bulk_tagging_run(bulk_id=bulk.pk)


class Command(BaseCommand):
    help = "Run web (gunicorn), two Celery workers and beat until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, port: int, **options) -> None:
        # Ctrl-C in a terminal, or a plain kill: both stop the whole demo (a
        # process started in the background inherits SIGINT ignored, so set it).
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _stop)
        python = sys.executable
        emulator = subprocess.Popen(  # noqa: S603 - fixed arguments
            [
                python,
                "manage.py",
                "wecom_emulator",
                "--port",
                "8090",
                "--seed",
                "42",
                "--guides",
                "50",
                "--customers",
                "20000",
                "--callback-url",
                f"http://127.0.0.1:{port}/wecom/callback/",
                "--events-per-minute",
                "6",
            ]
        )
        try:
            _wait_for_port(8090)
            self.stdout.write("syncing WeCom (the bundled emulator)…")
            call_command("sync_wecom", "--full", "--inline")
            call_command("seed_demo")
            call_command(
                "seed_demo_orders", "--seed", "42", "--guides", "50", "--customers", "20000"
            )
            call_command("seed_demo_tags")
            self.stdout.write("tagging every customer…")
            call_command("retag", "--full", "--inline")
            call_command("seed_demo_sop")
            call_command("seed_demo_campaigns")
            _demo_export()
            _demo_bulk_tagging()
            call_command("weekly_report")
            from analytics.services import dashboards_refresh

            self.stdout.write("computing the dashboards and predicted LTV…")
            dashboards_refresh()
        except BaseException:
            emulator.terminate()
            raise

        def worker(name: str, queues: tuple[Queues, ...], concurrency: int) -> list[str]:
            return [
                *(python, "-m", "celery", "-A", "scrm", "worker"),
                *("-Q", ",".join(queues), "-c", str(concurrency)),
                *("--loglevel", "INFO", "-n", f"{name}@%h"),
            ]

        parts = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "scrm.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "3",
                "--access-logfile",
                "-",
            ],
            "worker": worker("demo-heavy", HEAVY_QUEUES, 2),
            "worker-live": worker("demo-live", LIVE_QUEUES, 2),
            "beat": [python, "-m", "celery", "-A", "scrm", "beat", "--loglevel", "INFO"],
        }
        # Fixed argument lists built above, no shell: nothing untrusted reaches Popen.
        processes = {name: subprocess.Popen(command) for name, command in parts.items()}  # noqa: S603
        processes["wecom-emulator"] = emulator
        password = os.environ.get("DEMO_PASSWORD", "scrm-demo-2026")
        self.stdout.write(
            self.style.SUCCESS(
                f"\nSCRM demo: http://127.0.0.1:{port}/   health: http://127.0.0.1:{port}/healthz\n"
                f"logins (password {password}): operator, manager, guide1, guide2; "
                f"Django admin: admin\nCtrl-C stops everything.\n"
            )
        )
        try:
            while all(process.poll() is None for process in processes.values()):
                time.sleep(1)
            stopped = [name for name, process in processes.items() if process.poll() is not None]
            self.stderr.write(f"{', '.join(stopped)} stopped; shutting the demo down")
        except KeyboardInterrupt:
            self.stdout.write("stopping…")
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
