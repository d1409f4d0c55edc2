"""What a training run leaves behind: the trained arrays as one .npz and its model card.

`TrainedRouter` holds the arrays and the card's facts; `write_artifact` names the artifact
after its date and a hash of its content (router-<date>-<hash>), stores the arrays and the
card as JSON in the .npz (no pickles: routing.learned.model.load_router reads it) and writes
the same card as Markdown beside it for people. The format is fixed by what is already
shipped in routing/learned/artifacts/: change it only with ARTIFACT_FORMAT.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


@dataclass
class TrainedRouter:
    feature_names: list[str]
    idf: np.ndarray
    category_weights: np.ndarray
    category_bias: np.ndarray
    safety_weights: np.ndarray
    premium_weights: np.ndarray
    premium_signal_weights: np.ndarray
    signal_mean: np.ndarray
    signal_scale: np.ndarray
    meaning_weights: np.ndarray | None = None  # (dimensions, 9 classes + safety)
    card: dict = field(default_factory=dict)


def write_artifact(trained: TrainedRouter, directory: Path, *, now: datetime | None = None) -> Path:
    """Write router-<date>-<hash>.npz and its model card; return the artifact's path."""
    arrays = {
        "feature_names": np.array("\n".join(trained.feature_names)),
        "idf": trained.idf,
        "category_weights": trained.category_weights.astype(np.float32),
        "category_bias": trained.category_bias.astype(np.float32),
        "safety_weights": trained.safety_weights.astype(np.float32),
        "premium_weights": trained.premium_weights.astype(np.float32),
        "premium_signal_weights": trained.premium_signal_weights.astype(np.float32),
        "signal_mean": trained.signal_mean,
        "signal_scale": trained.signal_scale,
    }
    if trained.meaning_weights is not None:
        arrays["meaning_weights"] = trained.meaning_weights.astype(np.float32)
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    digest.update(json.dumps(trained.card, sort_keys=True).encode())
    now = now or datetime.now(UTC)
    artifact_id = f"router-{now:%Y%m%d}-{digest.hexdigest()[:8]}"
    card = {
        **trained.card,
        "artifact_id": artifact_id,
        "trained_at": now.isoformat(timespec="seconds"),
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{artifact_id}.npz"
    np.savez_compressed(path, **arrays, card=np.array(json.dumps(card, sort_keys=True)))
    (directory / f"{artifact_id}.md").write_text(model_card(card), encoding="utf-8")
    return path


def model_card(card: dict) -> str:
    """Return the artifact's model card as Markdown."""
    data, metrics = card["data"], card["held_out_metrics"]
    lines = [
        f"# Router model card: {card['artifact_id']}",
        "",
        f"Trained {card['trained_at']} by `python manage.py train_router` (seed "
        f"{card['config']['seed']}), features `{card['features']}`, vocabulary "
        f"{data['vocabulary']:,} n-grams used by at least {card['config']['min_sources']} sources"
        + (
            f", and the meaning vector of `{card['meaning']['table']}` (static word vectors "
            "distilled from all-MiniLM-L6-v2, Apache-2.0)."
            if card.get("meaning")
            else "."
        ),
        "",
        "## Data",
        "",
        "| category | rows |",
        "|---|---|",
        *(f"| {name} | {count:,} |" for name, count in data["category_rows"].items()),
        "",
        f"Safety rows: {data['safety_rows']['unsafe']:,} unsafe, {data['safety_rows']['benign']:,} "
        f"benign. Needs-premium rows: {data['outcome_rows']:,} (prompt x model pair) over "
        f"{data['outcome_prompts']:,} prompts, and {data.get('verdict_rows', 0):,} shadow "
        f"verdicts of our own traffic; it reads {', '.join(card['config']['premium_signals'])}"
        f"{' and the n-grams' if card['config']['premium_ngrams'] else ''}.",
        "",
        "Sources: " + ", ".join(f"{s} {n:,}" for s, n in data["category_sources"].items()) + ".",
        "",
        "## Calibration (fitted on out-of-source predictions)",
        "",
        f"- category softmax temperature {card['category_temperature']}",
        f"- safety threshold {card['safety_threshold']} (at most "
        f"{card['config']['max_benign_flagged']:.0%} of held-out benign rows flagged)",
        f"- needs-premium Platt scale {card['premium_scale']}",
        "",
        "## Held-out figures (whole sources held out, 5 folds)",
        "",
        *(f"- {name}: {value}" for name, value in metrics.items()),
        "",
        "`make eval-router` gives the full leave-one-source-out report.",
        "",
    ]
    return "\n".join(lines)
