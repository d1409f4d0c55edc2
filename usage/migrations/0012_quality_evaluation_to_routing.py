"""QualityEvaluation moves to routing (routing.quality_models), which samples, judges, stores
and reads shadow evaluations. Only Django's state changes here: the table
usage_qualityevaluation stays as it is, rows included, and routing's 0020 takes it over."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0011_ledger_experiment_arm"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="QualityEvaluation")],
            database_operations=[],
        ),
    ]
