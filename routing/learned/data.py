"""Labelled rows for training and evaluating the router, read in place (never copied here).

- `../shared/traindata`: categories (+ extra), safety pairs, per-prompt weak/strong outcomes;
- `../shared/evaldata/legalbench`: the dev LegalBench tasks (their README allows training on
  them), at most LEGALBENCH_PER_TASK rows a task so no task's template dominates;
- `routing/learned/examples/*.jsonl`: examples the team wrote itself, for the categories the
  public data lacks (marketing, strategy, legal and compliance requests, quiet unsafe requests
  and their safe look-alikes). Every row carries its source, for leave-one-source-out.
"""

import csv
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CATEGORIES = (
    "chatbot",
    "moderation",
    "marketing",
    "analytics",
    "analytics_plus",
    "strategy",
    "compliance",
    "legal",
    "code",
)
TEAM_DATA_DIR = Path(__file__).resolve().parent / "examples"
LEGALBENCH_PER_TASK = 25
COMPLIANCE_TASK_PREFIXES = (
    "privacy_policy_",
    "opp115_",
    "supply_chain_disclosure_",
    "corporate_lobbying",
)
_LEGALBENCH_META_COLUMNS = {"index", "answer", "document_name", "case id", "year", "label"}
# The exact pair the router defaults to; its outcome rows weigh more in the needs-premium fit.
OUR_PAIR = ("gpt-4o-2024-05-13", "gpt-4o-mini-2024-07-18")


@dataclass(frozen=True)
class LabelledText:
    text: str
    source: str
    category: str | None  # None: a row that only says safe or unsafe
    unsafe: bool | None  # None: a row with no safety label
    edgy: bool = False  # benign, but with a word or topic that sounds dangerous


@dataclass(frozen=True)
class Outcome:
    text: str
    source: str  # the data set (math-l5, crux, mmlu_pro/physics, ...), the leave-out unit
    prompt_key: str  # one prompt, whatever the pair: rows of a prompt stay on one side
    needs_premium: bool  # the weak model scored below the strong one
    our_pair: bool


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def labelled_texts(
    *, traindata: Path, evaldata: Path | None, examples: Path = TEAM_DATA_DIR
) -> list[LabelledText]:
    """Return every category and safety row, deduplicated on the text (first label wins)."""
    rows: list[LabelledText] = []
    # Safety pairs first: where a text is in both files, its look-alike mark is kept.
    for row in _jsonl(traindata / "safety_pairs.jsonl"):
        if row["unsafe"]:
            rows.append(LabelledText(row["text"], row["source"], "moderation", True))
        else:
            # Keyword-mined look-alikes say their real category; the others (benign twins of
            # harmful goals, harmless tweets that hit a hate lexicon) are conversation.
            category = row.get("category", "chatbot")
            rows.append(LabelledText(row["text"], row["source"], category, False, edgy=True))
    for name in ("categories.jsonl", "categories_extra.jsonl"):
        path = traindata / name
        if path.is_file():
            for row in _jsonl(path):
                moderation = row["label"] == "moderation"
                rows.append(LabelledText(row["text"], row["source"], row["label"], moderation))
    if evaldata is not None and (evaldata / "legalbench/tasks").is_dir():
        rows.extend(_legalbench(evaldata / "legalbench/tasks"))
    for path in sorted(examples.glob("*.jsonl")):
        for row in _jsonl(path):
            unsafe = row.get("unsafe", row["label"] == "moderation")
            edgy = not unsafe and row["source"] == "team_safety"
            rows.append(LabelledText(row["text"], row["source"], row["label"], unsafe, edgy))
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = " ".join(row.text.lower().split())
        if key and key not in seen and (row.category is None or row.category in CATEGORIES):
            seen.add(key)
            unique.append(row)
    return unique


def legalbench_text(row: dict) -> str:
    """Return a LegalBench row as one prompt: its text columns, without labels or ids."""
    return "\n".join(
        v for k, v in row.items() if k and k.lower() not in _LEGALBENCH_META_COLUMNS and v
    )


def _legalbench(tasks: Path) -> Iterator[LabelledText]:
    for path in sorted(tasks.glob("*/train.tsv")):
        task = path.parent.name
        category = "compliance" if task.startswith(COMPLIANCE_TASK_PREFIXES) else "legal"
        with path.open(newline="", encoding="utf-8") as handle:
            texts = [legalbench_text(row) for row in csv.DictReader(handle, delimiter="\t")]
        picked = random.Random(f"legalbench:{task}").sample(  # noqa: S311 (seeded)
            texts, min(LEGALBENCH_PER_TASK, len(texts))
        )
        for text in picked:
            yield LabelledText(text, "legalbench", category, False)


def outcomes(*, traindata: Path) -> list[Outcome]:
    """Return one row per prompt and model pair: did the weak model do worse?"""
    found = []
    for row in _jsonl(traindata / "outcomes.jsonl"):
        found.append(
            Outcome(
                text=row["text"],
                source=row["dataset"],
                prompt_key=f"{row['source']}:{row['prompt_id']}",
                needs_premium=row["score_weak"] < row["score_strong"],
                our_pair=(row["model_strong"], row["model_weak"]) == OUR_PAIR,
            )
        )
    return found


@dataclass(frozen=True)
class Verdict:
    """A judged request of our own traffic, as its hashed features: did premium do better?"""

    ngrams: dict[str, float]  # feature hash -> weight in the vector the router computed
    signals: tuple[float, ...]
    category: str
    complexity: float  # the complexity the request was routed with
    needs_premium: bool


def verdicts_from(rows: list[dict]) -> list[Verdict]:
    """Return Verdicts from stored evaluations (routing.quality_selectors.verdict_features_list)."""
    found = []
    for row in rows:
        features = row["features"]
        found.append(
            Verdict(
                ngrams={digest: weight for digest, weight in features.get("ngrams", [])},
                signals=tuple(features.get("signals", ())),
                category=row["category"],
                complexity=row["complexity"],
                needs_premium=row["verdict"] == "premium_better",
            )
        )
    return found
