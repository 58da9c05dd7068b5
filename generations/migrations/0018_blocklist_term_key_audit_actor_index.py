"""A key per blocked term (blockmatch.term_key), unique per list, so that simultaneous adds of one term make one row;
and an index for the submit rate, which now counts a user's refused prompts (their `prompt_blocked` audit rows).

The keys of the rows already saved are filled in first, and where one list holds a term twice (adds that raced
before this constraint) the later rows are removed: the same term, matched the same way, once.
"""

from django.conf import settings
from django.db import migrations, models

from generations.blockmatch import term_key


def fill_keys(apps, schema_editor):
    BlockedTerm = apps.get_model("generations", "BlockedTerm")
    db = schema_editor.connection.alias
    seen = set()
    for term in BlockedTerm.objects.using(db).order_by("pk").only("pk", "team_id", "text", "is_regex"):
        key = term_key(term.text, is_regex=term.is_regex)
        if (term.team_id, key) in seen:
            term.delete()
            continue
        seen.add((term.team_id, key))
        BlockedTerm.objects.using(db).filter(pk=term.pk).update(key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0017_fold_refold_search_text"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="blockedterm",
            name="key",
            field=models.CharField(default="", editable=False, max_length=203),
            preserve_default=False,
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["actor", "act", "-created_at"], name="audit_actor_act_recent"),
        ),
        migrations.AddConstraint(
            model_name="blockedterm",
            constraint=models.UniqueConstraint(
                condition=models.Q(("team__isnull", False)), fields=("team", "key"), name="blocked_term_team_key_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="blockedterm",
            constraint=models.UniqueConstraint(
                condition=models.Q(("team__isnull", True)), fields=("key",), name="blocked_term_site_key_unique"
            ),
        ),
    ]
