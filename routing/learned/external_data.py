"""The evaluation-only data sets (../shared/evaldata) as rows: nobody trains on them.

Category rows from MMLU subjects that map to a router category, GSM8K (analytics), HateCheck's
hateful cases (moderation) and awesome-chatgpt-prompts roles that plainly belong to one
category, at most EXTERNAL_PER_SET per set by a seeded sample; HateCheck's non-hateful cases
for the share of benign text flagged; and RouteLLM's MMLU and GSM8K prompts with whether the
weak model (Mixtral) and the strong one (GPT-4) answered correctly, for needs premium.
`make eval-router` (routing.learned.evaluation) reads them; only the file layout of those
downloads is assumed here.
"""

import csv
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

MMLU_CATEGORIES = {
    "marketing": "marketing",
    "public_relations": "marketing",
    "management": "strategy",
    "business_ethics": "strategy",
    "professional_law": "legal",
    "jurisprudence": "legal",
    "international_law": "legal",
    "college_computer_science": "code",
    "econometrics": "analytics",
    "high_school_statistics": "analytics",
}
# awesome-chatgpt-prompts roles that plainly belong to one router category; others are skipped.
AWESOME_ROLES = {
    "code": (
        "Ethereum Developer, Linux Terminal, JavaScript Console, UX/UI Developer, "
        "Cyber Security Specialist, SQL terminal, IT Architect, Python interpreter, "
        "Machine Learning Engineer, IT Expert, Fullstack Software Developer, Regex Generator, "
        "R programming Interpreter, StackOverflow Post, PHP Interpreter, "
        "Software Quality Assurance Tester, Senior Frontend Developer, Commit Message Generator, "
        "Python Interpreter"
    ),
    "marketing": (
        "SEO Prompt, Advertiser, Social Media Influencer, Social Media Manager, Salesperson"
    ),
    "analytics": (
        "Excel Sheet, Statistician, Accountant, Scientific Data Visualizer, Data Scientist"
    ),
    "strategy": "Chief Executive Officer, Product Manager, Startup Idea Generator, Logistician",
    "legal": "Legal Advisor, Startup Tech Lawyer",
    "chatbot": "Friend",
}
EXTERNAL_PER_SET = 300


@dataclass(frozen=True)
class Judged:
    """A prompt with weak/strong correctness flags (RouteLLM)."""

    text: str
    dataset: str
    weak: bool
    strong: bool


def awesome_role_categories() -> dict[str, str]:
    """Return each awesome-chatgpt-prompts role ("act") mapped to our category."""
    return {
        role.strip(): category
        for category, roles in AWESOME_ROLES.items()
        for role in roles.split(",")
    }


def external_categories(evaldata: Path) -> list[tuple[str, str, str]]:
    """Return (dataset, text, category) rows from evaluation-only data sets, sampled."""
    rows: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path in sorted((evaldata / "routellm/mmlu_responses").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        if subject in MMLU_CATEGORIES:
            with path.open(newline="", encoding="utf-8") as handle:
                for row in csv.reader(handle):
                    if row[0] != "prompt":
                        rows[f"mmlu/{subject}"].append((row[0], MMLU_CATEGORIES[subject]))
    for judged in _gsm8k(evaldata):
        rows["gsm8k"].append((judged.text, "analytics"))
    with (evaldata / "moderation/hatecheck/test_suite_cases.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label_gold"] == "hateful":
                rows["hatecheck/hateful"].append((row["test_case"].strip(), "moderation"))
    role_category = awesome_role_categories()
    with (evaldata / "awesome_chatgpt_prompts/prompts_2025-01-06.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["act"].strip() in role_category:
                rows["awesome_prompts"].append((row["prompt"], role_category[row["act"].strip()]))
    sampled = []
    for name in sorted(rows):
        picked = _sample(rows[name], EXTERNAL_PER_SET, name)
        sampled.extend((name, text, label) for text, label in picked)
    return sampled


def hatecheck_benign(evaldata: Path) -> list[str]:
    with (evaldata / "moderation/hatecheck/test_suite_cases.csv").open(newline="") as handle:
        return [
            r["test_case"].strip() for r in csv.DictReader(handle) if r["label_gold"] != "hateful"
        ]


def routellm_judged(evaldata: Path) -> list[Judged]:
    """Return MMLU (all subjects) and GSM8K prompts with Mixtral (weak) / GPT-4 (strong) flags."""
    found = []
    for path in sorted((evaldata / "routellm/mmlu_responses").glob("mmlu_*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            weak = header.index("mistralai/Mixtral-8x7B-Instruct-v0.1")
            strong = header.index("gpt-4-1106-preview")
            for row in reader:
                found.append(Judged(row[0], "mmlu", row[weak] == "True", row[strong] == "True"))
    return found + list(_gsm8k(evaldata))


def _gsm8k(evaldata: Path):
    with (evaldata / "routellm/gsm8k_gsm8k_responses.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            yield Judged(
                row["prompt"],
                "gsm8k",
                row["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True",
                row["gpt-4-1106-preview"] == "True",
            )


def _sample(items: list, count: int, name: str) -> list:
    if len(items) <= count:
        return items
    return random.Random(f"eval:{name}").sample(items, count)  # noqa: S311 (seeded)
