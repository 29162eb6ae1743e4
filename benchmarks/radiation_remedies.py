"""The RRTMG emulators' remedies against online drift: a hybrid, and their own states.

Three longwave emulators, each coupled with a shortwave one in RRTMG's place in climt's
radiative-convective columns for 100 days from one start (8 column climates never seen
in training, `couple`'s seed), against RRTMG itself:

- MLP: recipes/emulate_rrtmg_lw.yaml and _sw.yaml as they are.
- hybrid: recipes/emulate_rrtmg_lw_hybrid.yaml, grey longwave radiation (climt's
  GrayLongwaveRadiation, in torch inside the export) plus an MLP of its residual, with
  the shortwave MLP (climt has no cheap shortwave scheme: its other one, Cork, a
  correlated-k scheme, does not run from the wheel here, which lacks its data file
  cork/parmentier/solar_composition.npz).
- own states (DAgger): the two MLPs run coupled for 20 days on 24 other climates
  (`esszoo.coupling.online_states`, seed 200); the states they visit, with a perturbed
  copy each, are labelled by RRTMG and join the training split of both recipes
  (`data.train_extra`); both are trained again from scratch on the aggregate (Ross et
  al. 2011; Rasp 2020).

Offline scores are on the same held-out runs for all (the extra states join training
only). Time per column at batch 4096 against RRTMG in the same run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, table
from benchmarks.radiation import RESULTS, _accuracy, _csv_table, _times
from esszoo.checkpoint import load
from esszoo.coupling import couple, online_states
from esszoo.training import train


def _train(folder: str, recipe: str, name: str, *extra: str) -> Path:
    overrides = [f"out_dir={folder}", "trainer.progress_bar=false", f"name={name}", *extra]
    return train(ROOT / "recipes" / recipe, overrides)


def run() -> str:
    parts = []
    with tempfile.TemporaryDirectory() as folder:
        runs = {
            ("sw", "MLP"): _train(folder, "emulate_rrtmg_sw.yaml", "sw_mlp"),
            ("lw", "MLP"): _train(folder, "emulate_rrtmg_lw.yaml", "lw_mlp"),
            ("lw", "hybrid"): _train(folder, "emulate_rrtmg_lw_hybrid.yaml", "lw_hybrid"),
        }
        states = online_states(
            [runs[("lw", "MLP")], runs[("sw", "MLP")]],
            Path(folder) / "online_states.nc",
            columns=24,
            days=20,
            seed=200,
            log=lambda message: None,
        )
        extra = f"data.train_extra=[{states}]"
        for band in ("lw", "sw"):
            runs[(band, "own states")] = _train(
                folder, f"emulate_rrtmg_{band}.yaml", f"{band}_dagger", extra
            )
        rows = []
        for (band, label), run_dir in runs.items():
            scores = _accuracy(run_dir)
            fast = {row[1]: row[3] for row in _times(run_dir, band) if row[0] == 4096}
            rows.append(
                [
                    band.upper(),
                    label,
                    sum(p.numel() for p in load(run_dir).net.parameters()),
                    scores["profile_rmse"],
                    scores["profile_bias"],
                    scores["flux_rmse"],
                    scores["energy_rmse"],
                    fast["eager"],
                    fast["TorchScript"],
                ]
            )
        header = [
            "band",
            "emulator",
            "parameters",
            "heating RMSE (K/day)",
            "heating bias (K/day)",
            "flux RMSE (W m-2)",
            "energy residual RMSE (W m-2)",
            "RRTMG time / eager (batch 4096)",
            "RRTMG time / TorchScript",
        ]
        parts.append("Offline, on the held-out runs:\n\n" + table(header, rows))
        couples = {
            "MLP": [runs[("lw", "MLP")], runs[("sw", "MLP")]],
            "hybrid": [runs[("lw", "hybrid")], runs[("sw", "MLP")]],
            "own states": [runs[("lw", "own states")], runs[("sw", "own states")]],
        }
        RESULTS.mkdir(exist_ok=True)
        for label, pair in couples.items():
            online = couple(pair, days=100, columns=8, out=Path(folder) / label, log=lambda m: None)
            slug = label.replace(" ", "_")
            shutil.copy(online / "online.png", RESULTS / f"radiation_remedy_{slug}.png")
            drift = (online / "online_drift.csv").read_text().strip().splitlines()
            cost = (online / "online_cost.csv").read_text().strip().splitlines()
            parts.append(
                f"Online for 100 days, {label} (longwave) in RRTMG's place (emulator minus "
                "RRTMG, daily means over 8 unseen columns):\n\n"
                + _csv_table(drift)
                + "\n\n"
                + _csv_table(cost)
                + f"\n\n![online, {label}](benchmarks/results/radiation_remedy_{slug}.png)"
            )
    return "\n\n".join(parts)


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_num_threads(torch.get_num_threads())
    print(run())
