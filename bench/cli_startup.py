"""Start-up time of the `adapters` CLI next to `python -c "import click, rich"`, in the same run.

    python bench/cli_startup.py [--runs 10] [--checkout DIR]

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
- `adapters show --json` (the whole version: the read model's registry.reads.version on the bare
  connection);
- the floors: of any command that goes through the ORM (push, and every other command), the
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/cli_startup.py`
    sys.path.insert(0, str(ROOT))

from bench.lora_file import write_lora  # noqa: E402


def timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - t


Step = list[str] | Callable[[], list[str]]


def tree_steps(tree: Path, work: Path, env: dict[str, str]) -> dict[str, Step]:
    """The `adapters` commands, run from the checkout `tree` on its own embedded registry."""
    adapters = [sys.executable, "-m", "cli.main"]
    fresh = itertools.count()

    def out() -> list[str]:  # a new folder for each pull
        return ["-o", str(work / f"out-{next(fresh)}")]

    folder = write_lora(work / "adapter", r=8, n=256)
    push = [*adapters, "push", str(folder), "acme/bench", "--alias", "prod"]
    subprocess.run(push, check=True, env=env, stdout=subprocess.DEVNULL, cwd=tree)
    return {
        "adapters --help": [*adapters, "--help"],
        "adapters list --json (bare sqlite3)": [*adapters, "list", "--json"],
        "adapters pull ns/name:1 (RefCache)": lambda: [*adapters, "pull", "acme/bench:1", *out()],
        "adapters pull ns/name@prod (bare sqlite3)": lambda: [*adapters, "pull", "acme/bench@prod", *out()],
        "adapters show --json (bare sqlite3)": [*adapters, "show", "acme/bench", "--json"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument(
        "--checkout",
        type=Path,
        help="also run the `adapters` commands from this checkout (e.g. `git archive` of an earlier "
        "commit unpacked), interleaved with this one's: a before/after under the same load",
    )
    args = ap.parse_args()
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="bench-cli-startup-"))
    base_env = dict(os.environ)
    for key in ("ADAPTERS_URL", "ADAPTERS_DATABASE_URL", "ADAPTERS_BLOB_URL", "ADAPTERS_CACHE_DIR"):
        base_env.pop(key, None)
    trees = [("", ROOT)] + ([(f" [{args.checkout.name}]", args.checkout.resolve())] if args.checkout else [])
    floors: dict[str, Step] = {
        "floor: import sqlalchemy.orm": [py, "-c", "import sqlalchemy.orm"],
        "floor: import registry.config": [py, "-c", "import registry.config"],
        "floor: import ORM+models+entities": [
            py,
            "-c",
            "import sqlalchemy.orm, registry.db.models, registry.entities, registry.config",
        ],
    }
    # (label, command, environment, folder it runs in)
    steps: list[tuple[str, Step, dict[str, str], Path]] = [
        ('python -c "import click, rich"', [py, "-c", "import click, rich"], base_env, ROOT)
    ]
    firsts: list[tuple[str, dict[str, str], Path, Path]] = []
    try:
        for i, (tag, tree) in enumerate(trees):
            env = dict(base_env, ADAPTERS_HOME=str(work / f"home-{i}"))
            for name, step in tree_steps(tree, work / f"tree-{i}", env).items():
                steps.append((name + tag, step, env, tree))
            empty = work / f"empty-{i}"
            firsts.append(
                (
                    "adapters list --json (first run, ORM)" + tag,
                    dict(base_env, ADAPTERS_HOME=str(empty)),
                    empty,
                    tree,
                )
            )
        steps += [(name, step, base_env, ROOT) for name, step in floors.items()]
        times: dict[str, list[float]] = {name: [] for name, *_ in firsts}
        times.update({name: [] for name, *_ in steps})

        def command(step: Step) -> list[str]:
            return step() if callable(step) else step

        for _, step, env, tree in steps:  # warm the page cache and the .pyc files (and the RefCache)
            timed(command(step), env, tree)
        for _ in range(args.runs):
            for name, env, empty, tree in firsts:
                shutil.rmtree(empty, ignore_errors=True)
                times[name].append(timed([py, "-m", "cli.main", "list", "--json"], env, tree))
            for name, step, env, tree in steps:
                times[name].append(timed(command(step), env, tree))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times['python -c "import click, rich"'])
    width = max(len(name) for name in times) + 2
    print(f"{'command':<{width}}{'median s':>10}{'x baseline':>12}")
    for name, samples in times.items():
        med = statistics.median(samples)
        print(f"{name:<{width}}{med:>10.3f}{med / base:>12.1f}")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
