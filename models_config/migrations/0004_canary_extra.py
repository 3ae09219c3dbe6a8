"""Give the versions saved before the audit history existed their "save" events, so the config page's one
history (ConfigEvent) also lists them (docs/architecture.md#audit). Rollbacks made before it are not known."""

from django.db import migrations


def backfill_save_events(apps, schema_editor):
    ModelConfig = apps.get_model("models_config", "ModelConfig")
    ConfigEvent = apps.get_model("models_config", "ConfigEvent")
    db = schema_editor.connection.alias
    for row in ModelConfig.objects.using(db).all():
        if ConfigEvent.objects.using(db).filter(model_config=row).exists():
            continue
        for version in row.versions.using(db).order_by("number"):
            event = ConfigEvent.objects.using(db).create(
                model_config=row, kind="save", version=version, actor_id=version.author_id, comment=version.comment
            )
            ConfigEvent.objects.using(db).filter(pk=event.pk).update(created_at=version.created_at)


class Migration(migrations.Migration):
    dependencies = [
        ("models_config", "0003_canary_spend_audit"),
    ]

    operations = [
        migrations.RunPython(backfill_save_events, migrations.RunPython.noop),
    ]
