"""The price book as a file: export every row as JSON or CSV, import such a file back.

An import is all or nothing: every row is checked first (model known, dates and prices
valid, no billed row changed) and any error names its row; then, in one transaction, new
rows are added, unbilled rows with new values corrected, identical rows left as they are,
and one policy version records the change."""

import csv
import io
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction

from routing.models import ModelProfile
from routing.price_models import ModelPrice
from routing.pricing import INTEGER_COLUMNS, OPTIONAL_COLUMNS, PRICE_COLUMNS

FILE_COLUMNS = ("model", "effective_from", *PRICE_COLUMNS, "note")
REQUIRED_COLUMNS = ("model", "effective_from", *PRICE_COLUMNS[:3])
FORMATS = ("json", "csv")


class PriceBookImportError(Exception):
    """A file that cannot be imported: every problem found, one line each."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ImportResult:
    added: int
    corrected: int
    unchanged: int


def _file_value(row: ModelPrice, column: str) -> str | int | None:
    if column == "model":
        return row.model.name
    value = getattr(row, column)
    if value is None or column in INTEGER_COLUMNS or column == "note":
        return value
    return value.isoformat() if isinstance(value, date) else str(value)


def price_book_rows() -> list[dict]:
    """Every price row as the files hold it, by model then date."""
    rows = ModelPrice.objects.select_related("model").order_by("model__name", "effective_from")
    return [{column: _file_value(row, column) for column in FILE_COLUMNS} for row in rows]


def price_book_export(fmt: str) -> str:
    """The whole price book as a JSON or CSV document (blanks: null in JSON, empty in CSV)."""
    rows = price_book_rows()
    if fmt == "json":
        return json.dumps({"prices": rows}, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FILE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()


def _parse_file(content: str, fmt: str) -> list[dict]:
    if fmt == "json":
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise PriceBookImportError([f"not JSON: {exc}"]) from exc
        rows = data.get("prices") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise PriceBookImportError(['JSON: expected {"prices": [{...}, ...]} or a list'])
        return rows
    reader = csv.DictReader(io.StringIO(content))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise PriceBookImportError([f"CSV header: missing column(s) {', '.join(missing)}"])
    return [{k: (None if v == "" else v) for k, v in row.items() if k} for row in reader]


def _row_values(raw: dict) -> dict:
    """The row's fields as the model takes them; ValueError names the first bad one."""
    unknown = sorted(set(raw) - set(FILE_COLUMNS) - {"id"})
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}")
    values = {"note": str(raw.get("note") or "")}
    for column in ("effective_from", *PRICE_COLUMNS):
        value = raw.get(column)
        if value is None:
            if column in OPTIONAL_COLUMNS:
                values[column] = None
                continue
            if column in REQUIRED_COLUMNS:
                raise ValueError(f"{column} is required")
            continue  # a multiplier left out: its default
        try:
            if column == "effective_from":
                values[column] = date.fromisoformat(str(value))
            elif column in INTEGER_COLUMNS:
                values[column] = int(str(value))
            else:
                values[column] = Decimal(str(value))
        except (ValueError, InvalidOperation):
            raise ValueError(f"{column}: {value!r} is not a valid value") from None
    return values


def _checked_rows(raw_rows: list[dict]) -> tuple[list[ModelPrice], list[str]]:
    models = {m.name: m for m in ModelProfile.objects.all()}
    existing = {
        (r.model_id, r.effective_from): r for r in ModelPrice.objects.select_related("model")
    }
    billed = set(
        ModelPrice.objects.filter(usage_records__isnull=False).values_list("pk", flat=True)
    )
    rows, errors, seen = [], [], set()
    for number, raw in enumerate(raw_rows, start=1):
        label = f"row {number}"
        try:
            model = models.get(str(raw.get("model") or ""))
            if model is None:
                raise ValueError(f"unknown model {raw.get('model')!r}")
            values = _row_values(raw)
            key = (model.pk, values["effective_from"])
            if key in seen:
                raise ValueError("the file has this model and date twice")
            seen.add(key)
            row = existing.get(key) or ModelPrice(model=model)
            changed = any(getattr(row, k) != v for k, v in values.items() if k != "note")
            if row.pk in billed and changed:
                raise ValueError(
                    f"{model.name} from {values['effective_from']} has billed requests and "
                    "cannot change: add a row with a later effective_from"
                )
            for name, value in values.items():
                setattr(row, name, value)
            row.full_clean(validate_unique=False)
            rows.append((row, row.pk is None, changed))
        except ValidationError as exc:
            errors.append(f"{label}: " + "; ".join(
                f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()
            ))  # fmt: skip
        except ValueError as exc:
            errors.append(f"{label}: {exc}")
    return rows, errors


def price_book_import(content: str, fmt: str, *, actor: str) -> ImportResult:
    """Import a JSON or CSV price book file, all or nothing (PriceBookImportError lists every
    bad row and nothing is written)."""
    from routing.policy_versions import policy_version_create

    if fmt not in FORMATS:
        raise PriceBookImportError([f"format must be one of {', '.join(FORMATS)}"])
    raw_rows = _parse_file(content, fmt)
    if not raw_rows:
        raise PriceBookImportError(["the file has no rows"])
    with transaction.atomic():
        rows, errors = _checked_rows(raw_rows)
        if errors:
            raise PriceBookImportError(errors)
        added = corrected = 0
        for row, new, changed in rows:
            if new or changed:
                row.save()
            added += new
            corrected += changed and not new
        result = ImportResult(added, corrected, len(rows) - added - corrected)
        if added or corrected:
            policy_version_create(
                actor=actor,
                comment=f"price book import: {added} added, {corrected} corrected",
            )
    return result
