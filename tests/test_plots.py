"""Plots a researcher trusts (issue 13, item 5): legends that name what is drawn, degenerate
cases said in the figure, readable axes."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from facelab.research import plots


def _blobs(n_groups: int, per: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_groups, 16))
    x = np.repeat(centres, per, axis=0) + 0.05 * rng.standard_normal((n_groups * per, 16))
    return x, np.repeat(np.arange(n_groups), per)


def test_embedding_map_gives_each_of_a_dozen_people_a_colour_and_a_legend() -> None:
    x, labels = _blobs(12)
    labels[:3] = -1
    ax = plots.embedding_map(x, labels, method="pca", group="person",
                             names={i: f"P{i}" for i in range(12)})
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "noise (3)" and "P0 (5)" in texts and "P11 (8)" in texts
    assert len(texts) == 13
    colours = {tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections[1:]}
    assert len(colours) == 12                       # no colour used twice
    x, labels = _blobs(30)
    ax = plots.embedding_map(x, labels, method="pca")
    assert ax.get_legend() is None and "colours repeat every 20 clusters" in ax.get_title()
    plt.close("all")


def _cal(strategy: str, coverage: np.ndarray, precision: np.ndarray, *, suggest: float,
         auto: float) -> SimpleNamespace:
    curve = {"threshold": np.linspace(0.9, 0.99, coverage.size), "coverage": coverage,
             "precision": precision, "lower": precision - 0.01,
             "n_above": np.full(coverage.size, 50)}
    return SimpleNamespace(strategy=strategy, curve=curve, ok=True, coverage=0.5,
                           precision=0.99, auto=auto, suggest=suggest, precision_lower=0.98,
                           n_above=100, target_precision=0.99)


def test_identical_strategy_curves_are_drawn_once_and_named_together() -> None:
    cov, prec = np.linspace(0.1, 0.9, 9), np.linspace(1.0, 0.95, 9)
    cals = [_cal("exemplar", cov, prec, suggest=0.93, auto=0.96),
            _cal("centroid", cov, prec, suggest=0.93, auto=0.96),
            _cal("multi", cov, prec - 0.02, suggest=0.93, auto=0.96)]
    ax = plots.precision_coverage(cals)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "exemplar = centroid (identical)" in texts and "multi" in texts
    assert not any(t == "centroid" for t in texts)
    plt.close("all")


def test_an_empty_suggestion_band_is_said_not_drawn_as_nothing() -> None:
    cov, prec = np.linspace(0.1, 0.9, 9), np.linspace(1.0, 0.95, 9)
    ax = plots.calibrated_thresholds([_cal("exemplar", cov, prec, suggest=0.96, auto=0.96),
                                      _cal("centroid", cov, prec, suggest=0.93, auto=0.96)])
    texts = [t.get_text() for t in ax.texts]
    assert any("no suggestion band: suggest = auto" in t for t in texts)
    assert any("suggest 0.9300" in t for t in texts)
    plt.close("all")


def test_loss_axis_reads_as_plain_numbers_and_whole_epochs() -> None:
    history = [{"epoch": e, "train_loss": 0.4213 - 1e-4 * e, "val_loss": 0.4220 - 1e-4 * e,
                "val_auc": 0.99 + 1e-4 * e} for e in range(6)]
    ax = plots.loss_curves(history)
    ax.figure.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close("all")
