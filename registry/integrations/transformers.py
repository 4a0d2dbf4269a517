"""A transformers `TrainerCallback` that pushes a PEFT adapter into the registry while it trains.

    >>> from registry.integrations.transformers import RegistryCallback
    >>> trainer = Trainer(model=peft_model, args=args, ..., callbacks=[RegistryCallback("acme/legal")])

At each save (`on_save`) the checkpoint folder is pushed as a version of the repository (its
optimizer and RNG states skipped, its trainer_state.json's evaluations recorded with their steps),
or once at the end with `push="end"`. The base is linked by fingerprint when adapter_config.json
names a model folder on this machine (PEFT writes the path a base was loaded from), fingerprinted
once per run. With `best_alias`, that alias follows the best pushed checkpoint by `metric`
(default: the Trainer's metric_for_best_model, else eval_loss; greater_is_better as the Trainer
reads it). Only the main process pushes.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

if TYPE_CHECKING:
    from registry.entities import PushResult
    from registry.facade import AdapterRegistry


class RegistryCallback(TrainerCallback):
    """Push the adapter at each save (or at the end), link its base, keep `best_alias` on the best
    evaluated checkpoint. `pushed` lists the results in order; `best` is the best one so far.

    Args:
        repo: namespace/name of the repository that receives the versions.
        registry: an open AdapterRegistry (default: `registry.connect()`, from the environment).
        base: the base as `push --base` takes it (default: adapter_config's base_model_name_or_path).
        push: "save" (each checkpoint) or "end" (the final adapter once, with the run's state).
        best_alias: the alias moved to the best checkpoint (None: no alias is moved).
        metric: the metric that ranks checkpoints, with or without its `eval_` prefix.
        greater_is_better: default: the Trainer's, else False for a metric ending in "loss".
        task: recorded on each version.
    """

    def __init__(
        self,
        repo: str,
        *,
        registry: AdapterRegistry | None = None,
        base: str | None = None,
        push: Literal["save", "end"] = "save",
        best_alias: str | None = "best",
        metric: str | None = None,
        greater_is_better: bool | None = None,
        task: str | None = None,
    ) -> None:
        from registry.refs import check_alias, parse_repo

        parse_repo(repo)
        if best_alias is not None:
            check_alias(best_alias)
        if push not in ("save", "end"):
            raise ValueError(f"push={push!r}: use 'save' or 'end'")
        self.repo = repo
        self.registry = registry
        self.base = base
        self.push = push
        self.best_alias = best_alias
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.task = task
        self.pushed: list[PushResult] = []
        self.best: PushResult | None = None
        self._best_value: float | None = None
        self._metrics: dict[int, dict[str, float]] = {}

    # ---- Trainer events
    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if metrics:
            self._metrics.setdefault(state.global_step, {}).update(metrics)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.push != "save" or not state.is_world_process_zero:
            return
        folder = Path(args.output_dir or ".") / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        self._push(folder, args, state, f"{folder.name} (step {state.global_step})")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model = kwargs.get("model")
        if self.push != "end" or not state.is_world_process_zero or model is None:
            return
        with tempfile.TemporaryDirectory(prefix="adapters-push-") as tmp:
            model.save_pretrained(tmp)  # the adapter alone (a PeftModel), safetensors
            state.save_to_json(str(Path(tmp) / "trainer_state.json"))
            self._push(Path(tmp), args, state, f"end of training (step {state.global_step})")

    # ---- pushing
    def _registry(self) -> AdapterRegistry:
        if self.registry is None:
            from registry.facade import connect

            self.registry = connect()
        return self.registry

    def _push(self, folder: Path, args: TrainingArguments, state: TrainerState, message: str) -> None:
        reg = self._registry()
        result = reg.push(folder, self.repo, base=self.base, task=self.task, message=message)
        if self.base is None and result.base_note is not None:
            # Fingerprint the base folder once per run: later pushes name the base so linked.
            fingerprint = result.info.base_fingerprint
            self.base = fingerprint if result.info.base_linked and fingerprint else None
        self.pushed.append(result)
        value = self._value(args, state)
        if self.best_alias is None or value is None:  # no evaluation yet: nothing to rank
            return
        if self._better(value, args):
            self.best, self._best_value = result, value
            reg.alias(f"{result.repo}:{result.version}", self.best_alias)

    def _metric_name(self, args: TrainingArguments) -> str:
        name = self.metric or getattr(args, "metric_for_best_model", None) or "eval_loss"
        return name if name.startswith("eval_") else f"eval_{name}"

    def _value(self, args: TrainingArguments, state: TrainerState) -> float | None:
        """The ranking metric at this step (the newest evaluation up to it)."""
        name = self._metric_name(args)
        for step in sorted(self._metrics, reverse=True):
            if step <= state.global_step and name in self._metrics[step]:
                value = float(self._metrics[step][name])
                return value if math.isfinite(value) else None
        return None

    def _better(self, value: float, args: TrainingArguments) -> bool:
        if self._best_value is None:
            return True
        greater = self.greater_is_better
        if greater is None and self.metric is None:
            greater = getattr(args, "greater_is_better", None)
        if greater is None:
            greater = not self._metric_name(args).endswith("loss")
        return value > self._best_value if greater else value < self._best_value
