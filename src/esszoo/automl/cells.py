"""Cell searches on a recipe's data: DARTS and ENAS train one supernet, then the cells they
find are retrained from scratch as the recipe's model (`darts`), an ordinary run.

Both searches split the recipe's training split in halves, as the papers split CIFAR-10's
training images: the supernet's weights learn on the first half, the architecture (DARTS's
alpha, ENAS's controller) on the second. The recipe's validation split scores the
supernet after each epoch, and its test split is left for the retrained run, so that the
search never sees the data it is judged on. The task of the recipe gives the loss
(`Task.batch_loss`), so a cell is searched for any task whose model the cells can be:
`darts` for classification, `darts_dense` (the dense search space of `esszoo.automl.darts`,
every cell on the input's grid) for segmentation and translation.

A search writes ``OUT_DIR/NAME-search/``: ``cells.csv`` (a row per epoch: losses, the
cells, their share of skip connections, seconds), ``genotype.json`` (the cells found),
DARTS's ``alpha.pt`` (the architecture's weights) and the retrained run ``retrained/``,
which ``esszoo compare`` reads as any run; ``supernet.ckpt`` holds the search after its
last epoch, so that the same command resumes an interrupted search where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from esszoo.errors import RecipeError
from esszoo.models.nas.darts import Genotype
from esszoo.recipe import Recipe, validate

RETRAINED = "retrained"
CHECKPOINT = "supernet.ckpt"  # the search after its last epoch, to resume from
DEFAULTS = {  # the papers' weight optimizers (DARTS section A.1.1; ENAS's micro search)
    "darts": {"lr": 0.025, "lr_min": 0.001, "weight_decay": 3e-4},
    "enas": {"lr": 0.05, "lr_min": 0.0005, "weight_decay": 1e-4},
}
GRADIENT_CLIP = 5.0  # both papers clip the weights' gradient norm at 5
RETRAINED_MODELS = ("darts", "darts_dense")  # classification; field to field


class Halves:
    """Batches of two halves of a split's tensors (weights, architecture), endlessly."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int):
        count = len(next(iter(tensors.values())))
        if count < 2:
            raise RecipeError(
                f"a cell search splits the training split in halves: it has {count} sample",
                "give the recipe more training data",
            )
        self.generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(count, generator=self.generator)
        self.tensors = tensors
        self.halves = {"weights": order[: count // 2], "architecture": order[count // 2 :]}
        self.batch_size = min(batch_size, count // 2)
        self.positions = {"weights": [], "architecture": []}

    def steps(self) -> int:
        """Minibatches of the weights' half per epoch."""
        return max(len(self.halves["weights"]) // self.batch_size, 1)

    def next(self, half: str) -> dict[str, torch.Tensor]:
        if len(self.positions[half]) < self.batch_size:  # a new pass, shuffled
            rows = self.halves[half]
            self.positions[half] = rows[
                torch.randperm(len(rows), generator=self.generator)
            ].tolist()
        taken, self.positions[half] = (
            self.positions[half][: self.batch_size],
            self.positions[half][self.batch_size :],
        )
        return {key: value[taken] for key, value in self.tensors.items()}


def check_retrained(recipe: Recipe, method: str) -> None:
    if recipe.model.name not in RETRAINED_MODELS:
        raise RecipeError(
            f"--method {method} retrains the cells it finds as the recipe's model, and "
            f"'{recipe.model.name}' is not a network of cells",
            f"set model.name to {' or '.join(RETRAINED_MODELS)} (its width and cells are the "
            "retrained network's; search.cells sizes the supernet)",
        )


def supernet_task(recipe: Recipe) -> tuple[Any, Any, dict[str, dict[str, torch.Tensor]]]:
    """The recipe's data and task around a DARTS supernet: (task, supernet, split tensors)."""
    from esszoo.automl.darts import SearchNetwork
    from esszoo.run import build_data, build_task, task_class

    data = build_data(recipe)
    if data.streamed:
        raise RecipeError(
            "a cell search holds its data in memory, and this recipe streams them from disk",
            "remove data.stream (or search a smaller part of the data)",
        )
    shape = task_class(recipe.task.name).model_shape(data, False, recipe.task)
    outputs = shape.get("num_classes", shape.get("out_channels"))
    cells = recipe.search.cells
    net = SearchNetwork(
        in_channels=shape["in_channels"],
        out_channels=outputs,
        width=cells.width,
        cells=cells.cells,
        dense=recipe.model.name == "darts_dense",  # field to field: every cell keeps the grid
    )
    task = build_task(recipe, net)
    return task, net, task.prepare(data)


def mean_loss(task: Any, tensors: dict[str, torch.Tensor], batch_size: int) -> float:
    """The task's loss over a split, by minibatches, without gradients."""
    count = len(next(iter(tensors.values())))
    total = 0.0
    with torch.no_grad():
        for start in range(0, count, batch_size):
            batch = {key: value[start : start + batch_size] for key, value in tensors.items()}
            total += float(task.batch_loss(batch)) * len(batch["x"])
    return total / max(count, 1)


def reward(task: Any, batch: dict[str, torch.Tensor]) -> float:
    """ENAS's reward on a validation minibatch: the accuracy of a classifier (the paper's),
    else minus the task's loss."""
    with torch.no_grad():
        if task.name == "classification":
            return float((task.net(batch["x"]).argmax(1) == batch["y"]).float().mean())
        return -float(task.batch_loss(batch))


def search_cells(
    recipe: Recipe, raw: dict[str, Any], folder: Path, method: str, epochs: int
) -> list[dict[str, Any]]:
    """Run a DARTS or ENAS search of `epochs` epochs on the recipe's data, then retrain
    the cells found; return the rows of cells.csv (the retrained run's row last)."""
    from esszoo.automl import darts, enas
    from esszoo.training import train_recipe

    check_retrained(recipe, method)
    cells = recipe.search.cells
    settings = DEFAULTS[method] | {
        key: getattr(cells, key)
        for key in ("lr", "lr_min", "weight_decay")
        if getattr(cells, key) is not None
    }
    torch.manual_seed(recipe.trainer.seed)
    task, net, tensors = supernet_task(recipe)
    batch_size = cells.batch_size or recipe.trainer.batch_size
    halves = Halves(tensors["train"], batch_size, recipe.trainer.seed)
    optimizer = torch.optim.SGD(
        net.weights(),
        lr=settings["lr"],
        momentum=cells.momentum,
        weight_decay=settings["weight_decay"],
        nesterov=method == "enas",
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, settings["lr_min"])
    if method == "darts":
        architect = darts.Architect(
            net,
            task.batch_loss,
            order=cells.order,
            lr=cells.arch_lr,
            weight_decay=cells.arch_weight_decay,
        )
    else:
        controller = enas.Controller()
        reinforce = enas.Reinforce(
            list(controller.parameters()), cells.controller_lr, cells.baseline_decay
        )
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    parts = {"net": net, "optimizer": optimizer, "schedule": schedule}
    if method == "darts":
        parts["architect"] = architect.optimizer
    else:
        parts |= {"controller": controller, "controller_optimizer": reinforce.optimizer}
    searched = json.dumps(  # what the checkpoint must have been searched with to resume
        [method, epochs, cells.model_dump(mode="json"), raw.get("data"), raw.get("task")],
        sort_keys=True,
        default=str,
    )
    first, rows = _resume(
        folder / CHECKPOINT,
        searched,
        parts,
        halves,
        reinforce=(reinforce if method == "enas" else None),
    )
    started = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)
    for epoch in range(first, epochs):
        net.train()
        if method == "darts" and cells.remedy == "auxiliary_skip":
            net.beta = 1.0 - epoch / epochs  # DARTS-: decays linearly to 0
        lr = optimizer.param_groups[0]["lr"]
        losses = []
        for _ in range(halves.steps()):
            batch = halves.next("weights")
            if method == "darts":
                architect.step(batch, halves.next("architecture"), lr, settings["weight_decay"])
            else:
                with torch.no_grad():
                    net.genotype_in_use = controller.sample()[0]
            optimizer.zero_grad()
            loss = task.batch_loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.weights(), GRADIENT_CLIP)
            optimizer.step()
            losses.append(float(loss.detach()))
        schedule.step()
        if method == "enas":
            baseline = _train_controller(task, net, controller, reinforce, halves, cells)
            genotype = _best_sample(task, net, controller, halves)
            if net.dense:  # no reduction cell: the genotype repeats the normal one there
                genotype = dataclasses.replace(genotype, reduce=genotype.normal)
            net.genotype_in_use = genotype
        else:
            genotype, baseline = net.genotype(cells.remedy), None
        net.eval()
        val_loss = mean_loss(task, tensors["val"], batch_size)
        net.genotype_in_use = None
        rows.append(
            {
                "epoch": epoch,
                "train_loss": sum(losses) / len(losses),
                "val_loss": val_loss,
                "skip_share": genotype.skip_share(),
                "reward_baseline": baseline,
                "normal": _pairs(genotype.normal),
                "reduce": _pairs(genotype.reduce),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(
            f"{method} epoch {epoch + 1}/{epochs}: train {rows[-1]['train_loss']:.4g}, "
            f"val {val_loss:.4g}, skips {genotype.skip_share():.0%}"
        )
        _write(rows, folder / "cells.csv")
        _save(
            folder / CHECKPOINT,
            searched,
            epoch,
            rows,
            parts,
            halves,
            reinforce=(reinforce if method == "enas" else None),
        )
    if first == epochs:
        print(f"{method}: the {epochs} epochs of the search were done; its cells are retrained")
    genotype = _genotype_of(rows[-1])
    if not math.isfinite(rows[-1]["val_loss"]):
        raise RecipeError(f"the {method} search diverged (validation loss {rows[-1]['val_loss']})")
    (folder / "genotype.json").write_text(json.dumps(genotype.to_dict(), indent=1) + "\n")
    if method == "darts":  # alpha itself, from which other derivations can be made
        alphas = {"normal": net.alpha_normal.detach(), "reduce": net.alpha_reduce.detach()}
        torch.save(alphas, folder / "alpha.pt")
    run = retrain_recipe(raw, genotype, folder)
    run_dir = train_recipe(run, overwrite=True)
    rows.append(
        {
            "epoch": "retrained",
            "val_loss": _best_val_loss(run_dir),
            "skip_share": genotype.skip_share(),
            "normal": _pairs(genotype.normal),
            "reduce": _pairs(genotype.reduce),
            "seconds": round(time.perf_counter() - started, 1),
            "run": str(run_dir),
        }
    )
    _write(rows, folder / "cells.csv")
    return rows


def _save(
    path: Path,
    searched: str,
    epoch: int,
    rows: list[dict[str, Any]],
    parts: dict[str, Any],
    halves: Halves,
    reinforce: Any,
) -> None:
    """The search as it stands after `epoch`: resumed from here if it is interrupted."""
    from esszoo.fileio import atomic_path

    state = {
        "searched": searched,
        "epoch": epoch,
        "rows": rows,
        "parts": {name: part.state_dict() for name, part in parts.items()},
        "generator": halves.generator.get_state(),
        "positions": halves.positions,
        "rng": torch.get_rng_state(),
        "baseline": reinforce.baseline if reinforce is not None else None,
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _resume(
    path: Path, searched: str, parts: dict[str, Any], halves: Halves, reinforce: Any
) -> tuple[int, list[dict[str, Any]]]:
    """The first epoch still to run, and the rows of those done, from an interrupted search
    of the same method, length, supernet, data and task (else 0 and none: from the start)."""
    if not path.is_file():
        return 0, []
    state = torch.load(path, weights_only=True)
    if state.get("searched") != searched:
        print("a search of another method, length, supernet or data was here: this one starts anew")
        return 0, []
    for name, part in parts.items():
        part.load_state_dict(state["parts"][name])
    halves.generator.set_state(state["generator"])
    halves.positions = state["positions"]
    torch.set_rng_state(state["rng"])
    if reinforce is not None:
        reinforce.baseline = state["baseline"]
    done = state["epoch"] + 1
    print(f"the search resumes after its epoch {done}")
    return done, state["rows"]


def _genotype_of(row: dict[str, Any]) -> Genotype:
    def pairs(text: str) -> tuple[tuple[str, int], ...]:
        return tuple((op, int(node)) for op, node in (p.split("<-") for p in text.split()))

    from esszoo.automl.darts import STEPS

    concat = tuple(range(2, 2 + STEPS))
    return Genotype(
        normal=pairs(row["normal"]),
        normal_concat=concat,
        reduce=pairs(row["reduce"]),
        reduce_concat=concat,
    )


def _train_controller(
    task: Any, net: Any, controller: Any, reinforce: Any, halves: Halves, cells: Any
) -> float:
    """Section 2.2: the controller's steps, each on `aggregate` sampled cell pairs."""
    baseline = 0.0
    for _ in range(cells.controller_steps):
        log_probs, rewards = [], []
        batch = halves.next("architecture")
        for _ in range(cells.aggregate):
            genotype, log_prob, entropy = controller.sample()
            net.genotype_in_use = genotype
            rewards.append(reward(task, batch) + cells.entropy_weight * float(entropy.detach()))
            log_probs.append(log_prob)
        baseline = reinforce.step(log_probs, rewards)
    net.genotype_in_use = None
    return baseline


def _best_sample(task: Any, net: Any, controller: Any, halves: Halves, samples: int = 10) -> Any:
    """Section 3.2: of cells sampled from the policy, the best on one validation minibatch."""
    batch = halves.next("architecture")
    best, best_reward = None, -math.inf
    with torch.no_grad():
        for _ in range(samples):
            genotype = controller.sample()[0]
            net.genotype_in_use = genotype
            score = reward(task, batch)
            if score > best_reward:
                best, best_reward = genotype, score
    net.genotype_in_use = None
    return best


def retrain_recipe(raw: dict[str, Any], genotype: Genotype, folder: Path) -> Recipe:
    """The recipe with the cells found as its model's genotype, as the run folder/retrained."""
    raw = {key: value for key, value in raw.items() if key != "search"}
    raw["model"] = dict(raw["model"]) | {"genotype": genotype.to_dict()}
    raw |= {"name": RETRAINED, "out_dir": str(folder)}
    return validate(raw, where="the retraining of the cells found")


def _pairs(pairs: tuple[tuple[str, int], ...]) -> str:
    return " ".join(f"{op}<-{source}" for op, source in pairs)


def _best_val_loss(run_dir: Path) -> float:
    from esszoo.automl.search import best_validation_loss

    return best_validation_loss(run_dir)


def _write(rows: list[dict[str, Any]], path: Path) -> None:
    from esszoo.fileio import atomic_path

    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
