"""The product catalogue by sku: read as order files are (GB18030 or UTF-8 CSV, XLSX),
a row without a sku reported and the others loaded, order lines without attributes
completed from it and their buyers' facts marked for refresh; its page and upload."""

import io
import json
from decimal import Decimal
from io import StringIO

import openpyxl
import pytest
from django.core.management import call_command
from django.urls import reverse

from contacts import services
from contacts.models import CustomerFactsPending, OrderLine, Product
from contacts.order_files import OrderFileError
from tests.contacts.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db

CATALOGUE = [
    ["sku", "name", "category", "material", "style"],
    ["BRA-ICE-01", "冰丝无痕文胸 基础款", "文胸", "冰丝", "基础款"],
    ["", "没有编码的商品", "睡衣", "棉", "基础款"],
    ["PAN-COT-04", "纯棉抗菌内裤 三条装", "内裤", "棉", "基础款"],
]


def _csv(rows, encoding="gb18030") -> bytes:
    return "\n".join(",".join(row) for row in rows).encode(encoding) + b"\n"


@pytest.fixture
def lines():
    """Three lines of one buyer's order: two skus of the catalogue without attributes, one
    whose export had them already (kept)."""
    order = OrderFactory(customer=CustomerFactory())
    made = [
        OrderLine.objects.create(
            order=order,
            line_no=number,
            sku=sku,
            category=category,
            quantity=1,
            unit_price=Decimal("89"),
            line_amount=Decimal("89"),
        )  # fmt: skip
        for number, (sku, category) in enumerate(
            (("BRA-ICE-01", ""), ("PAN-COT-04", ""), ("BRA-ICE-01", "家居服")), start=1
        )
    ]
    CustomerFactsPending.objects.all().delete()
    return order, made


def test_a_gb18030_catalogue_completes_the_lines_and_marks_their_buyer(tmp_path, lines):
    order, made = lines
    path = tmp_path / "商品目录.csv"
    path.write_bytes(_csv(CATALOGUE))
    result = services.products_import(path=path)
    assert (result["products"], result["changed"], result["lines_filled"]) == (2, 2, 3)
    assert result["errors"] == [{"row": 3, "column": "sku", "reason": "商品编码为空"}]
    assert Product.objects.get(sku="PAN-COT-04").material == "棉"
    first, second, third = (OrderLine.objects.get(pk=line.pk) for line in made)
    assert (first.category, first.material, first.style) == ("文胸", "冰丝", "基础款")
    assert (second.category, second.material) == ("内裤", "棉")
    assert (third.category, third.material) == ("家居服", "冰丝")  # its own category is kept
    assert list(CustomerFactsPending.objects.values_list("customer_id", flat=True)) == [
        order.customer_id
    ]
    CustomerFactsPending.objects.all().delete()
    again = services.products_import(path=path)
    assert (again["changed"], again["lines_filled"]) == (0, 0)
    assert not CustomerFactsPending.objects.exists()


def test_an_xlsx_catalogue_and_a_file_without_the_columns(tmp_path):
    workbook = openpyxl.Workbook()
    for row in CATALOGUE:
        workbook.active.append(row)
    workbook.save(tmp_path / "catalogue.xlsx")
    assert services.products_import(path=tmp_path / "catalogue.xlsx")["products"] == 2
    (tmp_path / "bad.csv").write_bytes(_csv([["sku", "name"], ["X-1", "x"]], "utf-8"))
    with pytest.raises(OrderFileError, match="缺少列：category, material, style"):
        services.products_import(path=tmp_path / "bad.csv")
    assert set(Product.objects.values_list("sku", flat=True)) == {"BRA-ICE-01", "PAN-COT-04"}


def test_the_command_reports_the_rejected_rows_with_exit_status_2(tmp_path):
    path = tmp_path / "catalogue.csv"
    path.write_bytes(_csv(CATALOGUE, "utf-8"))
    out = StringIO()
    with pytest.raises(SystemExit) as stop:
        call_command("import_products", str(path), "--json", stdout=out)
    assert stop.value.code == 2
    assert json.loads(out.getvalue())["errors"][0]["row"] == 3
    out = StringIO()  # a file that cannot be read: still one JSON object on stdout
    with pytest.raises(SystemExit) as stop:
        call_command("import_products", str(tmp_path / "none.csv"), "--json", stdout=out)
    assert stop.value.code == 2
    answer = json.loads(out.getvalue())
    assert answer["products"] == 0 and answer["errors"][0]["reason"] == "none.csv：找不到文件"


def test_operators_upload_a_catalogue_and_everyone_in_the_console_reads_it(
    client_for, operator, manager, guide_user, lines
):
    client = client_for(operator)
    upload = io.BytesIO(_csv(CATALOGUE))
    upload.name = "商品目录.csv"
    done = client.post(reverse("product_upload"), {"file": upload}, follow=True)
    body = done.content.decode()
    assert "商品 2 个（新增或改变 2 个），补全了 3 个订单行。" in body
    assert "1 行未导入：第 3 行：商品编码为空" in body
    assert [row.sku for row in done.context["page"]] == ["BRA-ICE-01", "PAN-COT-04"]
    broken = io.BytesIO(b"\xd0\xcf\x11\xe0old excel")
    broken.name = "商品.xls"
    before = list(Product.objects.values_list("sku", "name", "updated_at"))
    refused = client.post(reverse("product_upload"), {"file": broken}, follow=True)
    assert "旧版 Excel" in refused.content.decode()
    assert list(Product.objects.values_list("sku", "name", "updated_at")) == before
    reader = client_for(manager)
    page = reader.get(reverse("products")).content.decode()
    assert 'data-sku="PAN-COT-04"' in page and 'id="product-upload"' not in page
    upload.seek(0)
    assert reader.post(reverse("product_upload"), {"file": upload}).status_code == 403
    guide = client_for(guide_user)
    assert guide.get(reverse("products")).status_code == 403
    upload.seek(0)
    assert guide.post(reverse("product_upload"), {"file": upload}).status_code == 403


def test_a_value_too_long_is_a_row_error_and_a_large_catalogue_counts_every_change(tmp_path):
    rows = [CATALOGUE[0]] + [
        [f"SKU-{n:04d}", f"商品{n}", "文胸", "棉", "基础款"] for n in range(250)
    ]
    rows.append(["SKU-LONG", "名" * 201, "文胸", "棉", "基础款"])
    path = tmp_path / "catalogue.csv"
    path.write_bytes(_csv(rows, "utf-8"))
    result = services.products_import(path=path)
    assert (result["products"], result["changed"]) == (250, 250)  # execute_values pages by 100
    assert result["errors"] == [
        {"row": 252, "column": "name", "reason": "name 最多 200 个字，这里有 201 个"}
    ]
    rows[1][2] = "内裤"  # one product changes
    path.write_bytes(_csv(rows, "utf-8"))
    assert services.products_import(path=path)["changed"] == 1


def test_an_xlsx_broken_further_down_is_refused_whole(tmp_path):
    import zipfile

    workbook = openpyxl.Workbook()
    for row in CATALOGUE + [[f"SKU-{n}", "x", "文胸", "棉", "基础款"] for n in range(50)]:
        workbook.active.append(row)
    workbook.save(tmp_path / "whole.xlsx")
    with (
        zipfile.ZipFile(tmp_path / "whole.xlsx") as source,
        zipfile.ZipFile(tmp_path / "broken.xlsx", "w") as target,
    ):
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]  # the sheet's XML ends in the middle of a row
            target.writestr(item, data)
    with pytest.raises(OrderFileError, match="broken.xlsx：第 .* 行之后无法读取"):
        services.products_import(path=tmp_path / "broken.xlsx")
    assert not Product.objects.exists()


def test_the_catalogue_is_searched_by_sku_name_or_attribute(client_for, operator):
    for sku, name, material in (("BRA-01", "无钢圈文胸", "冰丝"), ("BRA-02", "蕾丝文胸", "蕾丝")):
        Product.objects.create(sku=sku, name=name, material=material)
    Product.objects.create(sku="SOCK-01", name="船袜", material="棉")
    client = client_for(operator)

    def found(text: str) -> list[str]:
        page = client.get(reverse("products"), {"q": text}).context["page"]
        return [product.sku for product in page]

    assert found("bra") == ["BRA-01", "BRA-02"]  # sku prefix, any case
    assert found("文胸") == ["BRA-01", "BRA-02"]  # name
    assert found("棉") == ["SOCK-01"]  # an attribute, exactly
    assert found("01") == []  # a sku from its start only
    assert found("") == ["BRA-01", "BRA-02", "SOCK-01"]


YOUZAN_HEADER = (
    "订单号,订单状态,下单时间,付款时间,买家手机号,粉丝昵称,商品名称,规格,单价,数量,"
    "订单实付金额,退款状态,商品编码"
)
GENERIC_HEADER = (
    "order_id,channel,parent_order_id,status,paid_at,buyer_phone,buyer_unionid,buyer_id,"
    "buyer_name,sku,product_name,category,material,style,quantity,unit_price,line_amount,"
    "refund_amount,store_code,guide_userid"
)


def _attributes(order_id: str) -> tuple:
    line = OrderLine.objects.get(order__channel_order_id=order_id)
    return line.category, line.material, line.style


def test_the_catalogue_wins_over_a_guess_from_the_name_and_an_export_over_the_catalogue(tmp_path):
    """Youzan exports no attributes: they are read from the product name, unless the
    catalogue has the sku. A generic export's own attributes are kept; those it leaves
    empty are the catalogue's, then and after the catalogue changes."""
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_bytes(
        _csv([CATALOGUE[0], ["BRA-ICE-01", "冰丝无痕文胸 基础款", "文胸", "莫代尔", "主题款"]])
    )
    services.products_import(path=catalogue)
    youzan = tmp_path / "youzan.csv"
    youzan.write_text(
        f"{YOUZAN_HEADER}\n"
        "E1,交易完成,2026-03-21 14:49:54,2026-03-21 14:50:34,13812345601,王芳,"
        "冰丝无痕文胸 基础款,肤色 M,89.00,1,89.00,无退款,BRA-ICE-01\n"
        "E2,交易完成,2026-03-21 14:49:54,2026-03-21 14:50:34,13812345601,王芳,"
        "纯棉船袜 联名,白 均码,19.00,1,19.00,无退款,SOCK-01\n",
        encoding="utf-8",
    )
    generic = tmp_path / "generic.csv"
    generic.write_text(
        f"{GENERIC_HEADER}\n"
        "P1,pos,,paid,2026-03-03T11:18:43+08:00,13812345601,,,王芳,BRA-ICE-01,,家居服,,,1,"
        "89.00,89.00,0,SH01,\n"
        "P2,pos,,paid,2026-03-03T11:18:43+08:00,13812345601,,,王芳,BRA-ICE-01,,,,,1,"
        "89.00,89.00,0,SH01,\n"
        "P3,pos,,paid,2026-03-03T11:18:43+08:00,13812345601,,,王芳,SOCK-01,船袜,,,,1,"
        "19.00,19.00,0,SH01,\n",
        encoding="utf-8",
    )
    assert services.orders_import(paths=[youzan], channel="youzan")[1].inserted == 2
    assert services.orders_import(paths=[generic], channel="generic")[1].inserted == 3
    assert _attributes("E1") == ("文胸", "莫代尔", "主题款")  # the catalogue's, not 冰丝 基础款
    assert _attributes("E2") == ("袜子", "棉", "主题款")  # not in the catalogue: from its name
    assert _attributes("P1") == ("家居服", "莫代尔", "主题款")  # its own category
    assert _attributes("P2") == ("文胸", "莫代尔", "主题款")
    assert _attributes("P3") == ("", "", "")  # a generic line's name is not read
    catalogue.write_bytes(
        _csv(
            [
                CATALOGUE[0],
                ["BRA-ICE-01", "冰丝无痕文胸 基础款", "文胸", "冰丝", "基础款"],
                ["SOCK-01", "纯棉船袜", "袜子", "莫代尔", ""],
            ]
        )
    )
    result = services.products_import(path=catalogue)
    assert (result["changed"], result["lines_filled"]) == (2, 4)  # all but P1
    assert _attributes("E1") == ("文胸", "冰丝", "基础款")
    assert _attributes("E2") == ("袜子", "莫代尔", "主题款")  # no style in the catalogue
    assert _attributes("P1") == ("家居服", "莫代尔", "主题款")  # filled once, then its own
    assert _attributes("P2") == ("文胸", "冰丝", "基础款")
    assert _attributes("P3") == ("袜子", "莫代尔", "")
