"""Idempotency records get a lease and keep no readable key or answer.

The table is a 24-hour cache of answers: it is recreated empty rather than converted, so no
plaintext key or answer of the old layout survives the upgrade (a retry of a request answered
before it runs once more)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("routing", "0012_inflight_quarantine"),
    ]

    operations = [
        migrations.DeleteModel(name="IdempotencyRecord"),
        migrations.CreateModel(
            name="IdempotencyRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key_sha256", models.CharField(max_length=64)),
                ("request_digest", models.CharField(max_length=64)),
                ("state", models.CharField(choices=[("in_flight", "in_flight"), ("done", "done")], max_length=10)),
                ("claim_id", models.CharField(max_length=32)),
                ("lease_until", models.DateTimeField()),
                ("status_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("reply_encrypted", models.TextField(blank=True)),
                ("request_id", models.CharField(blank=True, max_length=40)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("expires_at", models.DateTimeField(db_index=True)),
                ("api_key", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="routing.apikey")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("api_key", "key_sha256"), name="one_idempotency_key_per_api_key")],
            },
        ),
    ]
