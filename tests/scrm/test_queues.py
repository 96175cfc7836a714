"""Every queue has a worker in docker compose, the heavy queues and the interactive ones
each their own (the demo starts its two from the same HEAVY_QUEUES and LIVE_QUEUES), and
`make worker` serves them all."""

import re
from pathlib import Path

import yaml

from scrm.celery import HEAVY_QUEUES, LIVE_QUEUES, Queues

ROOT = Path(__file__).resolve().parents[2]


def _queues(command: list[str]) -> set[str]:
    return set(command[command.index("-Q") + 1].split(","))


def test_compose_runs_a_worker_for_the_heavy_queues_and_one_for_the_rest():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    workers = {
        name: _queues(service["command"])
        for name, service in services.items()
        if "worker" in service.get("command", [])
    }
    assert workers == {
        "worker": {str(q) for q in HEAVY_QUEUES},
        "worker-live": {str(q) for q in LIVE_QUEUES},
    }
    assert set().union(*workers.values()) == {str(q) for q in Queues}
    assert str(Queues.DEFAULT) in workers["worker-live"]  # the heartbeat /healthz reads


def test_the_make_worker_target_serves_every_queue():
    makefile = (ROOT / "Makefile").read_text()
    line = re.search(r"celery -A scrm worker -Q (\S+)", makefile).group(1)
    assert set(line.split(",")) == {str(q) for q in Queues}
