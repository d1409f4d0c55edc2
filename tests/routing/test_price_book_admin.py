"""The price book in admin and from a shell: rows per model, billed rows locked, import and
export as JSON and CSV, bad files refused whole with an error per row."""

import json
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db.models import ProtectedError

from routing.models import ModelPrice, PolicyVersion
from tests.factories import UsageRecordFactory

URL = "/admin/routing/modelprice/"


@pytest.fixture
def staff(client, policy):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def _import(client, name: str, content: str):
    upload = SimpleUploadedFile(name, content.encode())
    return client.post(f"{URL}import/", {"file": upload}, follow=True)


def _snapshot() -> list[tuple]:
    return list(ModelPrice.objects.order_by("pk").values_list())


def test_the_list_shows_every_models_rows_and_which_are_billed(staff):
    mini = ModelPrice.objects.get(model__name="gpt-4o-mini")
    UsageRecordFactory(price=mini)
    page = staff.get(URL).content.decode()
    assert "gpt-4o-mini" in page and "gpt-5.4-nano" in page
    assert "Export CSV" in page and "Import (JSON or CSV)" in page
    filtered = staff.get(URL, {"model__id__exact": mini.model_id})
    assert [row.model.name for row in filtered.context["cl"].result_list] == ["gpt-4o-mini"]
    assert '<img src="/static/admin/img/icon-yes.svg" alt="True">' in filtered.content.decode()


def test_a_billed_row_can_be_neither_changed_nor_deleted(staff):
    mini = ModelPrice.objects.get(model__name="gpt-4o-mini")
    UsageRecordFactory(price=mini)
    change = staff.post(f"{URL}{mini.pk}/change/", {"input_per_mtok_usd": "9"})
    assert change.status_code == 403
    assert staff.post(f"{URL}{mini.pk}/delete/", {"post": "yes"}).status_code == 403
    mini.refresh_from_db()
    assert mini.input_per_mtok_usd == Decimal("0.15")
    # an unbilled row still can be corrected
    nano = ModelPrice.objects.get(model__name="gpt-5.4-nano")
    assert staff.get(f"{URL}{nano.pk}/change/").status_code == 200


def test_a_new_row_from_admin_is_a_new_policy_version(staff):
    mini = ModelPrice.objects.get(model__name="gpt-4o-mini")
    versions = PolicyVersion.objects.count()
    form = {
        "model": mini.model_id, "effective_from": "2027-02-01", "input_per_mtok_usd": "0.10",
        "cached_input_per_mtok_usd": "0.05", "output_per_mtok_usd": "0.40",
        "long_context_input_multiplier": "1", "long_context_output_multiplier": "1",
        "batch_multiplier": "0.5", "flex_multiplier": "1", "priority_multiplier": "1",
    }  # fmt: skip
    response = staff.post(f"{URL}add/", form)
    assert response.status_code == 302
    assert ModelPrice.objects.filter(model=mini.model).count() == 2
    latest = PolicyVersion.objects.order_by("-id").first()
    assert PolicyVersion.objects.count() == versions + 1
    prices = latest.snapshot["models"]["gpt-4o-mini"]["prices"]
    assert [p["effective_from"] for p in prices] == ["2024-07-18", "2027-02-01"]
    assert latest.changes == [
        "models.gpt-4o-mini.prices: row from 2027-02-01 added (in/cached/out 0.1000/0.0500/0.4000)"
    ]
    # a cached price above the input price is refused
    bad = staff.post(f"{URL}add/", {**form, "effective_from": "2027-03-01",
                                    "cached_input_per_mtok_usd": "0.50"})  # fmt: skip
    assert bad.status_code == 200
    assert ModelPrice.objects.filter(model=mini.model).count() == 2


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_then_import_changes_nothing(staff, fmt):
    before = _snapshot()
    exported = staff.get(f"{URL}export/", {"format": fmt})
    assert exported["Content-Disposition"] == f'attachment; filename="price-book.{fmt}"'
    response = _import(staff, f"prices.{fmt}", exported.content.decode())
    assert "0 row(s) added, 0 corrected, 4 unchanged" in response.content.decode()
    assert _snapshot() == before


def test_a_csv_import_adds_a_price_change_as_a_new_row(staff):
    csv = (
        "model,effective_from,input_per_mtok_usd,cached_input_per_mtok_usd,output_per_mtok_usd,"
        "cache_write_5m_per_mtok_usd,reasoning_per_mtok_usd,long_context_threshold_tokens,"
        "long_context_input_multiplier,flex_multiplier\n"
        "gpt-5.4-mini,2027-01-01,0.70,0.07,4.20,0.875,,272000,2,0.5\n"
    )
    response = _import(staff, "prices.csv", csv)
    assert "1 row(s) added" in response.content.decode()
    row = ModelPrice.objects.get(model__name="gpt-5.4-mini", effective_from=date(2027, 1, 1))
    assert row.cache_write_5m_per_mtok_usd == Decimal("0.875")
    assert row.reasoning_per_mtok_usd is None  # blank: reasoning bills as output
    assert row.long_context_threshold_tokens == 272_000
    assert row.flex_multiplier == Decimal("0.5") and row.batch_multiplier == Decimal("0.5")


def test_a_bad_file_names_every_bad_row_and_imports_nothing(staff):
    mini = ModelPrice.objects.get(model__name="gpt-4o-mini")
    UsageRecordFactory(price=mini)
    rows = [
        {"model": "gpt-4o", "effective_from": "2027-01-01", "input_per_mtok_usd": "2.00",
         "cached_input_per_mtok_usd": "1.00", "output_per_mtok_usd": "8.00"},  # good
        {"model": "gpt-9", "effective_from": "2027-01-01", "input_per_mtok_usd": "1",
         "cached_input_per_mtok_usd": "1", "output_per_mtok_usd": "1"},
        {"model": "gpt-4o", "effective_from": "soon", "input_per_mtok_usd": "1",
         "cached_input_per_mtok_usd": "1", "output_per_mtok_usd": "1"},
        {"model": "gpt-4o", "effective_from": "2027-02-01", "input_per_mtok_usd": "-1",
         "cached_input_per_mtok_usd": "0", "output_per_mtok_usd": "1"},
        {"model": "gpt-4o-mini", "effective_from": "2024-07-18", "input_per_mtok_usd": "0.20",
         "cached_input_per_mtok_usd": "0.075", "output_per_mtok_usd": "0.60"},
        {"model": "gpt-4o", "effective_from": "2027-03-01", "input_per_mtok_usd": "1",
         "output_per_mtok_usd": "1"},
    ]  # fmt: skip
    before = _snapshot()
    page = _import(staff, "prices.json", json.dumps({"prices": rows})).content.decode()
    assert "Nothing was imported" in page
    assert "row 2: unknown model &#x27;gpt-9&#x27;" in page
    assert "row 3: effective_from: &#x27;soon&#x27; is not a valid value" in page
    assert "row 4: input_per_mtok_usd:" in page
    assert "row 5: gpt-4o-mini from 2024-07-18 has billed requests and cannot change" in page
    assert "row 6: cached_input_per_mtok_usd is required" in page
    assert "row 1:" not in page
    assert _snapshot() == before


def test_a_file_that_is_not_a_price_book_is_refused(staff):
    page = _import(staff, "prices.json", "{not json").content.decode()
    assert "Nothing was imported" in page and "not JSON" in page
    page = _import(staff, "prices.csv", "name,price\nx,1\n").content.decode()
    assert "CSV header: missing column(s) model, effective_from" in page


def test_the_command_exports_and_imports(policy, tmp_path):
    out = StringIO()
    call_command("price_book", "export", "--format", "csv", stdout=out)
    path = tmp_path / "prices.csv"
    path.write_text(out.getvalue().replace("2024-10-01", "2027-01-01", 1))
    done = StringIO()
    call_command("price_book", "import", str(path), stdout=done)
    assert "1 row(s) added" in done.getvalue()
    assert ModelPrice.objects.filter(model__name="gpt-4o").count() == 2
    bad = tmp_path / "bad.json"
    bad.write_text('[{"model": "nope"}]')
    with pytest.raises(CommandError, match="row 1: unknown model"):
        call_command("price_book", "import", str(bad))


def test_a_model_with_billed_prices_cannot_be_deleted_one_without_takes_its_rows(policy):
    mini = ModelPrice.objects.get(model__name="gpt-4o-mini")
    UsageRecordFactory(price=mini)
    with pytest.raises(ProtectedError):
        mini.model.delete()
    nano = ModelPrice.objects.get(model__name="gpt-5.4-nano")
    nano.model.delete()
    assert not ModelPrice.objects.filter(pk=nano.pk).exists()
