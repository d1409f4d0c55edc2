"""Money in templates: rounded for people, never to a misleading $0.00."""

from decimal import ROUND_HALF_UP, Decimal

from django import template

register = template.Library()

PLACES = (2, 4, 6, 8, 10)  # the ledger keeps ten


@register.filter
def usd(amount) -> str:
    """Round to cents, or to as few more places as show that a small amount is not zero:
    1234.5 -> "1,234.50", 0.000312 -> "0.0003", 0.0000027 -> "0.000003"."""
    if amount is None or amount == "":
        return ""
    value = Decimal(str(amount))
    for places in PLACES:
        rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        if rounded or not value:
            return f"{rounded:,f}"
    return f"{rounded:,f}"
