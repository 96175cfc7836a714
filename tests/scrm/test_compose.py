"""docker compose: what one service writes to MEDIA_ROOT, the others read (an upload kept
by web is imported by a worker; an export a worker builds is downloaded from web)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_built_from_the_image_shares_one_media_volume():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ours = {name: s for name, s in compose["services"].items() if "build" in s}
    assert {"web", "worker", "worker-live", "beat"} <= set(ours)
    for name, service in ours.items():
        root = service["environment"]["MEDIA_ROOT"]
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
        assert mounts.get(root) == "media", name
    assert "media" in compose["volumes"]
