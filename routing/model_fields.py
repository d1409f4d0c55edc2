"""Field definitions that several routing models share, spelled once: a share of traffic or
users in percent, 0 to 100 with two places (`models.DecimalField(**PERCENT_FIELD, ...)`)."""

from django.core.validators import MaxValueValidator, MinValueValidator

PERCENT_FIELD = {
    "max_digits": 5,
    "decimal_places": 2,
    "validators": [MinValueValidator(0), MaxValueValidator(100)],
}
