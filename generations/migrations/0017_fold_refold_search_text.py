"""Re-fold `Prompt.search_text` with the fold that is now PostgreSQL's own (generations/text.py): lower(unaccent()).

The copy saved before folded with NFKD (curly quotes, ø, ł, æ kept; dakuten, Thai marks, hamza dropped; halfwidth
katakana unfolded), so the rows whose copy differs are rewritten, in batches by id, each batch its own
transaction: no lock over the whole table, and a run stopped half-way starts again where the copies still differ.
SQLite's FTS5 table follows through its update trigger (migration 0009); PostgreSQL's index is on the prompt's
text, untouched. The Prompt model is not altered. Going back keeps the new copies (the old fold is gone).
"""

from django.db import migrations, transaction

from generations.text import normalize_for_search

BATCH = 2000


def refold(apps, schema_editor):
    Prompt = apps.get_model("generations", "Prompt")
    db = schema_editor.connection.alias
    last = 0
    while True:
        rows = list(
            Prompt.objects.using(db).filter(pk__gt=last).order_by("pk").values_list("pk", "text", "search_text")[:BATCH]
        )
        if not rows:
            return
        last = rows[-1][0]
        changed = [
            Prompt(pk=pk, search_text=folded)
            for pk, text, stored in rows
            if (folded := normalize_for_search(text)) != stored
        ]
        with transaction.atomic(using=db):
            Prompt.objects.using(db).bulk_update(changed, ["search_text"], batch_size=500)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("generations", "0016_pgsearch_unaccent_fold_index"),
    ]

    operations = [
        migrations.RunPython(refold, migrations.RunPython.noop),
    ]
