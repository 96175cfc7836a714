"""python manage.py import_orders PATH [PATH ...] --channel {generic,tmall,jd,douyin,youzan}
[--dry-run] [--json]

Every row is validated before anything is written; an order with any invalid
line is rejected whole. Exit status 2 when any row (or a whole file) was
rejected, 0 otherwise. `--json` prints exactly one JSON object:
{"inserted": n, "updated": n, "unchanged": n, "rejected": n,
 "errors": [{"row": n, "column": "…", "reason": "…"}, …]}
"""

import getpass
import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from contacts import services
from contacts.order_files import CHANNELS, OrderFileError


class Command(BaseCommand):
    help = "Import order exports (generic CSV/XLSX, Tmall, JD, Douyin, Youzan)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
        parser.add_argument(
            "--channel",
            choices=CHANNELS,
            help="the export's format; detected from the header if omitted",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="validate and count, write nothing"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(
        self, *args, paths: list[Path], channel: str | None, dry_run: bool, **options
    ) -> None:
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            self._finish(options["json"], file_error=f"找不到文件：{', '.join(missing)}")
        try:
            record, report = services.orders_import(
                paths=paths, channel=channel, dry_run=dry_run, command_user=_account()
            )
        except OrderFileError as error:
            self._finish(options["json"], file_error=str(error))
        result = {
            "inserted": report.inserted,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "rejected": report.rejected,
            "errors": [{k: e[k] for k in ("row", "column", "reason")} for e in report.errors],
        }
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            prefix = "（试运行，未写入）" if dry_run else ""
            self.stdout.write(
                f"{prefix}导入 #{record.pk}: 新增 {report.inserted} 单，"
                f"更新 {report.updated} 单，未变 {report.unchanged} 单，"
                f"拒绝 {report.rejected} 行，用时 {record.seconds:.1f} 秒"
            )
            for error in report.errors:
                where = f"{error['file']} 第 {error['row']} 行 [{error['column']}]"
                self.stdout.write(f"  {where}: {error['reason']}")
        if report.rejected:
            sys.exit(2)

    def _finish(self, as_json: bool, *, file_error: str) -> None:
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "inserted": 0,
                        "updated": 0,
                        "unchanged": 0,
                        "rejected": 0,
                        "errors": [{"row": 0, "column": "", "reason": file_error}],
                    },
                    ensure_ascii=False,
                )
            )
        else:
            self.stderr.write(file_error)
        sys.exit(2)


def _account() -> str:
    """The machine account running the command ("" where it has no name: a container's
    bare uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
