"""Issue 23's "done when", second part: a real transformers `Trainer` (PEFT LoRA on the tiny Llama
loaded from a folder, CPU, six steps, evaluation and a save every two) with RegistryCallback
pushes each checkpoint as a version, records the evaluations with their steps, links the base by
fingerprint (adapter_config holds the folder's absolute path) and keeps `best` on the best
checkpoint in either direction; the output_dir then pushes through the Python API, linked too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import registry
from registry.facade import AdapterRegistry
from registry.integrations.transformers import RegistryCallback
from tests.cli.test_trainer_push import RandomTokens

pytestmark = pytest.mark.models


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AdapterRegistry:
    """`registry.connect()` from the environment, embedded, as the CLI would open it."""
    for name in ("ADAPTERS_URL", "ADAPTERS_DATABASE_URL", "ADAPTERS_BLOB_URL"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("ADAPTERS_HOME", str(tmp_path / "home"))
    return registry.connect()


def test_callback_pushes_each_save_with_evals_base_and_best(reg: AdapterRegistry, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from tests.adapters_factory import save_base, tiny_llama

    base_dir = save_base(tiny_llama(), tmp_path / "models" / "tiny-llama").resolve()
    fingerprint = reg.add_base(base_dir, "acme/tiny-llama").fingerprint
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    lowest = RegistryCallback("acme/trained", registry=reg)  # eval_loss, lower is better
    highest = RegistryCallback("acme/worst", registry=reg, metric="loss", greater_is_better=True)
    out = tmp_path / "out"
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=5e-2,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=RandomTokens(12, 0),
        eval_dataset=RandomTokens(4, 1),
        callbacks=[lowest, highest],
    )
    trainer.train()

    # One version per save, in step order, each linked to the registered base by its weights.
    assert [(p.version, p.info.message) for p in lowest.pushed] == [
        (1, "checkpoint-2 (step 2)"),
        (2, "checkpoint-4 (step 4)"),
        (3, "checkpoint-6 (step 6)"),
    ]
    assert all(p.info.base_linked and p.info.base_fingerprint == fingerprint for p in lowest.pushed)
    assert lowest.pushed[0].base_note is not None and "linked by fingerprint" in lowest.pushed[0].base_note
    assert str(base_dir) in lowest.pushed[0].base_note
    assert {f.path for f in lowest.pushed[0].info.files}.isdisjoint({"optimizer.pt", "scheduler.pt"})

    # The evaluations with their steps: version 3 holds the run's history up to step 6.
    records = reg.client.eval_history("acme/trained:3").records
    assert sorted(r.note or "" for r in records if r.metric == "loss") == [
        f"trainer_state.json, step {s}" for s in (2, 4, 6)
    ]

    # `best` on the checkpoint with the lowest eval_loss; the other callback's on the highest.
    losses = {e["step"]: e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e}
    assert sorted(losses) == [2, 4, 6] and len(set(losses.values())) == 3
    best_step = min(losses, key=lambda s: losses[s])
    worst_step = max(losses, key=lambda s: losses[s])
    assert reg.resolve("acme/trained@best").version == best_step // 2
    assert reg.resolve("acme/worst@best").version == worst_step // 2
    assert lowest.best is not None and lowest.best.version == best_step // 2

    # The output_dir through the Python API: linked by fingerprint although the config holds a
    # path; the same push again is unchanged.
    trainer.save_model()
    assert (out / "adapter_config.json").read_text().count(str(base_dir)) == 1
    pushed = reg.push(out, "acme/final", alias=["production"])
    assert pushed.created and pushed.info.base_fingerprint == fingerprint
    assert "training_args.bin" in {s.path for s in pushed.skipped}
    again = reg.push(out, "acme/final")
    assert not again.created and again.version == 1
    assert [v.ref for v in reg.list(repo="acme/final")] == ["acme/final:1"]


def test_callback_pushes_once_at_the_end(reg: AdapterRegistry, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from tests.adapters_factory import tiny_llama

    torch.manual_seed(0)
    model = get_peft_model(
        tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type="CAUSAL_LM")
    )
    callback = RegistryCallback("acme/end", registry=reg, push="end")
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(
        model=model,
        args=args,
        train_dataset=RandomTokens(4, 0),
        eval_dataset=RandomTokens(2, 1),
        callbacks=[callback],
    ).train()
    assert [p.version for p in callback.pushed] == [1]
    shown = reg.resolve("acme/end@best")
    assert shown.version == 1 and shown.training is not None and shown.training["global_step"] == 2
    assert not shown.base_linked  # the tiny Llama was built in memory: nothing to link
    assert callback.pushed[0].base_note is not None and "not linked" in callback.pushed[0].base_note
