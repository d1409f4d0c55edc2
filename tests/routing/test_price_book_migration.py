"""The migration into the price book: each model's three prices become its first row, and the
policy snapshots stored before it still load and bill."""

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("routing", "0015_model_migrations")]
AFTER = [("routing", "0016_price_book")]


@pytest.mark.django_db(transaction=True)
def test_prices_move_into_rows_and_old_snapshots_still_bill():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    profile = old.get_model("routing", "ModelProfile").objects.create(
        name="gpt-4o", tier="full", input_per_mtok_usd=Decimal("2.50"),
        cached_input_per_mtok_usd=Decimal("1.25"), output_per_mtok_usd=Decimal("10.00"),
        prices_effective_from=date(2024, 10, 1), batch_discount_percent=Decimal("40"),
    )  # fmt: skip
    legacy = {"name": "gpt-4o", "tier": "full", "base_url": "", "api_key_env": "K",
              "input_per_mtok_usd": "2.5000", "cached_input_per_mtok_usd": "1.2500",
              "output_per_mtok_usd": "10.0000", "prices_effective_from": "2024-10-01",
              "batch_discount_percent": "40.00"}  # fmt: skip
    version = old.get_model("routing", "PolicyVersion").objects.create(
        actor="before", snapshot={"models": {"gpt-4o": legacy}, "categories": {}}
    )
    # when
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    # then the model has one row with its prices, its batch discount as a multiplier
    row = new.get_model("routing", "ModelPrice").objects.get(model_id=profile.pk)
    assert row.effective_from == date(2024, 10, 1)
    prices = (row.input_per_mtok_usd, row.cached_input_per_mtok_usd, row.output_per_mtok_usd)
    assert prices == (Decimal("2.5"), Decimal("1.25"), Decimal("10"))
    assert row.batch_multiplier == Decimal("0.6")
    # and the stored snapshot carries that row, so it bills through the price book
    snapshot = new.get_model("routing", "PolicyVersion").objects.get(pk=version.pk).snapshot
    from routing.price_book import snapshot_prices

    (price,) = snapshot_prices(snapshot["models"]["gpt-4o"])
    assert price.id == row.pk and price.batch_multiplier == Decimal("0.6")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
