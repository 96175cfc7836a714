"""The bundled WeCom emulator in a child process on a free port, for the benchmarks that
talk to it over HTTP (as the platform talks to WeCom)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def emulator_start(*, seed: int, guides: int, customers: int) -> tuple[subprocess.Popen, int, str]:
    """Start `manage.py wecom_emulator` with this data; returns the process, its port and the
    line it prints once it serves (read here, so the emulator is ready on return)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "wecom_emulator",
            "--port",
            str(port),
            "--seed",
            str(seed),
            "--guides",
            str(guides),
            "--customers",
            str(customers),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return process, port, process.stdout.readline().strip()
