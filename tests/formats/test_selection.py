"""A Trainer output folder pushes as it is (issue 23): training artefacts skipped and listed, never
stored; --include/--exclude/.adaptersignore change the selection; every refusal reported at once;
trainer_state.json and a card's model-index become eval records; a config re-saved with its sets in
another order is unchanged. Fixtures are files (a hand-written trainer_state.json); the real
Trainer run is tests/cli/test_trainer_push.py."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from registry.access.principal import OPERATOR
from registry.client.local import LocalClient
from registry.client.transfer import push_checkpoints, push_folder
from registry.errors import FileNotAllowed, InvalidAdapter, PickleRefused
from registry.formats.selection import Rules, is_training_artefact, select_folder
from registry.formats.training import card_scores, front_matter
from registry.refs import parse_ref
from registry.services.context import Registry
from registry.services.evaluations import history
from storage import sha256_file

PICKLE = pickle.dumps({"lr": 1.0})


def trainer_state(step: int, evals: list[tuple[int, float]]) -> dict[str, object]:
    log: list[dict[str, object]] = []
    for s, loss in evals:
        log.append({"loss": loss + 0.1, "learning_rate": 1e-3, "epoch": s / 10, "step": s})
        log.append(
            {"eval_loss": loss, "eval_accuracy": 1 - loss, "eval_runtime": 0.1, "epoch": s / 10, "step": s}
        )
    return {
        "global_step": step,
        "epoch": step / 10,
        "max_steps": 20,
        "train_batch_size": 2,
        "best_metric": min(loss for _, loss in evals),
        "best_model_checkpoint": "/home/me/out/checkpoint-10",
        "log_history": log,
    }


def trainer_dir(lora_a: Path) -> Path:
    """lora_a dressed as a Trainer output_dir: artefacts beside it, two checkpoints, logs."""
    (lora_a / "training_args.bin").write_bytes(PICKLE)
    (lora_a / "training_args.json").write_text(
        json.dumps({"learning_rate": 0.001, "per_device_train_batch_size": 2})
    )
    for step in (10, 20):
        ckpt = lora_a / f"checkpoint-{step}"
        ckpt.mkdir()
        for f in ("adapter_model.safetensors", "adapter_config.json"):
            (ckpt / f).write_bytes((lora_a / f).read_bytes())
        for f in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
            (ckpt / f).write_bytes(PICKLE)
        evals = [(10, 0.9)] if step == 10 else [(10, 0.9), (20, 0.7)]
        (ckpt / "trainer_state.json").write_text(json.dumps(trainer_state(step, evals)))
    (lora_a / "runs" / "Jan01").mkdir(parents=True)
    (lora_a / "runs" / "Jan01" / "events.out.tfevents.1.host").write_bytes(b"\x00" * 16)
    (lora_a / "wandb").mkdir()
    (lora_a / "wandb" / "latest-run").symlink_to(lora_a / "runs")  # wandb's own symlink
    (lora_a / ".git").mkdir()
    (lora_a / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return lora_a


def assert_not_stored(registry: Registry, *files: Path) -> None:
    for f in files:
        assert registry.store.stat(sha256_file(str(f)).digest) is None, f


def test_selection_skips_training_artefacts(lora_a: Path) -> None:
    folder = trainer_dir(lora_a)
    sel = select_folder(folder)
    paths = [p for p, _ in sel.files]
    assert paths == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_state.json",
        "training_args.json",
    ]
    assert sel.borrowed == {"trainer_state.json": "checkpoint-20/trainer_state.json"}
    skipped = {s.path: s for s in sel.skipped}
    assert set(skipped) == {
        ".git/",
        "checkpoint-10/",
        "checkpoint-20/",
        "runs/",
        "training_args.bin",
        "wandb/",
    }
    assert skipped["checkpoint-20/"].files == 7 and "training artefact" in skipped["runs/"].reason
    # the same rule answers the Hub's preupload
    assert is_training_artefact("training_args.bin") and is_training_artefact("checkpoint-5/optimizer.pt")
    assert not is_training_artefact("adapter_model.safetensors") and not is_training_artefact("README.md")


def test_include_exclude_and_ignore_file(lora_a: Path, tmp_path: Path) -> None:
    folder = trainer_dir(lora_a)
    (folder / "notes.md").write_text("notes\n")
    sel = select_folder(folder, Rules(exclude=("*.md",)))
    assert "notes.md" not in dict(sel.files) and "README.md" not in dict(sel.files)
    assert {s.reason for s in sel.skipped if s.path == "notes.md"} == {"--exclude"}
    sel = select_folder(folder, Rules(exclude=("*.md",), include=("README.md",)))
    assert "README.md" in dict(sel.files) and "notes.md" not in dict(sel.files)
    (folder / ".adaptersignore").write_text("# drafts\nnotes.md\n")
    sel = select_folder(folder)
    assert "notes.md" not in dict(sel.files) and ".adaptersignore" not in dict(sel.files)
    assert any(s.path == "notes.md" and s.reason == "ignored by .adaptersignore" for s in sel.skipped)
    other = tmp_path / "other.ignore"
    other.write_text("README.md\n")
    sel = select_folder(folder, Rules(ignore_file=other))
    assert "README.md" not in dict(sel.files) and "notes.md" in dict(sel.files)


def test_trainer_folder_pushes_skipping_artefacts(
    client: LocalClient,  # noqa: F811
    lora_a: Path,
    registry: Registry,
) -> None:
    folder = trainer_dir(lora_a)
    result = push_folder(client, folder, "acme/run")
    assert result.created and {s.path for s in result.skipped} >= {"training_args.bin", "checkpoint-20/"}
    assert {f.path for f in result.info.files} == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_state.json",
        "training_args.json",
    }
    assert_not_stored(registry, folder / "training_args.bin", folder / "checkpoint-20" / "optimizer.pt")
    training = result.info.training
    assert training is not None
    assert training["global_step"] == 20 and training["best_model_checkpoint"] == "checkpoint-10"
    assert training["learning_rate"] == 0.001 and training["train_batch_size"] == 2
    evals = history(registry, parse_ref("acme/run:1"), principal=OPERATOR)
    loss = [(r.value, r.note) for r in reversed(evals.records) if r.metric == "loss"]
    assert loss == [(0.9, "trainer_state.json, step 10"), (0.7, "trainer_state.json, step 20")]
    assert {r.metric for r in evals.current} == {"loss", "accuracy"}  # runtime is not a score
    assert {(e.metric, round(e.value, 6)) for e in result.info.evals} == {("loss", 0.7), ("accuracy", 0.3)}


def test_all_checkpoints_in_step_order(client: LocalClient, lora_a: Path) -> None:  # noqa: F811
    folder = trainer_dir(lora_a)
    (folder / "checkpoint-20" / "adapter_model.safetensors").write_bytes(
        (folder / "adapter_model.safetensors").read_bytes()[:-4] + b"\x00\x00\x80\x3f"
    )
    results = push_checkpoints(client, folder, "acme/ckpt", aliases=["newest"])
    assert [(r.version, r.info.message) for r in results] == [
        (1, "checkpoint-10 (step 10)"),
        (2, "checkpoint-20 (step 20)"),
    ]
    assert [r.info.training["global_step"] for r in results if r.info.training] == [10, 20]
    assert results[0].info.aliases == [] and results[1].info.aliases == ["newest"]
    assert {s.path for s in results[0].skipped} == {
        "optimizer.pt",
        "rng_state.pth",
        "scheduler.pt",
        "training_args.bin",
    }


def test_every_problem_reported_at_once(client: LocalClient, lora_a: Path, registry: Registry) -> None:  # noqa: F811
    (lora_a / "adapter_model.bin").write_bytes(PICKLE)
    (lora_a / "train.py").write_text("print('hi')\n")
    (lora_a / "notes.json").write_bytes(pickle.dumps({"x": 1}, protocol=4))
    with pytest.raises(InvalidAdapter) as info:
        push_folder(client, lora_a, "acme/bad")
    err = info.value
    assert isinstance(err, PickleRefused) and err.code == "pickle_refused"  # the first one's code
    assert [(p["code"], p["path"]) for p in err.fields["problems"]] == [
        ("pickle_refused", "adapter_model.bin"),
        ("file_not_allowed", "train.py"),
        ("pickle_refused", "notes.json"),
    ]
    assert "3 problems" in err.message
    (lora_a / "adapter_model.bin").unlink()
    (lora_a / "notes.json").unlink()
    with pytest.raises(FileNotAllowed):  # one problem: the error as it always was
        push_folder(client, lora_a, "acme/bad")


CARD = """---
library_name: peft
model-index:
- name: legal-lora
  results:
  - task: {type: text-generation}
    dataset: {name: MMLU, type: cais/mmlu, split: test}
    metrics:
    - {type: accuracy, value: 0.61}
    - {type: f1, value: "0.5"}
  - dataset: {name: LexGLUE}
    metrics:
    - {name: accuracy, value: 0.7}
---
# legal-lora
"""


def test_model_index_becomes_eval_records(client: LocalClient, lora_a: Path, registry: Registry) -> None:  # noqa: F811
    (lora_a / "README.md").write_text(CARD)
    push_folder(client, lora_a, "acme/card")
    current = {
        (r.metric, r.dataset, r.split): (r.value, r.note)
        for r in history(registry, parse_ref("acme/card:1"), principal=OPERATOR).current
    }
    note = "reported by the model card (README.md model-index)"
    assert current == {
        ("accuracy", "cais/mmlu", "test"): (0.61, note),
        ("f1", "cais/mmlu", "test"): (0.5, note),
        ("accuracy", "LexGLUE", None): (0.7, note),
    }


def test_front_matter_is_bounded() -> None:
    bomb = "---\na: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n---\n"
    assert front_matter(bomb) is None  # aliases are not read
    assert front_matter("no header\n") is None
    assert card_scores(b"---\nmodel-index: [1, {results: 2}]\n---\n") == []


def test_config_reordered_sets_are_unchanged(client: LocalClient, lora_a: Path) -> None:  # noqa: F811
    first = push_folder(client, lora_a, "acme/same")
    cfg = json.loads((lora_a / "adapter_config.json").read_text())
    cfg["target_modules"] = list(reversed(cfg["target_modules"]))
    (lora_a / "adapter_config.json").write_text(json.dumps(cfg, indent=4))
    again = push_folder(client, lora_a, "acme/same")
    assert not again.created and again.version == first.version
    assert "differs only in the order of target_modules" in again.detail
    cfg["lora_dropout"] = 0.25  # a real change still makes a version
    (lora_a / "adapter_config.json").write_text(json.dumps(cfg))
    assert push_folder(client, lora_a, "acme/same").created
