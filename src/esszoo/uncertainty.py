"""Uncertainty for any model of the zoo: draws of its predictions, and the scores that say
whether their spread can be trusted.

A recipe's ``uncertainty`` section turns it on, for any task:

- ``method: bayes``: Bayes by Backprop (Blundell et al. 2015; `esszoo.layers.bayesian`).
  The model is made Bayesian (its linear and convolutional layers; ``model.bayesian``
  sets the prior and the way of drawing), trained on the free energy, and each draw of
  a prediction is a draw of its weights.
- ``method: mc_dropout`` (Gal & Ghahramani 2016, arXiv:1506.02142): the model's dropout
  stays on at prediction, and each draw is a new dropout mask; the model must have
  dropout (``model.dropout``).
- ``method: ensemble``: deep ensembles (Lakshminarayanan, Pritzel & Blundell 2017,
  arXiv:1612.01474), the usual strong reference: `members` runs of the recipe that differ
  only in their seed (the run's, then seed + 1, ...; kept in the run's ``members/``
  folder), each member a draw. The paper also trains each member on a proper scoring
  rule with adversarial examples; here each member keeps the recipe's own loss.

`samples` draws of every test prediction are scored against the truth beside a
climatological ensemble (draws of training targets, the reference that needs no
learning): CRPS of the ensemble (scoringrules), the share of the truth inside the
central 50% and 90% intervals of the draws (a calibrated model: 0.5 and 0.9, less a
little for few draws: the interval between the empirical quantiles of n draws holds
(n - 1) / (n + 1) of the level's probability on average), and the
spread-skill ratio, the mean spread over the RMSE of the draws' mean with the finite
ensemble's factor sqrt((n + 1) / n) (Fortin et al. 2014: 1 when calibrated; below 1 the
model is over-confident). The run writes them to uncertainty.csv and the reliability
diagram (the coverage of central intervals at every nominal level) to reliability.png.
`esszoo predict` then writes a mean, a spread and the draws, along a ``realization``
dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.bayesian import bayesian_layers, sampling
from esszoo.options import UncertaintyOptions
from esszoo.tasks.baselines import headline_losses

LEVELS = np.round(np.arange(0.1, 1.0, 0.1), 2)  # nominal coverages of the reliability diagram


def check_model(net: nn.Module, method: str, name: str) -> None:
    """One clear line if `net` cannot draw by `method`."""
    if method == "bayes" and not bayesian_layers(net):
        raise ModelError(
            f"model '{name}' has no Bayesian layers for uncertainty.method bayes",
            "set model.bayesian: {} (or choose bnn_mlp)",
        )
    if method == "mc_dropout" and not _dropouts(net):
        raise ModelError(
            f"model '{name}' has no dropout for uncertainty.method mc_dropout",
            "give it dropout (e.g. model.dropout: 0.1), or choose method bayes",
        )


def _dropouts(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextmanager
def drawing(net: nn.Module, method: str) -> Iterator[nn.Module]:
    """Within the block, each forward pass of `net` (in eval mode) is one draw."""
    if method == "bayes":
        with sampling(net):
            yield net
        return
    dropouts = _dropouts(net)
    for module in dropouts:
        module.train()
    try:
        yield net
    finally:
        for module in dropouts:
            module.eval()


def draws(
    predict: Callable[[nn.Module], Any], members: list[nn.Module], options: UncertaintyOptions
) -> list[Any]:
    """Draws of `predict(model)` (the model's predictions: tensors, or datasets): one per
    member of an ensemble, else `options.samples` of the one model `members[0]`,
    reproducible from `options.seed` (the global generator is left as it was)."""
    if options.method == "ensemble":
        with torch.no_grad():
            return [predict(member) for member in members]
    model = members[0]
    state = torch.random.get_rng_state()
    torch.manual_seed(options.seed)
    try:
        with torch.no_grad(), drawing(model, options.method):
            return [predict(model) for _ in range(options.samples)]
    finally:
        torch.random.set_rng_state(state)


def draw_count(options: UncertaintyOptions) -> int:
    return options.members if options.method == "ensemble" else options.samples


def climatological_draws(
    train_targets: torch.Tensor, like: torch.Tensor, seed: int
) -> torch.Tensor:
    """`len(like)` draws per test sample from the training targets: the same draws, for
    every sample, of the climate the model learnt from."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(train_targets), generator=generator)[: like.shape[0]]
    members = train_targets[chosen]  # (S, *sample)
    return members.unsqueeze(1).expand(like.shape[0], like.shape[1], *members.shape[1:])


def probabilistic_scores(ensemble: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """CRPS, coverage of the central 50% and 90% intervals and the spread-skill ratio of
    `ensemble` (draws first) against `truth`, over the points where the truth is known."""
    import scoringrules

    members = ensemble.double().flatten(1).numpy()  # (S, points)
    observed = truth.double().flatten().numpy()
    known = np.isfinite(observed) & np.isfinite(members).all(0)
    members, observed = members[:, known], observed[known]
    count = members.shape[0]
    mean, spread = members.mean(0), members.std(0, ddof=1)
    rmse = float(np.sqrt(np.mean((mean - observed) ** 2)))
    scores = {
        "crps": float(np.mean(scoringrules.crps_ensemble(observed, members, m_axis=0))),
        "rmse_of_mean": rmse,
        "spread": float(np.sqrt(np.mean(spread**2))),
    }
    coverage = interval_coverage(members, observed, LEVELS)
    scores |= {"coverage_50": coverage[0.5], "coverage_90": coverage[0.9]}
    factor = np.sqrt((count + 1) / count)
    scores["spread_skill"] = factor * scores["spread"] / rmse if rmse > 0 else float("nan")
    return scores


def interval_coverage(
    members: np.ndarray, observed: np.ndarray, levels: np.ndarray
) -> dict[float, float]:
    """The share of `observed` inside the central interval of each nominal `level` of the
    draws (their empirical quantiles)."""
    coverage = {}
    for level in levels:
        low, high = np.quantile(members, [(1 - level) / 2, (1 + level) / 2], axis=0)
        coverage[float(level)] = float(np.mean((observed >= low) & (observed <= high)))
    return coverage


def reliability_plot(
    ensembles: dict[str, torch.Tensor], truth: torch.Tensor, path: Path, title: str = ""
) -> None:
    """Observed against nominal coverage of central intervals, one line per predictor."""
    from esszoo.plots import _pyplot, _save

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    observed = truth.double().flatten().numpy()
    for name, ensemble in ensembles.items():
        members = ensemble.double().flatten(1).numpy()
        known = np.isfinite(observed) & np.isfinite(members).all(0)
        coverage = interval_coverage(members[:, known], observed[known], LEVELS)
        axis.plot(LEVELS, list(coverage.values()), marker="o", markersize=3, label=name)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
    axis.set_xlabel("nominal coverage of the central interval")
    axis.set_ylabel("observed coverage")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title or "reliability")
    _save(figure, path)
    plt.close(figure)


def score_uncertainty(
    predict: Callable[[nn.Module], torch.Tensor],
    members: list[nn.Module],
    options: UncertaintyOptions,
    truth: torch.Tensor,
    train_targets: torch.Tensor,
    model_label: str,
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Rows of probabilistic scores of the model's draws and of the climatological
    ensemble, and the ensembles themselves."""
    count = draw_count(options)
    ensembles = {
        model_label: torch.stack(draws(predict, members, options)),
        "baseline: climatological ensemble": climatological_draws(
            train_targets, torch.empty(count, len(truth)), options.seed
        ),
    }
    rows = [
        {"predictor": name, "method": options.method if name == model_label else "climatology",
         "samples": count} | probabilistic_scores(ensemble, truth)
        for name, ensemble in ensembles.items()
    ]  # fmt: skip
    headline_losses(rows, ("crps", "lower"), [model_label])  # marked if climatology wins
    return rows, ensembles
