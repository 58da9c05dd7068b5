import unicodedata

from django.db import migrations, models


def fill_name_keys(apps, schema_editor):
    # The same folding as Collection.key_for (a migration cannot call model methods).
    Collection = apps.get_model("generations", "Collection")
    for collection in Collection.objects.only("pk", "name").iterator():
        key = unicodedata.normalize("NFKC", collection.name).casefold()
        Collection.objects.filter(pk=collection.pk).update(name_key=key)


class Migration(migrations.Migration):

    dependencies = [
        ('generations', '0006_busy_check_and_poller_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='collection',
            name='name_key',
            field=models.CharField(default='', editable=False, max_length=240),
            preserve_default=False,
        ),
        migrations.RunPython(fill_name_keys, migrations.RunPython.noop, elidable=True),
        migrations.RemoveConstraint(
            model_name='collection',
            name='collection_team_name_unique',
        ),
        migrations.AddConstraint(
            model_name='collection',
            constraint=models.UniqueConstraint(fields=('team', 'name_key'), name='collection_team_name_key_unique'),
        ),
    ]
