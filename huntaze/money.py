"""Money, defined once: the precision amounts and prices are stored with, the zero that sums
of them start from, and the one string form the API, exports and pages give them."""

from decimal import Decimal

from django.db.models import DecimalField, Value

USD_FIELD = {"max_digits": 20, "decimal_places": 10}  # amounts: the ledger's 10 places
LEDGER_PLACES = Decimal("0.0000000001")  # what amounts are rounded to: USD_FIELD's places
PRICE_FIELD = {"max_digits": 12, "decimal_places": 4}  # USD per 1M tokens; 4 places keep cost exact
# What a sum of amounts is when there is nothing to sum: Coalesce(Sum(...), ZERO).
ZERO = Value(Decimal("0"), output_field=DecimalField(**USD_FIELD))


def decimal_str(value: Decimal) -> str:
    """Return the value as plain digits, every stored place kept ("0.0000000000", never
    "0E-10"): exact for machines; only templates round."""
    return format(value, "f")
