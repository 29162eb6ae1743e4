"""A run's threads: its share of the cores it may use, beside the other runs of the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from esszoo import threads
from esszoo.errors import RecipeError
from esszoo.recipe import load_recipe
from esszoo.threads import CoreShare, cgroup_cpu_quota, usable_cores
from esszoo.training import ShareCores, train
from tests.conftest import tiny_recipe_dict, write_recipe


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: (4, "a test"))


def claim(folder, pid, requested, start="auto"):
    folder.mkdir(parents=True, exist_ok=True)
    start = threads.started(pid) if start == "auto" else start
    (folder / f"{pid}.json").write_text(json.dumps({"threads": requested, "started": start}))


def test_the_cores_a_process_may_use_are_the_smallest_limit(monkeypatch):
    for name in (*threads.SCHEDULER_VARIABLES, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    allowed = len(os.sched_getaffinity(0))
    cores, _ = usable_cores()
    assert cores <= allowed
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cores() == (1, "SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
    monkeypatch.setenv("NSLOTS", "not a number")
    assert usable_cores()[0] == cores


def test_cgroup_quotas_of_both_versions(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_runs_share_what_the_fixed_claims_leave(tmp_path, four_cores):
    folder = tmp_path / "claims"
    before = torch.get_num_threads()
    with CoreShare("auto", folder) as share:
        assert share.threads == 4 and torch.get_num_threads() == 4
        claim(folder, os.getppid(), "auto")  # another run, alive
        assert share.update(force=True) == 2 and torch.get_num_threads() == 2
        claim(folder, os.getppid(), 3)  # the other run asks for three threads
        assert share.update(force=True) == 1
        assert "4 cores allowed by a test" in share.describe()
    assert torch.get_num_threads() == before
    assert not (folder / f"{os.getpid()}.json").exists()
    with CoreShare(3, folder) as fixed:  # a fixed claim takes what it asks
        assert fixed.threads == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before


def test_claims_of_ended_processes_are_ignored_and_removed(tmp_path, four_cores):
    folder = tmp_path / "claims"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    claim(folder, ended.pid, "auto", start=None)
    claim(folder, os.getppid(), "auto", start="0")  # the same number, a later process
    (folder / "notes.json").write_text("{}")  # not a claim
    with CoreShare("auto", folder) as share:
        assert share.threads == 4
    assert sorted(p.name for p in folder.iterdir()) == ["notes.json"]


def test_a_run_started_alone_gives_up_cores_to_a_second_and_takes_them_back(tmp_path, four_cores):
    folder = tmp_path / "claims"
    holder = (
        "import sys, time; from esszoo.threads import CoreShare; from pathlib import Path\n"
        "with CoreShare('auto', Path(sys.argv[1])):\n"
        "    print('holding', flush=True); sys.stdin.readline()\n"
    )
    with CoreShare("auto", folder) as share:
        assert share.threads == 4
        second = subprocess.Popen(
            [sys.executable, "-c", holder, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert second.stdout.readline().strip() == "holding"
            share.checked -= threads.RECHECK_SECONDS  # as a second later
            assert share.update() == 2
        finally:
            second.communicate("\n", timeout=60)
        share.checked = time.monotonic()
        assert share.update() == 2  # looked at again only after about a second
        share.checked -= threads.RECHECK_SECONDS
        assert share.update() == 4


def test_trainer_threads_in_a_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(threads, "claims_folder", lambda: tmp_path / "claims")
    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        tiny_recipe_dict(tmp_path / "runs", **{"trainer.threads": 1, "trainer.max_epochs": 1}),
    )
    seen = []
    original = ShareCores.on_train_batch_start
    monkeypatch.setattr(
        ShareCores,
        "on_train_batch_start",
        lambda self, *a: (original(self, *a), seen.append(torch.get_num_threads())),
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train(recipe)
        assert torch.get_num_threads() == 2  # as it was before the run
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {1}
    assert "trainer.threads asks for 1" in capsys.readouterr().out or os.cpu_count() == 1
    with pytest.raises(RecipeError, match="threads"):
        load_recipe(recipe, ["trainer.threads=0"])
