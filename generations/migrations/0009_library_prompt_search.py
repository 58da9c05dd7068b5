"""Prompt search indexes for the library (generations/library/search.py).

SQLite: an FTS5 table with the trigram tokenizer over generations_prompt.search_text, kept in step by
triggers (so every way a prompt is written, bulk_create included, is indexed). Beware: Django rebuilds a SQLite
table to alter it, which drops its triggers; a later migration altering Prompt must create them again
(tests/test_library.py fails if they are missing).
PostgreSQL: a pg_trgm GIN index on search_text, which answers LIKE '%term%' (pg_trgm is a trusted extension:
a database owner without superuser may create it).
"""

from django.db import migrations

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE generations_prompt_fts USING fts5("
    "search_text, content='generations_prompt', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER generations_prompt_fts_insert AFTER INSERT ON generations_prompt BEGIN "
    "INSERT INTO generations_prompt_fts(rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER generations_prompt_fts_delete AFTER DELETE ON generations_prompt BEGIN "
    "INSERT INTO generations_prompt_fts(generations_prompt_fts, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER generations_prompt_fts_update AFTER UPDATE OF search_text ON generations_prompt BEGIN "
    "INSERT INTO generations_prompt_fts(generations_prompt_fts, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO generations_prompt_fts(rowid, search_text) VALUES (new.id, new.search_text); END",
    "INSERT INTO generations_prompt_fts(generations_prompt_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS generations_prompt_fts_update",
    "DROP TRIGGER IF EXISTS generations_prompt_fts_delete",
    "DROP TRIGGER IF EXISTS generations_prompt_fts_insert",
    "DROP TABLE IF EXISTS generations_prompt_fts",
]
POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS generations_prompt_search_trgm "
    "ON generations_prompt USING gin (search_text gin_trgm_ops)",
]
POSTGRES_BACKWARD = ["DROP INDEX IF EXISTS generations_prompt_search_trgm"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("generations", "0008_usage_task_indexes"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
