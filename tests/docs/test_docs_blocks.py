"""Every code block of the getting-started and how-to pages runs, as written, in a test.

The convention (docs/development.md): a ```console, ```bash, ```sh or ```python block in those
pages is preceded by one of two HTML comments, invisible on the site:

- `<!-- runs-in-test -->`: this test runs it. A console block's commands are its `$ ` lines (with
  their `\\` continuations; the other lines are output, not compared), a bash block runs whole, each
  under `set -euo pipefail`; a python block runs with this interpreter.
- `<!-- not-run: REASON -->`: it needs what a test here cannot give (Docker, a GPU, a serving
  engine, a server on a public address); the reason says which, and where it is tested instead.

Blocks in other languages (text, json, yaml) are output or data and are not run. The pages run in
`PAGES` order in one working directory and one embedded registry (a fresh ADAPTERS_HOME): a page
goes on from the registry the pages before it left, as its text says. The working directory holds
what `make demo` leaves in `.demo/`: `tiny-llama/`, `legal-lora/`, `medical-lora/` (real PEFT
adapters trained on it for a few steps), `out/`, a Trainer `output_dir` around an adapter, and
`llama-2-70b/config.json` for the planner.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLANNING_FIXTURES = DOCS.parent / "tests" / "planning" / "fixtures"
PAGES = [
    "getting-started.md",
    "how-to/push-from-training.md",
    "how-to/merge.md",
    "how-to/export.md",
    "how-to/check-4bit.md",
    "how-to/evaluations.md",
    "how-to/plan.md",
    "how-to/serve.md",
    "how-to/signed-versions.md",
    "how-to/sharing.md",
    "how-to/operate.md",
    "how-to/operate-cluster.md",
    "how-to/backup.md",
    "how-to/upgrading.md",
    "how-to/web-ui.md",
    "how-to/hub.md",
]
"""The pages whose blocks must all be marked, in the order they run."""
RUNNABLE = {"console", "bash", "sh", "shell", "python"}
RUNS = "<!-- runs-in-test -->"
NOT_RUN = re.compile(r"<!-- not-run: (\S.*) -->")
BUDGET_S = 300
"""What the runnable blocks may take in all, a bound against a hang: the run prints what it took."""


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    marker: str
    code: str

    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    """The fenced blocks of a page with the comment line just before each (blank lines skipped)."""
    lines = (DOCS / page).read_text(encoding="utf-8").split("\n")
    found, i = [], 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\w*)", lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.groups()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        found.append(Block(page, start + 1, lang, before, "\n".join(body)))
    return found


def console_script(code: str) -> str:
    """The commands of a console block: its `$ ` lines and their continuations."""
    commands, going_on = [], False
    for line in code.split("\n"):
        if line.startswith("$ ") or going_on:
            text = line[2:] if line.startswith("$ ") and not going_on else line
            commands.append(text)
            going_on = text.rstrip().endswith("\\")
    return "\n".join(commands)


def test_every_block_is_marked() -> None:
    guides = {f"how-to/{p.name}" for p in (DOCS / "how-to").glob("*.md")}
    assert not guides - set(PAGES), f"how-to pages missing from PAGES: {sorted(guides - set(PAGES))}"
    unmarked, runs = [], 0
    for page in PAGES:
        for block in blocks(page):
            assert block.lang, f"{block.where()}: a block names its language (console, bash, python, text)"
            if block.lang not in RUNNABLE:
                continue
            if block.marker == RUNS:
                runs += 1
                if block.lang == "console":
                    assert console_script(block.code).strip(), f"{block.where()}: no `$ ` command"
            elif not NOT_RUN.fullmatch(block.marker):
                unmarked.append(block.where())
    assert not unmarked, f"blocks neither `{RUNS}` nor `<!-- not-run: REASON -->`: {unmarked}"
    assert runs >= 15, runs


# ---------------------------------------------------------------- the folders the pages use
def trainer_output_dir(adapter: Path, out: Path) -> None:
    """What a transformers Trainer leaves in output_dir: the final adapter, its state and
    arguments, and two checkpoints (each a whole adapter with its own state)."""
    shutil.copytree(adapter, out)
    history = [
        {"step": 2, "epoch": 0.5, "eval_loss": 2.31, "eval_runtime": 0.4},
        {"step": 4, "epoch": 1.0, "eval_loss": 2.05, "eval_runtime": 0.4},
    ]
    state = {"global_step": 4, "epoch": 1.0, "log_history": history, "train_batch_size": 4}
    (out / "trainer_state.json").write_text(json.dumps(state))
    (out / "training_args.bin").write_bytes(pickle.dumps({"learning_rate": 5e-3}))
    for step in (2, 4):
        checkpoint = out / f"checkpoint-{step}"
        shutil.copytree(adapter, checkpoint)
        (checkpoint / "optimizer.pt").write_bytes(pickle.dumps({"state": {}}))
        partial = {**state, "global_step": step, "log_history": history[: step // 2]}
        (checkpoint / "trainer_state.json").write_text(json.dumps(partial))


@pytest.fixture(scope="module")
def demo_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folders `make demo` leaves in .demo/ (registry/quickstart.py): a tiny Llama saved with
    save_pretrained (hidden 64: wide enough for the 4-bit kernels) and two LoRA adapters trained
    on the model loaded from that folder, so adapter_config names it by its absolute path."""
    from transformers import AutoModelForCausalLM

    from tests.adapters_factory import sized_llama, train_lora

    work = tmp_path_factory.mktemp("demo")
    sized_llama(hidden=64).save_pretrained(work / "tiny-llama")
    train_lora(AutoModelForCausalLM.from_pretrained(work / "tiny-llama"), work / "legal-lora", seed=1)
    train_lora(
        AutoModelForCausalLM.from_pretrained(work / "tiny-llama"),
        work / "medical-lora",
        seed=2,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    trainer_output_dir(work / "legal-lora", work / "out")
    (work / "llama-2-70b").mkdir()
    shutil.copy(PLANNING_FIXTURES / "llama-2-70b.json", work / "llama-2-70b" / "config.json")
    return work


def environment(home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ADAPTERS_", "HF_"))}
    return {
        **keep,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{keep.get('PATH', '')}",
        "ADAPTERS_HOME": str(home / "registry"),
        "ADAPTERS_CONFIG_DIR": str(home / "config"),
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if block.lang == "python":
        args = [sys.executable, "-"]
        script = block.code
    else:
        args = ["bash", "-"]
        code = console_script(block.code) if block.lang == "console" else block.code
        script = "set -euo pipefail\n" + code + "\n"
    return subprocess.run(
        args, input=script, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUDGET_S
    )


def test_the_documented_blocks_run(demo_folders: Path, tmp_path: Path) -> None:
    work = Path(shutil.copytree(demo_folders, tmp_path / "work"))
    env = environment(tmp_path)
    started, ran, timings = time.monotonic(), 0, []
    for page in PAGES:
        for block in blocks(page):
            if block.lang not in RUNNABLE or block.marker != RUNS:
                continue
            t0 = time.monotonic()
            done = run_block(block, work, env)
            timings.append((round(time.monotonic() - t0, 1), block.where()))
            assert done.returncode == 0, (
                f"{block.where()} failed ({done.returncode}):\n{block.code}\n"
                f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
            )
            ran += 1
    took = time.monotonic() - started
    print(f"{ran} blocks in {took:.1f} s; slowest: {sorted(timings, reverse=True)[:5]}")
    assert took < BUDGET_S, sorted(timings, reverse=True)
