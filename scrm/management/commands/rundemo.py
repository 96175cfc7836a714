"""Run the whole platform for a demo: web, Celery worker and beat.

Starts each part as a child process, prints the URL and the logins, and on
Ctrl-C stops everything it started. The Makefile's `demo` target prepares the
database first.
"""

import os
import signal
import subprocess
import sys
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand

from scrm.celery import Queues


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run web (gunicorn), a Celery worker and beat until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, port: int, **options) -> None:
        # Ctrl-C in a terminal, or a plain kill: both stop the whole demo (a
        # process started in the background inherits SIGINT ignored, so set it).
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _stop)
        call_command("seed_demo")
        python = sys.executable
        queues = ",".join(str(queue) for queue in Queues)
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
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "scrm",
                "worker",
                "-Q",
                queues,
                "-c",
                "2",
                "--loglevel",
                "INFO",
                "-n",
                "demo-worker@%h",
            ],
            "beat": [python, "-m", "celery", "-A", "scrm", "beat", "--loglevel", "INFO"],
        }
        # Fixed argument lists built above, no shell: nothing untrusted reaches Popen.
        processes = {name: subprocess.Popen(command) for name, command in parts.items()}  # noqa: S603
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
