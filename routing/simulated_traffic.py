"""The traffic `manage.py simulate` sends: the brief's category mix, the requests of each
category (from a fan's hello to a compliance question), how often each repeats, the creators'
personas (a shared prefix the provider's prompt cache can serve) and the parts that make a
request harder. Synthetic, written by the team; used by the simulate command and its tests."""

import random

# The brief's traffic mix (code and legal are rare: a few per ten thousand).
TRAFFIC_MIX = {
    "chatbot": 50.0,
    "moderation": 25.0,
    "marketing": 15.0,
    "analytics": 5.0,
    "strategy": 3.0,
    "analytics_plus": 1.5,
    "compliance": 0.5,
}

SUBJECTS = [
    "my new photo set",
    "the livestream",
    "my fitness program",
    "the cooking series",
    "the travel vlog",
    "my music release",
    "the behind-the-scenes pack",
]
FAN_LINES = [
    "hey babe how was your day?",
    "omg loved {s} so much!!",
    "when is the next drop?",
    "can you say hi to me in your next video?",
    "you look amazing today",
    "what's your favourite song right now?",
    "good morning sunshine",
    "I've been a fan for two years, thank you for {s}",
]
MODERATION_LINES = [
    "Flag or allow: 'you are so ugly nobody likes you'",
    "Is this spam? 'FREE followers click here'",
    "Should we remove this comment: 'I hate people like you, get lost'",
    "Moderate: 'great stream today, thanks!'",
    "Is this message hateful: 'go back to your country'",
]
MARKETING_LINES = [
    "Write an Instagram caption for {s}.",
    "Draft a promo email announcing {s}.",
    "Write three tweet variations teasing {s}.",
    "Write a TikTok hook for {s}.",
]
ANALYTICS_LINES = [
    "Summarise last week's metrics: 12,400 views, 830 new subscribers, 4.2% conversion.",
    "Which post performed best this month? Views: A 10k, B 22k, C 7k.",
    "Give me a short summary of revenue by channel: subs $4,200, tips $1,100, PPV $2,700.",
]
STRATEGY_LINES = [
    "How should I price my subscription tiers for {s}?",
    "Plan a 90-day growth strategy for {s}.",
    "Should I launch on a second platform or double down on {s}?",
]
DEEP_ANALYTICS_LINES = [
    "Run a cohort retention analysis of subscribers who joined in Q1 vs Q2.",
    "Forecast next quarter's revenue from this monthly series: 8.1k, 8.9k, 9.4k, 10.2k, 11.0k.",
    "Attribute conversions across email, TikTok and Instagram for {s}.",
]
COMPLIANCE_LINES = [
    "Does our fan data retention policy comply with GDPR for EU subscribers?",
    "Check this promotion for FTC disclosure requirements: 'I love this brand!'",
    "What age verification do we need before selling {s} in the UK?",
]
LINES = {
    "chatbot": FAN_LINES,
    "moderation": MODERATION_LINES,
    "marketing": MARKETING_LINES,
    "analytics": ANALYTICS_LINES,
    "strategy": STRATEGY_LINES,
    "analytics_plus": DEEP_ANALYTICS_LINES,
    "compliance": COMPLIANCE_LINES,
}
# Share of requests that repeat an earlier one word for word (same key): moderation sees the
# same spam again and again, dashboards ask the same summary; fans rarely repeat themselves.
REPEAT_RATE = {
    "chatbot": 0.03,
    "moderation": 0.30,
    "marketing": 0.05,
    "analytics": 0.25,
    "strategy": 0.02,
    "analytics_plus": 0.05,
    "compliance": 0.10,
}
# Categories whose calls carry the creator's persona and guidelines (about 1,100 tokens) as a
# shared system message: the prefix the provider's prompt cache can serve.
PERSONA_CATEGORIES = {"chatbot", "marketing"}
CREATORS = 20
PERSONA_WORDS = (
    "voice warm playful respectful never explicit always thank fans mention upcoming drops "
    "keep replies short use emojis sparingly avoid promises about private content"
).split()
# Additions that make a request harder, each as a complexity estimator would see it.
HARDER = [
    " Explain your reasoning step by step.",
    " Compare at least three options and analyse the trade-offs of each.",
    " Constraints: no more than 200 words, must include exactly 3 bullet points.",
    "\n| month | revenue | churn |\n|---|---|---|\n| Jan | 8100 | 4.1% |\n| Feb | 8900 | 3.8% |",
    " Then build a 6-month plan with milestones, a budget and a forecast for each month?",
    " What are the risks? How would you mitigate them? Which metric proves it worked?",
]


def simulated_prompt(rng: random.Random, category: str) -> str:
    """Return one request of the category, now and then with harder parts stacked on."""
    text = rng.choice(LINES[category]).format(s=rng.choice(SUBJECTS))
    if category == "chatbot":
        if rng.random() < 0.01:  # a fan in trouble: a critical trigger term
            text += " I want a refund or I'll do a chargeback."
        return text
    # Most requests are simple; a long tail stacks several harder parts.
    extra = min(int(rng.expovariate(1.0)), len(HARDER))
    return text + "".join(rng.sample(HARDER, extra))


def simulated_persona(creator: int) -> str:
    """Return the creator's persona and guidelines (about 1,100 tokens), the same every run."""
    rng = random.Random(f"persona-{creator}")
    words = [rng.choice(PERSONA_WORDS) for _ in range(1000)]
    return f"Creator #{creator} persona and guidelines: " + " ".join(words)
