"""Issue 23's "done when", first part: a real transformers `Trainer` (PEFT LoRA on the tiny Llama,
CPU, a few steps, evaluation on, checkpoints saved) writes an output_dir that `adapters push`
takes as it is, through the real CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.cli.conftest import Cli

pytestmark = pytest.mark.models


class RandomTokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 128, (n, 12), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def train(out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from tests.adapters_factory import tiny_llama

    model = get_peft_model(
        tiny_llama(),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        logging_steps=1,
        report_to=["tensorboard"] if tensorboard else [],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=RandomTokens(8, 0), eval_dataset=RandomTokens(4, 1)
    )
    trainer.train()
    trainer.save_model()  # adapter files and training_args.bin at the top, as scripts do
    if not tensorboard:  # what report_to="tensorboard" leaves, for the skip rule to meet
        (out / "runs" / "run-1").mkdir(parents=True)
        (out / "runs" / "run-1" / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"\x18\x00" * 8)
    return out


def test_trainer_output_dir_pushes_as_it_is(embedded: Cli, tmp_path: Path) -> None:
    out = train(tmp_path / "out")
    assert (out / "training_args.bin").is_file() and (out / "checkpoint-4" / "optimizer.pt").is_file()

    pushed: dict[str, Any] = embedded.json("push", str(out), "acme/trained")
    assert pushed["created"] and pushed["version"] == 1
    skipped = {s["path"] for s in pushed["skipped"]}
    assert {"training_args.bin", "checkpoint-2/", "checkpoint-4/", "runs/"} <= skipped
    stored = {f["path"] for f in pushed["info"]["files"]}
    assert "training_args.bin" not in stored and not any(p.endswith((".pt", ".pth", ".bin")) for p in stored)
    assert pushed["borrowed"] == {"trainer_state.json": "checkpoint-4/trainer_state.json"}
    assert pushed["info"]["training"]["global_step"] == 4

    evals = embedded.json("evals", "acme/trained:1")
    losses = sorted((r["note"], r["value"]) for r in evals["records"] if r["metric"] == "loss")
    assert [note for note, _ in losses] == ["trainer_state.json, step 2", "trainer_state.json, step 4"]
    shown = embedded("show", "acme/trained:1").stdout
    assert "training" in shown and "step 4" in shown

    human = embedded("push", str(out), "acme/trained")  # a second identical push
    assert "unchanged" in human.stdout and "no new version created" in human.stdout
    assert "skipped training_args.bin" in human.stdout
    assert embedded.json("show", "acme/trained")["version"] == 1

    versions = embedded.json("push", str(out), "acme/steps", "--all-checkpoints", "--alias", "last")
    assert [(v["version"], v["info"]["message"]) for v in versions] == [
        (1, "checkpoint-2 (step 2)"),
        (2, "checkpoint-4 (step 4)"),
    ]
    assert [v["info"]["training"]["global_step"] for v in versions] == [2, 4]
    assert embedded.json("show", "acme/steps@last")["version"] == 2

    one = embedded.json("push", str(out / "checkpoint-2"), "acme/one")
    assert {s["path"] for s in one["skipped"]} >= {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
