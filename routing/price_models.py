"""The price book: a model's prices, one row per price change (never overwritten)."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from huntaze.money import PRICE_FIELD

MULTIPLIER_FIELD = {"max_digits": 8, "decimal_places": 4, "validators": [MinValueValidator(0)]}
PRICE_VALIDATORS = [MinValueValidator(0)]


class ModelPrice(models.Model):
    """A model's prices from `effective_from` until the next row's date. A price change is a
    new row; a row the ledger has billed can be neither edited nor deleted (the ledger row
    keeps a reference to it). USD per 1M tokens."""

    # A model deleted takes its unbilled rows along; a billed row (the ledger PROTECTs it)
    # keeps the model from being deleted.
    model = models.ForeignKey(
        "routing.ModelProfile", on_delete=models.CASCADE, related_name="prices"
    )
    effective_from = models.DateField(help_text="UTC day from which requests bill at this row.")
    input_per_mtok_usd = models.DecimalField(**PRICE_FIELD, validators=PRICE_VALIDATORS)
    cached_input_per_mtok_usd = models.DecimalField(
        **PRICE_FIELD, validators=PRICE_VALIDATORS, help_text="Input read from the prompt cache."
    )
    output_per_mtok_usd = models.DecimalField(**PRICE_FIELD, validators=PRICE_VALIDATORS)
    cache_write_5m_per_mtok_usd = models.DecimalField(
        **PRICE_FIELD,
        validators=PRICE_VALIDATORS,
        null=True,
        blank=True,
        help_text="Writing the prompt cache, default (5-minute) lifetime, e.g. 1.25x input. "
        "Blank = written tokens bill as ordinary input (OpenAI).",
    )
    cache_write_1h_per_mtok_usd = models.DecimalField(
        **PRICE_FIELD,
        validators=PRICE_VALIDATORS,
        null=True,
        blank=True,
        help_text="Writing the prompt cache with the 1-hour lifetime, e.g. 2x input. "
        "Blank = as ordinary input.",
    )
    reasoning_per_mtok_usd = models.DecimalField(
        **PRICE_FIELD,
        validators=PRICE_VALIDATORS,
        null=True,
        blank=True,
        help_text="Reasoning tokens at their own price. Blank = billed as output (OpenAI).",
    )
    long_context_threshold_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Above this many input tokens the whole request bills at the multipliers "
        "below. Blank = no long-context tier.",
    )
    long_context_input_multiplier = models.DecimalField(**MULTIPLIER_FIELD, default=Decimal(1))
    long_context_output_multiplier = models.DecimalField(**MULTIPLIER_FIELD, default=Decimal(1))
    batch_multiplier = models.DecimalField(
        **MULTIPLIER_FIELD, default=Decimal("0.5"), help_text="Batch API: 0.5 = half price."
    )
    flex_multiplier = models.DecimalField(
        **MULTIPLIER_FIELD, default=Decimal(1), help_text="Flex processing, e.g. 0.5."
    )
    priority_multiplier = models.DecimalField(
        **MULTIPLIER_FIELD, default=Decimal(1), help_text="Priority processing, e.g. 1.7."
    )
    note = models.CharField(max_length=200, blank=True, help_text="Where the prices come from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model__name", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "effective_from"], name="one_price_row_per_model_and_day"
            ),
            models.CheckConstraint(
                condition=Q(cached_input_per_mtok_usd__lte=models.F("input_per_mtok_usd")),
                name="price_row_cached_not_above_input",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} from {self.effective_from}"
