# The ApiToken model moved to the `api` app. Only Django's idea of it leaves this app: the table
# (`models_config_apitoken`) and its rows stay where they are, and `api.0001_initial` takes them over.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('models_config', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='ApiToken',
                ),
            ],
            database_operations=[],
        ),
    ]
