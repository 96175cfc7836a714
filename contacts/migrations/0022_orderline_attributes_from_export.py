from django.db import migrations, models

# The lines stored so far whose attributes the export did not give: those written by
# an import of channel exports only (all but the generic format lack attribute
# columns; an import of several channels at once records them in
# detected_channels), and those still without any.
MARK_NOT_FROM_EXPORT = """
    UPDATE contacts_orderline l SET attributes_from_export = false
    FROM contacts_order o LEFT JOIN contacts_orderimport i ON i.id = o.last_import_id
    WHERE l.order_id = o.id
      AND (i.channel IN ('tmall', 'jd', 'douyin', 'youzan')
           OR (i.channel = 'auto' AND jsonb_array_length(i.detected_channels) > 0
               AND NOT i.detected_channels ? 'generic')
           OR (l.category, l.material, l.style) = ('', '', ''))
"""


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0021_import_matching"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderline",
            name="attributes_from_export",
            field=models.BooleanField(db_default=True, default=True),
        ),
        migrations.RunSQL(MARK_NOT_FROM_EXPORT, migrations.RunSQL.noop),
    ]
