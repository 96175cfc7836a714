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
        parser.add_argument("path", type=Path)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, path: Path, **options) -> None:
        try:
            result = services.products_import(path=path)
        except OrderFileError as error:
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
