"""Start-up time of the `adapters` CLI next to `python -c "import click, rich"`, in the same run.

    python bench/cli_startup.py [--runs 10]

Each command runs as a fresh process, the runs of all commands interleaved (so a busy machine
slows them alike); medians of `--runs`, and each median as a ratio to the baseline's. Commands, on
the embedded registry (SQLite file, local blobs):
- `adapters --help`;
- `adapters list --json` on its first run (no database yet: the full client creates and migrates
  it through the ORM), and on a registry holding a version (the read model, registry.reads, on a
  bare sqlite3 connection: no SQLAlchemy, no entities; registry.client.reads);
- `adapters pull` of a number (`ns/name:1`: resolved once, then from the client's RefCache,
  registry.client.ref_cache: no query), and of an alias (resolved on the bare connection every
  time), each into a new folder;
- `adapters show --json` (the whole version through the services and the ORM);
- the floors: of any command that goes through the ORM (push, show, and every other command), the
  imports it cannot do without (SQLAlchemy's ORM, the registry's tables, its pydantic entities and
  settings); SQLAlchemy's ORM alone; and the settings alone, which every command imports.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/cli_startup.py`
    sys.path.insert(0, str(ROOT))

from bench.lora_file import write_lora  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    py = sys.executable
    adapters = [py, "-m", "cli.main"]
    work = Path(tempfile.mkdtemp(prefix="bench-cli-startup-"))
    empty, home = work / "empty", work / "home"
    env = dict(os.environ, ADAPTERS_HOME=str(home))
    for key in ("ADAPTERS_URL", "ADAPTERS_DATABASE_URL", "ADAPTERS_BLOB_URL", "ADAPTERS_CACHE_DIR"):
        env.pop(key, None)
    fresh = itertools.count()

    def out() -> str:  # a new folder for each pull
        return str(work / f"out-{next(fresh)}")

    steps: dict[str, list[str] | object] = {
        'python -c "import click, rich"': [py, "-c", "import click, rich"],
        "adapters --help": [*adapters, "--help"],
        "adapters list --json (bare sqlite3)": [*adapters, "list", "--json"],
        "adapters pull ns/name:1 (RefCache)": lambda: [*adapters, "pull", "acme/bench:1", "-o", out()],
        "adapters pull ns/name@prod (bare sqlite3)": lambda: [
            *adapters,
            "pull",
            "acme/bench@prod",
            "-o",
            out(),
        ],
        "adapters show --json (ORM)": [*adapters, "show", "acme/bench", "--json"],
        "floor: import sqlalchemy.orm": [py, "-c", "import sqlalchemy.orm"],
        "floor: import registry.config": [py, "-c", "import registry.config"],
        "floor: import ORM+models+entities": [
            py,
            "-c",
            "import sqlalchemy.orm, registry.db.models, registry.entities, registry.config",
        ],
    }
    first_run = "adapters list --json (first run, ORM)"
    times: dict[str, list[float]] = {first_run: [], **{name: [] for name in steps}}
    try:
        folder = write_lora(work / "adapter", r=8, n=256)
        subprocess.run([*adapters, "push", str(folder), "acme/bench", "--alias", "prod"], check=True,
                       env=env, stdout=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip

        def command(step: list[str] | object) -> list[str]:
            return step() if callable(step) else step  # type: ignore[return-value]

        for step in steps.values():  # warm the page cache and the .pyc files (and the RefCache)
            timed(command(step), env)
        for _ in range(args.runs):
            shutil.rmtree(empty, ignore_errors=True)
            times[first_run].append(timed([*adapters, "list", "--json"], dict(env, ADAPTERS_HOME=str(empty))))
            for name, step in steps.items():
                times[name].append(timed(command(step), env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times['python -c "import click, rich"'])
    print(f"{'command':<45}{'median s':>10}{'x baseline':>12}")
    for name, samples in times.items():
        med = statistics.median(samples)
        print(f"{name:<45}{med:>10.3f}{med / base:>12.1f}")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
