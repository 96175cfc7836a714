"""python manage.py wecom_emulator --port 8090 --seed 42 --guides 50 --customers 20000

Serves the bundled WeCom emulator (scrm/wecom/emulator.py) in the foreground,
with the corp id and secrets of the settings' development defaults.
"""

import random
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from scrm.wecom.emulator import QUOTA_POLICIES, Config, WeComEmulator, generate, serve_in_thread


class Command(BaseCommand):
    help = "Serve a local WeCom emulator with seeded data."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8090)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--guides", type=int, default=50)
        parser.add_argument("--customers", type=int, default=20000)
        parser.add_argument("--token-ttl", type=int, default=7200, help="seconds a token lives")
        parser.add_argument("--qps-limit", type=int, default=0, help="calls/s per API, 0 = off")
        parser.add_argument(
            "--callback-url", default=settings.WECOM_CALLBACK_URL, help="where callbacks go"
        )
        parser.add_argument(
            "--events-per-minute",
            type=float,
            default=0,
            help="simulated user actions (each pushes a callback), 0 = none",
        )
        parser.add_argument(
            "--quota-policy",
            choices=QUOTA_POLICIES,
            default="month_days",
            help="mass messages a customer may receive: as many a month as the month has "
            "days (WeCom's current rule), 4 a month (the old rule), 1 a day or 7 a week",
        )

    def handle(self, *args, **options) -> None:
        data = generate(
            seed=options["seed"],
            guides=options["guides"],
            customers=options["customers"],
            now=int(time.time()),  # the brand as of today, as its orders are (seed_demo_orders)
        )
        config = Config(
            corp_id=settings.WECOM_CORP_ID,
            secrets=(settings.WECOM_CONTACT_SECRET, settings.WECOM_AGENT_SECRET),
            agent_id=settings.WECOM_AGENT_ID,
            token_ttl=options["token_ttl"],
            qps_limit=options["qps_limit"],
            callback_url=options["callback_url"],
            callback_token=settings.WECOM_CALLBACK_TOKEN,
            callback_aes_key=settings.WECOM_CALLBACK_AES_KEY,
            quota_policy=options["quota_policy"],
        )
        emulator = WeComEmulator(data, config)
        served = serve_in_thread(emulator, options["host"], options["port"])
        self.stdout.write(
            f"WeCom emulator on {served.base_url}: {len(data.users)} guides, "
            f"{len(data.customers)} customers, {emulator.relations_count()} relationships, "
            f"{len(data.groups)} groups",
        )
        rng = random.Random(options["seed"])  # noqa: S311 - simulated users
        try:
            while True:
                if options["events_per_minute"]:
                    time.sleep(60 / options["events_per_minute"])
                    emulator.random_action(rng)
                else:
                    time.sleep(3600)
        except KeyboardInterrupt:
            served.stop()
