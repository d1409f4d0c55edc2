"""The metric and the feature rule of scripts/safety_experiments.py, which the README's
"Safety: what was tried" figures come from."""

import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def experiments(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.delitem(sys.modules, "safety_experiments", raising=False)
    import safety_experiments

    return safety_experiments


def test_recall_is_read_where_five_percent_of_benign_rows_are_flagged(experiments):
    # given 100 benign rows scored 0..99 and 4 unsafe rows, two above the benign tail
    benign = np.arange(100, dtype=float)
    scores = np.concatenate([benign, [200.0, 150.0, 50.0, -1.0]])
    unsafe = np.array([False] * 100 + [True] * 4)
    look_alikes = np.zeros(104, dtype=bool)
    look_alikes[[10, 97, 98]] = True

    # when the cut flags 5% of benign rows
    cut, recall, edgy_flagged = experiments.recall_at_benign_share(scores, unsafe, look_alikes)

    # then at most 5 benign rows reach it, half the unsafe rows do, 2 of 3 look-alikes do
    assert cut == 95.0
    assert (benign >= cut).sum() == 5
    assert recall == 0.5
    assert edgy_flagged == pytest.approx(2 / 3)


def test_an_extra_feature_one_source_alone_uses_is_dropped(experiments):
    # given skip-gram features of four texts from two sources
    features = [["kill~process", "kill~him"], ["kill~process"], ["kill~process"], ["kill~him"]]
    sources = np.array(["nl2bash", "nl2bash", "team_safety", "advbench"])

    # when the block is built with train_router's rule (three uses, two sources)
    block = experiments.feature_block(features, sources, min_df=3, min_sources=2)

    # then only the feature three texts of two sources use is kept, as unit rows
    assert block.shape == (4, 1)
    assert block.toarray().ravel().tolist() == [1.0, 1.0, 1.0, 0.0]
