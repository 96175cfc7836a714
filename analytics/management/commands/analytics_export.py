"""python manage.py analytics_export --metric {cohort,repurchase,conversion,interval,ltv,rfm}
    [--by first_purchase|joined] [--period month|week] [--start DATE] [--end DATE]
    [--calibration-end DATE] [--format csv|json]

The dashboards' numbers for scripts. With --format json exactly one JSON object.
Dates are Asia/Shanghai calendar days; the window includes both.
"""

import csv
import json
import sys
from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError

from analytics import metrics
from analytics.metrics import SHANGHAI


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"日期应为 YYYY-MM-DD：{text}") from None


class Command(BaseCommand):
    help = "Export a metric as CSV or one JSON object."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--metric",
            required=True,
            choices=["cohort", "repurchase", "conversion", "interval", "ltv", "rfm"],
        )
        parser.add_argument("--by", choices=["first_purchase", "joined"], default="first_purchase")
        parser.add_argument("--period", choices=["month", "week"], default="month")
        parser.add_argument("--start", type=_date)
        parser.add_argument("--end", type=_date)
        parser.add_argument("--calibration-end", type=_date)
        parser.add_argument("--format", choices=["csv", "json"], default="json")

    def handle(self, *args, **options) -> None:
        from django.utils import timezone

        end = options["end"] or timezone.now().astimezone(SHANGHAI).date()
        start = options["start"] or (end - timedelta(days=365))
        if start > end:
            raise CommandError(f"--start {start} 晚于 --end {end}")
        metric = options["metric"]
        if metric == "repurchase":
            result = metrics.repurchase(start=start, end=end)
            table = [result]
        elif metric == "cohort":
            result = metrics.cohorts(
                by=options["by"], period=options["period"], start=start, end=end
            )
            table = [
                {
                    "cohort": row["cohort"],
                    "size": row["size"],
                    **{f"k{k}": share for k, share in enumerate(row["retention"])},
                }
                for row in result["cohorts"]
            ]
        elif metric == "conversion":
            rows = metrics.conversion(start=start, end=end)
            result = {"start": start.isoformat(), "end": end.isoformat(), "rows": rows}
            table = rows
        elif metric == "interval":
            rows = metrics.intervals(start=start, end=end)
            result = {"start": start.isoformat(), "end": end.isoformat(), "categories": rows}
            table = [
                {
                    "category": r["category"],
                    "intervals": r["intervals"],
                    "median_days": r["median_days"],
                    **r["distribution"],
                }
                for r in rows
            ]
        elif metric == "rfm":
            result = metrics.rfm(end=end)
            table = [
                {"group": key, "name": name, "customers": count}
                for key in ("rfm", "rfm_r", "rfm_f", "rfm_m")
                for name, count in result[key].items()
            ]
        else:
            from analytics.predictions import predict

            calibration_end = options["calibration_end"] or end
            fitted = predict(calibration_end=calibration_end)
            result = {
                "calibration_end": calibration_end.isoformat(),
                "customers": fitted.customers,
                "params": fitted.params,
            }
            table = fitted.rows
        if options["format"] == "json":
            self.stdout.write(json.dumps(result, ensure_ascii=False, default=str))
            return
        if not table:
            return
        writer = csv.DictWriter(self.stdout, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
        sys.stdout.flush()
