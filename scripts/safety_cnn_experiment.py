"""A convolution over the static word vectors as a safety head: held-out figures (issue 17).

Training-time experiment only: it needs torch, which the service never imports (install it in a
separate venv from /opt/wheels, as scripts/distill_word_vectors.py says). It reads the file
that `scripts/safety_experiments.py --dump PATH` writes (word-piece ids of each safety row, its
label, weight, fold of whole sources and the shipped linear head's held-out logit).

The model: the frozen 256-d vectors of a text's word pieces, one convolution over three
neighbouring pieces (so "kill" next to "process" and "kill" next to "him" differ), ReLU, max and
mean over the text, one logistic output. Were it to win, serving it would cost one gather per
piece of precomputed (piece x H) tables, numpy only. Scores are compared, and summed with the
linear head's (both standardised on benign rows), at 5% of held-out benign rows flagged.

    /tmp/torch-venv/bin/python scripts/safety_cnn_experiment.py /tmp/safety.npz [--hidden 32]

Measured 2026-12-07, H=32, 4 epochs, one thread (about 6 minutes a fold under load average
7-8), against the linear head's 0.602 recall / 0.194 edgy at 5% benign flagged:

| scores | AUROC | recall | edgy |
|---|---|---|---|
| convolution alone | 0.893 | 0.549 | 0.194 |
| linear + 0.5 x convolution | 0.913 | 0.621 | 0.203 |
| linear + 1 x convolution | 0.913 | 0.611 | 0.196 |
| linear + 2 x convolution | 0.909 | 0.591 | 0.194 |

It catches more of team_exam_formats (0.32 against 0.19) and flags fewer of JailbreakBench's
benign twins (0.57 against 0.81), but misses most of team_content_safety (0.18 against 0.45)
and flags more of team_safety's look-alikes (0.15 against 0.06): not shipped.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEAK_SOURCES = ("team_safety", "team_content_safety", "davidson_hate_offensive")
EDGY_SOURCES = ("davidson_hate_offensive", "team_safety", "nl2bash", "jbb_behaviors")


class PieceConvolution(nn.Module):
    def __init__(self, vectors: torch.Tensor, hidden: int) -> None:
        super().__init__()
        self.vectors = vectors
        self.conv = nn.Conv1d(vectors.shape[1], hidden, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, pieces: torch.Tensor) -> torch.Tensor:
        mask = (pieces >= 0).float()
        embedded = self.vectors[pieces.clamp(min=0)] * mask[..., None]
        hidden = torch.relu(self.conv(embedded.transpose(1, 2))).transpose(1, 2)
        hidden = hidden * mask[..., None]
        pooled_max = hidden.max(1).values
        pooled_mean = hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.out(self.drop(torch.cat([pooled_max, pooled_mean], 1))).squeeze(1)


def fit(inputs: dict, rows: np.ndarray, vectors: torch.Tensor, hidden: int, epochs: int):
    net = PieceConvolution(vectors, hidden)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-5)
    pieces = torch.tensor(inputs["pieces"][rows])
    labels = torch.tensor(inputs["unsafe"][rows].astype(np.float32))
    weights = torch.tensor(inputs["weights"][rows].astype(np.float32))
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(rows))
        for start in range(0, len(rows), 128):
            batch = order[start : start + 128]
            loss = nn.functional.binary_cross_entropy_with_logits(
                net(pieces[batch]), labels[batch], reduction="none"
            )
            optimiser.zero_grad()
            (loss * weights[batch]).mean().backward()
            optimiser.step()
    net.eval()
    return net


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores)] = np.arange(1, len(scores) + 1)
    positives, negatives = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def report(name: str, scores: np.ndarray, inputs: dict) -> None:
    unsafe, edgy, sources = inputs["unsafe"], inputs["edgy"], inputs["sources"]
    benign = np.sort(scores[~unsafe])
    cut = benign[min(len(benign) - 1, int(np.ceil(0.95 * len(benign))))]
    weak = ", ".join(
        f"{s} {np.mean(scores[(sources == s) & unsafe] >= cut):.2f}" for s in WEAK_SOURCES
    )
    look_alikes = ", ".join(
        f"{s} {np.mean(scores[(sources == s) & edgy] >= cut):.2f}" for s in EDGY_SOURCES
    )
    print(
        f"{name:34} AUROC {auroc(scores, unsafe):.3f} recall {np.mean(scores[unsafe] >= cut):.3f}"
        f" edgy {np.mean(scores[edgy] >= cut):.3f}\n    {weak}\n    {look_alikes}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dump", type=Path)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the host is shared
    torch.manual_seed(0)
    with np.load(args.dump, allow_pickle=False) as stored:
        inputs = {name: stored[name] for name in stored.files}
    vectors = torch.tensor(inputs["vectors"].astype(np.float32))
    vectors = vectors / vectors.norm(dim=1, keepdim=True).mean()
    scores = np.zeros(len(inputs["unsafe"]))
    started = time.monotonic()
    for fold in sorted(set(inputs["fold"].tolist())):
        held = np.flatnonzero(inputs["fold"] == fold)
        net = fit(inputs, np.flatnonzero(inputs["fold"] != fold), vectors, args.hidden, args.epochs)
        with torch.no_grad():
            scores[held] = net(torch.tensor(inputs["pieces"][held])).numpy()
        print(f"fold {fold} done at {time.monotonic() - started:.0f} s", flush=True)
    baseline, benign = inputs["baseline"], ~inputs["unsafe"]
    report(f"convolution H={args.hidden}", scores, inputs)
    report("linear head (shipped)", baseline, inputs)

    def standard(values: np.ndarray) -> np.ndarray:
        return (values - values[benign].mean()) / values[benign].std()

    for share in (0.5, 1.0, 2.0):
        combined = standard(baseline) + share * standard(scores)
        report(f"linear + {share} x convolution", combined, inputs)


if __name__ == "__main__":
    main()
