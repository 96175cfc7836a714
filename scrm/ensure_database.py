"""Create the configured PostgreSQL database if it does not exist yet.

`make demo` and `make test` run this before migrating, so a fresh machine
needs nothing by hand. Connects to the server's `postgres` maintenance
database with the same credentials.
"""

import os

import django
import psycopg2
from psycopg2 import sql


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    django.setup()
    from django.conf import settings

    database = settings.DATABASES["default"]
    connection = psycopg2.connect(
        dbname="postgres",
        user=database["USER"],
        password=database["PASSWORD"] or None,
        host=database["HOST"] or None,
        port=database["PORT"] or None,
        connect_timeout=5,
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database["NAME"]])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database["NAME"])))
            print(f"created database {database['NAME']}")  # noqa: T201
    connection.close()


if __name__ == "__main__":
    main()
