"""Wall time of the command line: `esszoo --help` (goal 0.5 s) and `esszoo models` (goal 3 s)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import median_seconds, table


def esszoo_command() -> list[str]:
    script = Path(sys.executable).with_name("esszoo")
    return [str(script)] if script.exists() else [shutil.which("esszoo") or "esszoo"]


def run() -> str:
    rows = []
    for args, goal in ((["--help"], 0.5), (["models"], 3.0)):
        command = esszoo_command() + args

        def call(command: list[str] = command) -> None:
            subprocess.run(command, check=True, capture_output=True)

        seconds = median_seconds(call, repeats=5, warmup=1)
        rows.append([f"esszoo {' '.join(args)}", seconds, goal, "yes" if seconds <= goal else "no"])
    return table(["command", "median wall s (5 runs)", "goal s", "met"], rows)


if __name__ == "__main__":
    print(run())
