from django.db import migrations, models


def failures_out_of_errors(apps, schema_editor):
    """A failed import kept its reason as a rejected "row 0": it is the failure now."""
    OrderImport = apps.get_model("contacts", "OrderImport")
    for record in OrderImport.objects.filter(status="failed"):
        reasons = [e["reason"] for e in record.errors if e.get("row") == 0]
        if reasons:
            record.failure = reasons[0]
            record.errors = [e for e in record.errors if e.get("row") != 0]
            record.save(update_fields=["failure", "errors"])


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0011_customer_indexes_used"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderimport",
            name="failure",
            field=models.TextField(blank=True),
        ),
        migrations.AlterField(
            model_name="orderimport",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "排队中"),
                    ("running", "进行中"),
                    ("succeeded", "完成"),
                    ("failed", "失败"),
                ],
                default="running",
                max_length=16,
            ),
        ),
        migrations.RunPython(failures_out_of_errors, migrations.RunPython.noop),
    ]
