"""python manage.py import_products PATH [--json]: the product catalogue by sku."""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from contacts import services
from contacts.order_files import OrderFileError


class Command(BaseCommand):
    help = "Import the product catalogue (CSV or XLSX: sku,name,category,material,style)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path, metavar="PATH", help="the catalogue file")
        parser.add_argument(
            "--json",
            action="store_true",
            help='print one JSON object: {"products", "changed", "lines_filled", "errors"}; '
            "a file that cannot be read is one error of row 0",
        )

    def handle(self, *args, path: Path, **options) -> None:
        try:
            result = services.products_import(path=path)
        except OrderFileError as error:
            if options["json"]:  # the caller reads stdout: the answer is there, as always
                reason = {"row": 0, "column": "", "reason": str(error)}
                empty = {"products": 0, "changed": 0, "lines_filled": 0}
                self.stdout.write(json.dumps(empty | {"errors": [reason]}, ensure_ascii=False))
            self.stderr.write(str(error))
            sys.exit(2)
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write(
                f"商品 {result['products']} 个（变化 {result['changed']}），"
                f"补全订单行 {result['lines_filled']} 行，错误 {len(result['errors'])} 行"
            )
        if result["errors"]:
            sys.exit(2)
