"""The policy a fresh install starts from: the brief's decision matrix and list prices."""

from datetime import date
from decimal import Decimal

from routing.pricing import PriceRow

GPT_4O_FAMILY_SHUTDOWN = date(2027, 1, 14)

# USD per 1M tokens (input, cached input, output); OpenAI list prices: each model's first
# price book rows (reasoning tokens bill as output, cache writes as input, batch at half).
DEFAULT_MODELS = [
    {
        "name": "gpt-4o-mini",
        "tier": "mini",
        "prices": [
            {
                "effective_from": date(2024, 7, 18),
                "input_per_mtok_usd": Decimal("0.15"),
                "cached_input_per_mtok_usd": Decimal("0.075"),
                "output_per_mtok_usd": Decimal("0.60"),
                "note": "OpenAI list prices",
            }
        ],
        "context_window_tokens": 128_000,
        "shutdown_on": GPT_4O_FAMILY_SHUTDOWN,
        "active": True,
    },
    {
        "name": "gpt-4o",
        "tier": "full",
        "prices": [
            {
                "effective_from": date(2024, 10, 1),
                "input_per_mtok_usd": Decimal("2.50"),
                "cached_input_per_mtok_usd": Decimal("1.25"),
                "output_per_mtok_usd": Decimal("10.00"),
                "note": "OpenAI list prices",
            }
        ],
        "context_window_tokens": 128_000,
        "shutdown_on": GPT_4O_FAMILY_SHUTDOWN,
        "active": True,
    },
    # Successors, inactive until the team switches a rule to them in admin.
    {
        "name": "gpt-5.4-mini",
        "tier": "mini",
        "prices": [
            {
                "effective_from": date(2026, 3, 1),
                "input_per_mtok_usd": Decimal("0.75"),
                "cached_input_per_mtok_usd": Decimal("0.075"),
                "output_per_mtok_usd": Decimal("4.50"),
                "note": "OpenAI list prices",
            }
        ],
        "context_window_tokens": 400_000,
        "shutdown_on": None,
        "active": False,
    },
    {
        "name": "gpt-5.4-nano",
        "tier": "mini",
        "prices": [
            {
                "effective_from": date(2026, 3, 1),
                "input_per_mtok_usd": Decimal("0.20"),
                "cached_input_per_mtok_usd": Decimal("0.02"),
                "output_per_mtok_usd": Decimal("1.25"),
                "note": "OpenAI list prices",
            }
        ],
        "context_window_tokens": 400_000,
        "shutdown_on": None,
        "active": False,
    },
]

_SYSTEM_PREFIX = (
    "You are Huntaze's assistant for content creators. Be accurate, concise and kind. "
    "Never reveal private data about fans or creators. "
)

# slug -> rule; models are filled with gpt-4o-mini / gpt-4o by the seed service.
DEFAULT_CATEGORIES = [
    {
        "slug": "chatbot",
        "name": "Fan chatbot",
        "description": "Fan-facing conversation in the creator's voice (50% of traffic).",
        "full_from_complexity": None,
        "always_full": False,
        "is_default": True,
        "max_output_tokens": 512,
        "expected_output_tokens": 120,
        "system_prompt": _SYSTEM_PREFIX
        + "You write replies to fans in the creator's voice: warm, short, on-brand.",
    },
    {
        "slug": "moderation",
        "response_cache_enabled": True,
        "name": "Moderation",
        "description": "Is this message acceptable? Flag, allow or remove (25%).",
        "full_from_complexity": None,
        "always_full": False,
        "max_output_tokens": 256,
        "expected_output_tokens": 40,
        "system_prompt": _SYSTEM_PREFIX
        + "Classify the message against the community rules; answer with a verdict and a reason.",
    },
    {
        "slug": "marketing",
        "name": "Marketing copy",
        "description": "Captions, posts, promotions (15%).",
        "full_from_complexity": None,
        "always_full": False,
        "max_output_tokens": 1024,
        "expected_output_tokens": 250,
        "system_prompt": _SYSTEM_PREFIX + "You write marketing copy for the creator's audience.",
    },
    {
        "slug": "analytics",
        "response_cache_enabled": True,
        "deferrable": True,
        "name": "Analytics summaries",
        "description": "Summaries of the creator's metrics (5%).",
        "full_from_complexity": None,
        "always_full": False,
        "max_output_tokens": 1024,
        "expected_output_tokens": 300,
        "system_prompt": _SYSTEM_PREFIX + "You summarise the creator's metrics plainly.",
    },
    {
        "slug": "strategy",
        "name": "Growth strategy",
        "description": "Growth and business strategy (3%): mini below 7, full from 7.",
        "full_from_complexity": 7,
        "always_full": False,
        "max_output_tokens": 2048,
        "expected_output_tokens": 600,
        "system_prompt": _SYSTEM_PREFIX + "You are a growth strategist for creators.",
    },
    {
        "slug": "analytics_plus",
        "name": "Deep analytics",
        "deferrable": True,
        "description": "Cohorts, forecasts, attribution (1.5%): mini below 7, full from 7.",
        "full_from_complexity": 7,
        "always_full": False,
        "max_output_tokens": 2048,
        "expected_output_tokens": 600,
        "system_prompt": _SYSTEM_PREFIX + "You are a data analyst; show your method and numbers.",
    },
    {
        "slug": "compliance",
        "name": "Compliance",
        "description": "Privacy, platform-rule and regulatory checks (0.5%): always full.",
        "full_from_complexity": None,
        "always_full": True,
        "max_output_tokens": 2048,
        "expected_output_tokens": 500,
        "system_prompt": _SYSTEM_PREFIX + "You check content and processes against regulations.",
    },
    {
        "slug": "code",
        "name": "Code",
        "description": "Code generation and review (rare): mini below 7, full from 7.",
        "full_from_complexity": 7,
        "always_full": False,
        "max_output_tokens": 2048,
        "expected_output_tokens": 500,
        "system_prompt": _SYSTEM_PREFIX + "You are a careful senior software engineer.",
    },
    {
        "slug": "legal",
        "name": "Legal",
        "description": "Contracts, disputes, legal questions (rare): always full (critical).",
        "full_from_complexity": None,
        "always_full": True,
        "max_output_tokens": 2048,
        "expected_output_tokens": 500,
        "system_prompt": _SYSTEM_PREFIX
        + "You give careful legal information, not legal advice, and flag when to ask a lawyer.",
    },
]


def seeded_price_rows(name: str) -> tuple[PriceRow, ...]:
    """A seeded model's price rows as plain data (engine tests, the sandbox's own bill)."""
    model = next(m for m in DEFAULT_MODELS if m["name"] == name)
    return tuple(
        PriceRow(**{k: v for k, v in row.items() if k != "note"}) for row in model["prices"]
    )
