"""Neural architecture search with reinforcement learning (Zoph & Le 2017, ICLR,
arXiv:1611.01578).

A recurrent controller writes a network's description one decision at a time, each
decision a softmax over that step's choices fed the previous choice (section 3.1); the
network it describes (the child) is trained, and its validation score is the reward that
trains the controller by REINFORCE (section 3.2):

    grad J = 1/m sum_k grad log P(a_1:T | theta) (R_k - b),

m children per step, b an exponential moving average of the earlier rewards. The paper's
controller is a 2-layer LSTM of 35 units, its weights drawn in +-0.08, trained by Adam
(learning rate 0.0006); its reward is the best validation accuracy of the child's last 5
epochs, cubed.

Two spaces. With ``search.layers``, the paper's own (section 4.1 with strides of 1, and the
skip connections of section 3.3): for each of ``count`` layers a filter height and width
in 1, 3, 5, 7 and 24, 36, 48 or 64 filters, then at the layer's anchor point a sigmoid for
each earlier layer, whether it feeds this one (``LayerController``); the child is a
`nas_cnn` (`esszoo.models.nas.nas_cnn`). Otherwise the decisions are the recipe's
``search.space``, as for Optuna: which zoo model, and its depth, widths or kernels where
the space offers them (a model's own arguments are decided only for the models that take
them, like Optuna's define-by-run), and training settings. A child that cannot be built
for the data (a grid below a model's minimum) earns the worst reward and the search goes
on. Each child is an ordinary run ``NAME-search/trial_NNNN``, scored on its
validation split: the paper's reward for a classification (the best validation accuracy,
cubed; every epoch of a run counts, runs being short here), minus the best validation
loss for other tasks. Scaled down: m = ``search.children_per_step`` (the paper's 10 per
replica on 800 GPUs), the children trained for the recipe's epochs, one after another.

Resuming: each finished child is written to ``nas_rl.json`` with its decisions and reward;
the same command replays them into a new controller (same seed, same updates) and
continues, so no finished child is trained again.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError, RecipeError
from esszoo.options import SearchRange
from esszoo.recipe import Recipe

HIDDEN, LAYERS, INIT, LR = 35, 2, 0.08, 6e-4  # section 4.1 (the CIFAR-10 controller)
BASELINE_DECAY = 0.95  # "an exponential moving average of the previous accuracies"
RECORD = "nas_rl.json"


def decisions(recipe: Recipe) -> dict[str, list[Any]]:
    """The space as lists of choices: integer ranges spelled out by their step; a range of
    real numbers has no finite softmax, and is refused in one line."""
    choices = {}
    for key, choice in recipe.search.space.items():
        if isinstance(choice, list):
            choices[key] = choice
        elif isinstance(choice, SearchRange) and choice.integers():
            step = int(choice.step or 1)
            choices[key] = list(range(int(choice.low), int(choice.high) + 1, step))
        else:
            raise RecipeError(
                f"--method nas-rl decides among choices, and search.space '{key}' is a range of "
                "real numbers",
                f"give {key} as a list, e.g. [1.0e-4, 3.0e-4, 1.0e-3]",
            )
    return choices


class Controller(nn.Module):
    """Section 3.1: an LSTM whose step t emits decision t, fed the embedding of decision t-1."""

    def __init__(self, choices: dict[str, list[Any]]):
        super().__init__()
        self.keys = list(choices)
        self.lstm = nn.LSTM(HIDDEN, HIDDEN, LAYERS)
        self.start = nn.Parameter(torch.zeros(1, 1, HIDDEN))
        self.embeddings = nn.ModuleDict(
            {str(i): nn.Embedding(len(choices[k]), HIDDEN) for i, k in enumerate(self.keys)}
        )
        self.heads = nn.ModuleDict(
            {str(i): nn.Linear(HIDDEN, len(choices[k])) for i, k in enumerate(self.keys)}
        )
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -INIT, INIT)

    def forward(self, taken: callable, given: dict[str, int] | None = None) -> tuple:
        """Decide key by key (`taken(key, decided)`: whether the key applies, given the
        decisions so far); with `given`, the log probability of those decisions instead of
        new draws. Returns (decisions as indices, log probability)."""
        inputs, state = self.start, None
        decided: dict[str, int] = {}
        log_prob = torch.zeros(())
        for i, key in enumerate(self.keys):
            if not taken(key, decided):
                continue
            output, state = self.lstm(inputs, state)
            log_p = F.log_softmax(self.heads[str(i)](output[0, 0]), dim=-1)
            index = given[key] if given is not None else int(torch.multinomial(log_p.exp(), 1))
            decided[key] = index
            log_prob = log_prob + log_p[index]
            inputs = self.embeddings[str(i)].weight[index].view(1, 1, -1)
        return decided, log_prob


class LayerController(nn.Module):
    """Sections 3.1 and 3.3, the paper's own space: for each layer a filter height, a filter
    width and a number of filters, then at the layer's anchor point one sigmoid per earlier
    layer, P(layer j feeds layer i) = sigmoid(v . tanh(W_prev h_j + W_curr h_i)). Without
    ``skips`` each layer reads the one before (the paper's first experiments)."""

    def __init__(self, options: Any):
        super().__init__()
        self.options = options
        self.choices = [
            ("height", list(options.heights)),
            ("width", list(options.widths)),
            ("filters", list(options.filters)),
        ]
        self.lstm = nn.LSTM(HIDDEN, HIDDEN, LAYERS)
        self.start = nn.Parameter(torch.zeros(1, 1, HIDDEN))
        self.embeddings = nn.ModuleList(nn.Embedding(len(v), HIDDEN) for _, v in self.choices)
        self.heads = nn.ModuleList(nn.Linear(HIDDEN, len(v)) for _, v in self.choices)
        self.w_prev = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.w_curr = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.v = nn.Linear(HIDDEN, 1, bias=False)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -INIT, INIT)

    def forward(self, given: list[int] | None = None) -> tuple[list[int], torch.Tensor]:
        """Draw a network's decisions (a flat list of indices and skip bits), or with `given`
        score those; returns (decisions, log probability)."""
        queue = list(given) if given is not None else None
        decisions: list[int] = []
        inputs, state, anchors = self.start, None, []
        log_prob = torch.zeros(())
        for _ in range(self.options.count):
            for head, embedding in zip(self.heads, self.embeddings, strict=True):
                output, state = self.lstm(inputs, state)
                log_p = F.log_softmax(head(output[0, 0]), dim=-1)
                index = (
                    queue.pop(0) if queue is not None else int(torch.multinomial(log_p.exp(), 1))
                )
                decisions.append(index)
                log_prob = log_prob + log_p[index]
                inputs = embedding.weight[index].view(1, 1, -1)
            if not self.options.skips:
                continue
            output, state = self.lstm(inputs, state)  # the anchor point
            anchor = output[0, 0]
            if anchors:
                earlier = self.w_prev(torch.stack(anchors))  # (layers so far, hidden)
                p = torch.sigmoid(self.v(torch.tanh(earlier + self.w_curr(anchor))).squeeze(-1))
                if queue is not None:
                    bits = torch.tensor([queue.pop(0) for _ in anchors], dtype=p.dtype)
                else:
                    bits = torch.bernoulli(p.detach())
                decisions += [int(b) for b in bits]
                p = p.clamp(1e-6, 1 - 1e-6)
                log_prob = log_prob + (bits * p.log() + (1 - bits) * (1 - p).log()).sum()
            anchors.append(anchor)
            inputs = anchor.view(1, 1, -1)
        return decisions, log_prob

    def layers(self, decisions: list[int]) -> list[dict[str, Any]]:
        """The child's description (`esszoo.models.nas.nas_cnn`) of a draw's decisions."""
        queue, layers = list(decisions), []
        for index in range(self.options.count):
            layer = {name: values[queue.pop(0)] for name, values in self.choices}
            if self.options.skips:
                bits = [queue.pop(0) for _ in range(index)]
                layer["inputs"] = [j for j, bit in enumerate(bits) if bit]
            else:
                layer["inputs"] = [index - 1] if index else []
            layers.append(layer)
        return layers


def describe(layers: list[dict[str, Any]]) -> str:
    """A child's layers in a line: height x width / filters, and the layers read."""
    return "; ".join(
        f"{layer['height']}x{layer['width']}/{layer['filters']}"
        f"<{','.join(map(str, layer['inputs'])) or 'in'}"
        for layer in layers
    )


def child_reward(run_dir: Path, classification: bool) -> tuple[float, float]:
    """(reward, best validation loss) of a trained child."""
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    finite = [v for v in losses if math.isfinite(v)]
    best_loss = min(finite) if finite else math.inf
    if classification:
        accuracy = max((float(r["val_acc"]) for r in rows if r.get("val_acc")), default=0.0)
        return accuracy**3, best_loss
    return (-best_loss if math.isfinite(best_loss) else -1e9), best_loss


def search_nas_rl(
    recipe: Recipe,
    raw: dict[str, Any],
    folder: Path,
    budget: int,
    timeout: float | None,
) -> list[dict[str, Any]]:
    """Train up to `budget` children (or until `timeout` seconds), the controller learning
    from their rewards; return the children as rows, best first."""
    from esszoo.automl.enas import Reinforce
    from esszoo.automl.search import _taken, trial_recipe
    from esszoo.training import train_recipe

    torch.manual_seed(recipe.trainer.seed)
    per_step = recipe.search.children_per_step
    classification = recipe.task.name == "classification"
    if recipe.search.layers is not None:  # the paper's space: the layers of a nas_cnn
        controller = LayerController(recipe.search.layers)

        def draw(given: Any = None) -> tuple[Any, torch.Tensor]:
            return controller(given)

        def values_of(decided: list[int]) -> dict[str, Any]:
            return {"model.name": "nas_cnn", "model.layers": controller.layers(decided)}

    else:  # the recipe's space
        choices = decisions(recipe)
        controller = Controller(choices)

        def taken(key: str, decided: dict[str, int]) -> bool:
            named = "model.name" in decided
            model = choices["model.name"][decided["model.name"]] if named else None
            return _taken(key, model or recipe.model.name)

        def draw(given: Any = None) -> tuple[Any, torch.Tensor]:
            return controller(taken, given)

        def values_of(decided: dict[str, int]) -> dict[str, Any]:
            return {key: choices[key][i] for key, i in decided.items()}

    reinforce = Reinforce(list(controller.parameters()), LR, BASELINE_DECAY)
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else []
    pending: list[tuple[torch.Tensor, float]] = []
    for child in record:  # replay: the controller learns again what it learnt
        _, log_prob = draw(child["decisions"])
        pending.append((log_prob, child["reward"]))
        if len(pending) == per_step:
            reinforce.step(*map(list, zip(*pending, strict=True)))
            pending = []
    if record:
        print(f"nas-rl: {len(record)} children already trained, replayed into the controller")
    started = time.perf_counter()
    while len(record) < budget:
        if timeout is not None and time.perf_counter() - started > timeout:
            break
        indices, log_prob = draw()
        values = values_of(indices)
        number = len(record)
        shown = {k: describe(v) if k == "model.layers" else v for k, v in values.items()}
        print(f"child {number}: {', '.join(f'{k}={v}' for k, v in shown.items())}")
        run = trial_recipe(raw, values, folder, number)
        began = time.perf_counter()
        try:
            run_dir = train_recipe(run, overwrite=True)
            value, loss = child_reward(run_dir, classification)
        except ModelError as error:  # a child that cannot be built for these data
            print(f"child {number} failed: {error}")
            run_dir, loss = run.run_dir(), math.inf
            earlier = [c["reward"] for c in record]
            value = 0.0 if classification else min(earlier, default=-1.0)  # the worst so far
        record.append(
            {
                "trial": number,
                "decisions": indices,
                "values": values,
                "reward": value,
                "val_loss": loss,
                "run": str(run_dir),
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
        record_path.write_text(json.dumps(record, indent=1, default=str) + "\n")
        pending.append((log_prob, value))
        if len(pending) == per_step:
            baseline = reinforce.step(*map(list, zip(*pending, strict=True)))
            rewards = ", ".join(f"{r:.4g}" for _, r in pending)
            print(f"controller step on rewards {rewards} (baseline {baseline:.4g})")
            pending = []
    rows = [
        {
            "trial": c["trial"],
            "state": "complete" if math.isfinite(c["val_loss"]) else "fail",
            "val_loss": c["val_loss"],
            "reward": c["reward"],
        }
        | {k: describe(v) if k == "model.layers" else v for k, v in c["values"].items()}
        | {"run": c["run"], "seconds": c["seconds"]}
        for c in record
    ]
    return sorted(rows, key=lambda r: -r["reward"])
