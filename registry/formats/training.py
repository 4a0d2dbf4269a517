"""What a training run says about a version, read from the files pushed with it: the evaluation
metrics and facts of a transformers `Trainer` (trainer_state.json, and training_args.json when
present; training_args.bin is a pickle and is never read), and the results a model card reports
in its `model-index` (the Hub's convention, in README.md's YAML front matter).

Nothing here refuses a push: a field of the wrong type is left out. The push checks have already
proved each JSON file parses (formats/inspect.py)."""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass, field
from typing import Any

import yaml

from registry.bounds import loads_strict
from registry.errors import InvalidAdapter
from registry.formats.inspect import MAX_JSON_FILE_BYTES, ReadRange
from registry.formats.manifest import FileEntry

TRAINER_STATE = "trainer_state.json"
TRAINING_ARGS = "training_args.json"
CARD = "README.md"
MAX_TRAINER_SCORES = 5000
"""Eval records one push takes from a log history (the latest ones): 100 evaluations of 50 metrics."""
MAX_CARD_BYTES = 256 * 1024
"""The front matter is read from the first bytes of README.md only."""
MAX_FRONT_MATTER_BYTES = 64 * 1024
NOT_QUALITY = frozenset({"runtime", "samples_per_second", "steps_per_second", "epoch"})
"""`eval_*` keys the Trainer logs that measure the evaluation loop, not the model."""
ARGS_FACTS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "seed",
)
CARD_NOTE = "reported by the model card (README.md model-index)"


@dataclass(frozen=True)
class ReportedScore:
    """A score found in the files, with where it came from (the eval record's note)."""

    metric: str
    value: float
    note: str
    dataset: str | None = None
    split: str | None = None
    step: int | None = None


@dataclass
class TrainingRecord:
    facts: dict[str, Any] = field(default_factory=dict)
    """Global step, epochs, best metric and checkpoint, learning rate, batch size...; empty when
    no file says anything."""
    scores: list[ReportedScore] = field(default_factory=list)
    """The model card's results first, then the Trainer's evaluations in step order."""


def read_training(files: list[FileEntry], read: ReadRange) -> TrainingRecord:
    """The training facts and reported scores of a version's files (see the module docstring)."""
    by_path = {f.path: f for f in files}
    out = TrainingRecord()
    if CARD in by_path:
        card = by_path[CARD]
        out.scores.extend(card_scores(read(card, 0, min(card.size, MAX_CARD_BYTES))))
    args = _json(by_path.get(TRAINING_ARGS), read)
    if isinstance(args, dict):
        out.facts.update({k: args[k] for k in ARGS_FACTS if _plain(args.get(k))})
    state = _json(by_path.get(TRAINER_STATE), read)
    if isinstance(state, dict):
        facts, scores = trainer_state(state)
        out.facts.update(facts)
        out.scores.extend(scores)
    if out.scores:
        out.facts["reported_scores"] = len(out.scores)
    return out


def _json(entry: FileEntry | None, read: ReadRange) -> Any:
    if entry is None or entry.size > MAX_JSON_FILE_BYTES:
        return None
    return loads_strict(read(entry, 0, entry.size), entry.path, InvalidAdapter, max_depth=64, storable=False)


def _plain(value: Any) -> bool:
    """A JSON scalar worth recording (a bounded string, a finite number)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return math.isfinite(value)
    return isinstance(value, str) and 0 < len(value) <= 256


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def trainer_state(state: dict[str, Any]) -> tuple[dict[str, Any], list[ReportedScore]]:
    """Facts and `eval_*` metrics (with their step) of a Trainer's trainer_state.json."""
    facts: dict[str, Any] = {"source": TRAINER_STATE}
    for key in ("global_step", "max_steps", "train_batch_size", "eval_steps", "save_steps"):
        if isinstance(state.get(key), int) and not isinstance(state.get(key), bool):
            facts[key] = state[key]
    for key in ("epoch", "best_metric", "num_train_epochs"):
        number = _number(state.get(key))
        if number is not None and not isinstance(state.get(key), str):
            facts[key] = number
    best = state.get("best_model_checkpoint")
    if isinstance(best, str) and best:  # a path on the training machine: its last part says which
        facts["best_model_checkpoint"] = posixpath.basename(best.replace("\\", "/").rstrip("/"))[:256]
    scores: list[ReportedScore] = []
    history = state.get("log_history")
    for entry in history if isinstance(history, list) else ():
        if not isinstance(entry, dict):
            continue
        step = entry.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        for key, value in entry.items():
            metric = key.removeprefix("eval_")
            number = _number(value) if not isinstance(value, str) else None
            if key.startswith("eval_") and metric not in NOT_QUALITY and number is not None:
                scores.append(ReportedScore(metric, number, f"{TRAINER_STATE}, step {step}", step=step))
    scores.sort(key=lambda s: s.step or 0)  # stable: a step's metrics stay in logged order
    if len(scores) > MAX_TRAINER_SCORES:
        facts["scores_dropped"] = len(scores) - MAX_TRAINER_SCORES
        scores = scores[-MAX_TRAINER_SCORES:]
    return facts, scores


class _NoAliases(yaml.SafeLoader):
    """safe_load without anchors and aliases: a few lines of aliases expand to billions of nodes
    for whoever walks the result ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not read in a model card")
        return super().compose_node(parent, index)


def front_matter(text: str) -> Any:
    """The YAML front matter of a model card (between the first two `---` lines), or None."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        return None
    block = "\n".join(lines[1:end])
    if len(block.encode()) > MAX_FRONT_MATTER_BYTES:
        return None
    try:
        return yaml.load(block, Loader=_NoAliases)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError):
        return None  # a card is prose first: a broken header refuses nothing


def card_scores(head: bytes) -> list[ReportedScore]:
    """The `model-index` results of a model card as scores with dataset and split."""
    meta = front_matter(head.decode("utf-8", errors="replace").replace("\r\n", "\n"))
    index = meta.get("model-index") if isinstance(meta, dict) else None
    out: list[ReportedScore] = []
    for model in index if isinstance(index, list) else ():
        results = model.get("results") if isinstance(model, dict) else None
        for result in results if isinstance(results, list) else ():
            if not isinstance(result, dict):
                continue
            data = result.get("dataset")
            data = data if isinstance(data, dict) else {}
            dataset = next((str(data[k]) for k in ("type", "name") if _plain(data.get(k))), None)
            split = str(data["split"]) if dataset and _plain(data.get("split")) else None
            metrics = result.get("metrics")
            for metric in metrics if isinstance(metrics, list) else ():
                if not isinstance(metric, dict):
                    continue
                name = next((str(metric[k]) for k in ("type", "name") if _plain(metric.get(k))), None)
                value = _number(metric.get("value"))
                if name is not None and value is not None:
                    out.append(ReportedScore(name, value, CARD_NOTE, dataset, split))
    return out
