"""QualityEvaluation moves here from usage: routing samples, judges, stores and reads shadow
evaluations. The model keeps its table (db_table usage_qualityevaluation) and its index
name, so only Django's state changes; no row is copied. Its ContentType row moves to the
routing label, so the admin permissions granted on it and the admin log entries follow.

If a ContentType routing.qualityevaluation exists already (a database migrated back and
forth with a stale usage row left), the usage row is left alone: merging two rows' grants is
a decision for a person, and `manage.py remove_stale_contenttypes` lists it."""

import django.db.models.deletion
from django.db import migrations, models

MODEL = "qualityevaluation"
VERDICTS = [
    ("cheap_better", "cheap answer better"),
    ("tie", "Tie"),
    ("premium_better", "premium answer better"),
]


def _content_type_move(apps, *, source: str, target: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if ContentType.objects.filter(app_label=target, model=MODEL).exists():
        return
    ContentType.objects.filter(app_label=source, model=MODEL).update(app_label=target)


def content_type_to_routing(apps, schema_editor):
    _content_type_move(apps, source="usage", target="routing")


def content_type_to_usage(apps, schema_editor):
    _content_type_move(apps, source="routing", target="usage")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("routing", "0019_migration_experiment"),
        ("usage", "0012_quality_evaluation_to_routing"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="QualityEvaluation",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "request_id",
                            models.CharField(
                                help_text="The judged request.", max_length=40, unique=True
                            ),
                        ),
                        ("created_at", models.DateTimeField(db_index=True)),
                        ("category", models.CharField(max_length=40)),
                        ("complexity", models.FloatField()),
                        ("cheap_model", models.CharField(max_length=100)),
                        ("premium_model", models.CharField(max_length=100)),
                        ("judge_model", models.CharField(max_length=100)),
                        ("verdict", models.CharField(choices=VERDICTS, max_length=16)),
                        (
                            "verdict_ab",
                            models.CharField(
                                choices=VERDICTS, help_text="Cheap answer shown first.", max_length=16
                            ),
                        ),
                        (
                            "verdict_ba",
                            models.CharField(
                                choices=VERDICTS, help_text="Premium answer shown first.", max_length=16
                            ),
                        ),
                        (
                            "reasoning",
                            models.TextField(blank=True, help_text="The judge's reasons, truncated."),
                        ),
                        (
                            "extra_cost_usd",
                            models.DecimalField(
                                decimal_places=10, help_text="Shadow plus judge calls.", max_digits=20
                            ),
                        ),
                        ("sandbox", models.BooleanField(default=False)),
                        (
                            "features",
                            models.JSONField(
                                blank=True,
                                default=dict,
                                help_text="The request as the router saw it, without its text: "
                                "hashed n-grams with their weights and the complexity signals "
                                "(for train_router --with-verdicts).",
                            ),
                        ),
                        (
                            "api_key",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="routing.apikey",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "usage_qualityevaluation",
                        "ordering": ["-created_at"],
                        "indexes": [
                            models.Index(
                                fields=["category", "created_at"],
                                name="usage_quali_categor_730e81_idx",
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(content_type_to_routing, content_type_to_usage),
    ]
