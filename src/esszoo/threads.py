"""How many threads a run computes with: its share of the cores it may use.

PyTorch sizes its thread pool (OpenMP, oneDNN, MKL) from the cores the machine has. Two
trainings on one machine then run twice as many busy threads as there are cores, and
each thread spins while it waits for the others: measured here (benchmarks/threads.py),
two runs of the flagship took 4-9 times as long as one, where a fair share of the cores
would take twice as long.

A run therefore computes with its share of the cores it may use:

- the cores it may use: this process's CPU affinity (taskset, numactl, Slurm's and most
  schedulers' binding), at most the CPU quota of its cgroup (Docker's ``--cpus``,
  Kubernetes' limits) and the cores a batch scheduler granted it (``SLURM_CPUS_PER_TASK``,
  PBS's ``NCPUS``, Grid Engine's ``NSLOTS``, LSF's ``LSB_DJOB_NUMPROC``) or
  ``OMP_NUM_THREADS`` when set;
- its share: esszoo's runs on one machine (separate trainings, the processes of a DDP
  run on CPUs, parallel search workers) each leave a claim in a folder of this machine,
  and those with ``trainer.threads: auto`` divide the cores that the others' fixed
  ``trainer.threads`` leave. Claims of processes that have ended are ignored, and a run
  looks again about every second, so that a run started alone gives up half its cores
  when a second one starts, and takes them back when it ends.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path

import torch

# the batch schedulers' variables for the cores granted to one task
SCHEDULER_VARIABLES = ("SLURM_CPUS_PER_TASK", "NCPUS", "NSLOTS", "LSB_DJOB_NUMPROC")
RECHECK_SECONDS = 1.0


def usable_cores() -> tuple[int, str]:
    """(how many cores this process may use, what sets that number)."""
    limits = [(os.cpu_count() or 1, "the machine's cores")]
    if hasattr(os, "sched_getaffinity"):
        limits.append((len(os.sched_getaffinity(0)), "its CPU affinity"))
    quota = cgroup_cpu_quota()
    if quota is not None:
        limits.append((quota, "its cgroup's CPU quota"))
    for name in (*SCHEDULER_VARIABLES, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            limits.append((int(value), name))
    return min(limits, key=lambda limit: limit[0])


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The cores the CPU quota of this process's cgroup allows (rounded up), None if none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000"
    except (OSError, ValueError):
        try:  # cgroup v1
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.lstrip("-").isdigit() or not period.isdigit():
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def claims_folder() -> Path:
    """Where this machine's esszoo runs leave their claims (node-local, per user)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"esszoo-threads-{user}-{socket.gethostname()}"


def started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell it from a later
    process given the same number; None where /proc cannot say."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return start is None or started(pid) in (None, start)


class CoreShare:
    """This process's claim on the machine's cores, for the duration of a run.

    `requested`: a number of threads (a fixed claim), or "auto" (a share of what the fixed
    claims leave). Entering sets torch's threads; `update` sets them again when other runs
    have started or ended; leaving withdraws the claim and restores the threads as they were.
    """

    def __init__(self, requested: int | str = "auto", folder: Path | None = None):
        self.requested = requested
        self.folder = folder or claims_folder()
        self.path = self.folder / f"{os.getpid()}.json"
        self.cores, self.limited_by = usable_cores()
        self.threads = torch.get_num_threads()
        self.previous = self.threads
        self.checked = 0.0

    def __enter__(self) -> CoreShare:
        self.previous = torch.get_num_threads()
        claim = {"threads": self.requested, "cores": self.cores, "started": started(os.getpid())}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(claim))
        except OSError:  # a read-only temporary folder: no sharing, only the limits above
            pass
        self.update(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
        torch.set_num_threads(self.previous)

    def share(self) -> int:
        """The threads this run may use now, from the live claims of this machine."""
        if self.requested != "auto":
            return int(self.requested)
        fixed, shared = 0, 1
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            if path == self.path or not path.stem.isdigit():
                continue
            try:
                claim = json.loads(path.read_text())
                other = claim["threads"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not _alive(int(path.stem), claim.get("started")):
                path.unlink(missing_ok=True)
                continue
            if other == "auto":
                shared += 1
            else:
                fixed += int(other)
        return max(1, (self.cores - fixed) // shared)

    def update(self, force: bool = False) -> int:
        """Look at the claims again (at most about once a second unless `force`)."""
        now = time.monotonic()
        if force or now - self.checked >= RECHECK_SECONDS:
            self.checked = now
            self.threads = self.share()
            if torch.get_num_threads() != self.threads:  # Lightning's DDP sets its own
                torch.set_num_threads(self.threads)
        return self.threads

    def describe(self) -> str:
        """One line for the log: the threads and why."""
        threads = f"{self.threads} thread" + "s" * (self.threads > 1)
        line = f"{threads}: {self.cores} cores allowed by {self.limited_by}"
        if self.requested == "auto" and self.threads < self.cores:
            line += ", shared with the other esszoo runs on this machine"
        elif self.requested != "auto":
            line += ", trainer.threads asks for " + str(self.requested)
        return line
