"""Start-up time of the `adapters` CLI next to `python -c "import click, rich"`, in the same run.

    python bench/cli_startup.py [--runs 10]

Each command runs as a fresh process, the runs of all commands interleaved (so a busy machine
slows them alike); medians of `--runs`, and each median as a ratio to the baseline's. Commands:
`adapters --help`; `adapters list --json` on an empty embedded registry, on its first run (which
creates and migrates it through the ORM) and on later runs (the quick read: sqlite3, no ORM);
and the floors: of any command that goes through the ORM (push, and every other command), the
imports it cannot do without (SQLAlchemy's ORM, the registry's tables, its pydantic entities and
settings); SQLAlchemy's ORM alone; and the settings alone, which the quick reads import.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    py = sys.executable
    adapters = [py, "-m", "cli.main"]
    work = Path(tempfile.mkdtemp(prefix="bench-cli-startup-"))
    home = work / "home"
    env = dict(os.environ, ADAPTERS_HOME=str(home))
    env.pop("ADAPTERS_URL", None)
    steps: dict[str, list[str]] = {
        'python -c "import click, rich"': [py, "-c", "import click, rich"],
        "adapters --help": [*adapters, "--help"],
        "adapters list --json (empty)": [*adapters, "list", "--json"],
        "floor: import sqlalchemy.orm": [py, "-c", "import sqlalchemy.orm"],
        "floor: import registry.config": [py, "-c", "import registry.config"],
        "floor: import ORM+models+entities": [
            py,
            "-c",
            "import sqlalchemy.orm, registry.db.models, registry.entities, registry.config",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    times["adapters list --json (first run)"] = []
    try:
        for cmd in steps.values():  # warm the page cache and the .pyc files
            timed(cmd, env)
        for _ in range(args.runs):
            shutil.rmtree(home, ignore_errors=True)
            times["adapters list --json (first run)"].append(timed([*adapters, "list", "--json"], env))
            for name, cmd in steps.items():
                times[name].append(timed(cmd, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times['python -c "import click, rich"'])
    print(f"{'command':<40}{'median s':>10}{'x baseline':>12}")
    for name, samples in times.items():
        med = statistics.median(samples)
        print(f"{name:<40}{med:>10.3f}{med / base:>12.1f}")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
