"""The Python API for notebooks and scripts: `registry.connect()` gives an `AdapterRegistry`, the
client the `adapters` CLI uses (embedded, or a server when ADAPTERS_URL is set) with the same
functions behind each method that the CLI calls (push, pull, jobs, bases).

    >>> import registry
    >>> reg = registry.connect()                      # as the CLI: ADAPTERS_URL/ADAPTERS_TOKEN or embedded
    >>> reg.push("out/", "acme/legal", alias=["staging"])   # a Trainer output_dir as it is
    >>> reg.resolve("acme/legal@staging").evals
    >>> reg.fit("meta-llama/Llama-3.1-8B", task="legal-qa")
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.client import open_client
from registry.client.bases import add_base_folder, job_base_params, push_base, resolve_push_base
from registry.client.jobs import submit_and_follow
from registry.client.reads import ClientReads, pull_ref
from registry.client.transfer import parse_eval, push_checkpoints, push_folder
from registry.config import Settings
from registry.entities import (
    AliasInfo,
    BaseInfo,
    EvalHistory,
    EvalScoreIn,
    FitQuery,
    FitResult,
    Leaderboard,
    LeaderboardQuery,
    PushResult,
    VersionFilter,
    VersionInfo,
    VersionSummary,
)
from registry.jobspec import Check4bitResult, ExportResult, JobInfo, JobRequest, JobType, MergeResult

if TYPE_CHECKING:
    from registry.client.interface import RegistryClient, TransferProgress

Scores = Mapping[str, float] | Iterable[EvalScoreIn | str]
"""Eval scores: {"accuracy": 0.91}, or EvalScoreIn, or "accuracy=0.91@mmlu:test" strings."""


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    home: str | Path | None = None,
    user: str | None = None,
) -> AdapterRegistry:
    """Open the registry as the CLI does: the environment (ADAPTERS_URL, ADAPTERS_TOKEN or the token
    `adapters login` kept, ADAPTERS_HOME, ...), with the arguments given here taking precedence.
    Without a URL the registry is embedded (SQLite and blobs under ADAPTERS_HOME).

    Example:
        >>> reg = registry.connect("https://adapters.example.com", token="adr_...")
    """
    given: dict[str, Any] = {"url": url, "token": token, "home": home, "user": user}
    return AdapterRegistry(Settings(**{k: v for k, v in given.items() if v is not None}))


def scores(values: Scores | None) -> list[EvalScoreIn]:
    """Eval scores in any of the `Scores` shapes, as EvalScoreIn (strings parsed as `--eval`)."""
    if values is None:
        return []
    if isinstance(values, Mapping):
        return [EvalScoreIn(metric=k, value=v) for k, v in values.items()]
    return [v if isinstance(v, EvalScoreIn) else parse_eval(v) for v in values]


class AdapterRegistry:
    """A registry opened by `connect()`. Each method is one `adapters` command; errors are the
    registry's typed exceptions (registry.errors: NotFound, Forbidden, UnknownBase, ...). Use it as a
    context manager, or call `close()`.

    `client` is the RegistryClient underneath (registry.client.interface) for what this class does
    not wrap (users, tokens, audit, gc).
    """

    def __init__(self, settings: Settings, client: RegistryClient | None = None) -> None:
        self.settings = settings
        self.client: RegistryClient = client if client is not None else open_client(settings)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> AdapterRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- versions
    def push(
        self,
        folder: str | Path,
        repo: str,
        *,
        base: str | None = None,
        task: str | None = None,
        evals: Scores | None = None,
        alias: Sequence[str] = (),
        message: str | None = None,
        force: bool = False,
        all_checkpoints: bool = False,
        progress: TransferProgress | None = None,
    ) -> PushResult:
        """`adapters push`: validate `folder` (a PEFT adapter, a Trainer output_dir or one of its
        checkpoints; training artefacts skipped) and push it as a new version of `repo`, or none
        when it equals the latest (`created` False). The base: `base` (a registered name,
        sha256:<fingerprint> or a model folder), else adapter_config's base_model_name_or_path, a
        local folder there linked by fingerprint; `base_note` says which, or how to link it. With
        `all_checkpoints`, each checkpoint-N in step order; the last one's result is returned.

        Raises:
            UnknownBase: `base` names neither a readable base nor a model folder.
            InvalidAdapter: the folder's problems, all of them.

        Example:
            >>> reg.push("out/checkpoint-500", "acme/legal", evals={"eval_loss": 1.2}, alias=["staging"])
        """
        folder = Path(folder)
        chosen = push_base(self.client, base, folder, progress)
        options: dict[str, Any] = dict(
            base=chosen.value,
            task=task,
            evals=scores(evals),
            aliases=list(alias),
            message=message,
            force=force,
            progress=progress,
        )
        if all_checkpoints:
            result = push_checkpoints(self.client, folder, repo, **options)[-1]
        else:
            result = push_folder(self.client, folder, repo, **options)
        return result.model_copy(update={"base_note": chosen.note})

    def pull(self, ref: str, output: str | Path | None = None, *, force: bool = False) -> Path:
        """`adapters pull`: write the version's files, each verified, into `output` (default
        ./NAME); returns the folder. Load it with PeftModel.from_pretrained(base, folder).

        Example:
            >>> PeftModel.from_pretrained(model, reg.pull("acme/legal@production"))
        """
        # The CLI's pull: an immutable reference resolved before starts from the RefCache.
        return pull_ref(
            ClientReads(self.client), ref, Path(output) if output is not None else None, force=force
        )[1]

    def resolve(self, ref: str) -> VersionInfo:
        """`adapters show`: one version whole (config, files, evals, aliases, training facts)."""
        return self.client.resolve(ref)

    def list(
        self,
        *,
        repo: str | None = None,
        task: str | None = None,
        base: str | None = None,
        peft_type: str | None = None,
        all_versions: bool = False,
        limit: int = 50,
    ) -> builtins.list[VersionSummary]:
        """`adapters list`: newest first, each repository's latest unless a filter or
        `all_versions` is given; up to `limit` versions (pages followed)."""
        latest_only = not (all_versions or repo or task or base or peft_type)
        flt = VersionFilter(repo=repo, task=task, base=base, peft_type=peft_type, latest_only=latest_only)
        items: list[VersionSummary] = []
        cursor: str | None = None
        while len(items) < limit:
            page = self.client.list_versions(flt, min(limit - len(items), 200), cursor)
            items += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        return items

    def alias(self, ref: str, name: str) -> AliasInfo:
        """`adapters alias set`: point alias `name` of the version's repository at `ref`."""
        return self.client.set_alias(ref, name)

    # ---- bases
    def add_base(self, folder: str | Path, name: str, *, upload: bool = False) -> BaseInfo:
        """`adapters base add FOLDER --name NAME`: fingerprint a transformers model folder and
        register it (its files too with `upload`, which a server's jobs need)."""
        return add_base_folder(self.client, Path(folder), [name], upload=upload)

    def fit(
        self,
        base: str | Path,
        *,
        task: str | None = None,
        peft_type: str | None = None,
        min_scores: Mapping[str, float] | None = None,
        tier: str = "all",
        sort: str | None = None,
        limit: int = 50,
    ) -> FitResult:
        """`adapters fit`: which adapters fit `base` (a name, a fingerprint, a model folder)."""
        ref = (
            resolve_push_base(self.client, str(base), None) if Path(base).expanduser().is_dir() else str(base)
        )
        query = FitQuery(
            base=ref or str(base),
            task=task,
            peft_type=peft_type,
            min_scores=dict(min_scores or {}),
            tier=tier,
            sort=sort,
            limit=limit,
        )
        return self.client.fit(query)

    # ---- evaluations
    def eval_add(self, ref: str, values: Scores, *, note: str | None = None) -> EvalHistory:
        """`adapters eval add`: append scores to the version's history (the latest per metric,
        dataset and split is current).

        Example:
            >>> reg.eval_add("acme/legal:3", {"accuracy": 0.91}, note="lm-eval 0.4, 5-shot")
            >>> reg.eval_add("acme/legal:3", ["accuracy=0.88@mmlu:test"])
        """
        return self.client.add_evals(ref, scores(values), note)

    def leaderboard(
        self,
        base: str,
        metric: str,
        *,
        dataset: str | None = None,
        split: str | None = None,
        task: str | None = None,
        lower_is_better: bool = False,
        limit: int = 20,
    ) -> Leaderboard:
        """`adapters leaderboard`: the adapters that fit `base`, best version per repository."""
        query = LeaderboardQuery(
            base=base,
            metric=metric,
            dataset=dataset,
            split=split,
            task=task,
            lower_is_better=lower_is_better,
            limit=limit,
        )
        return self.client.leaderboard(query)

    # ---- jobs (run in this process when embedded, by a server's workers otherwise)
    def merge(
        self,
        inputs: Mapping[str, float],
        into: str,
        *,
        method: str = "svd",
        rank: int | str | None = None,
        alias: Sequence[str] = (),
        message: str | None = None,
        **options: Any,
    ) -> MergeResult:
        """`adapters merge`: merge {ref: weight} into a new version of `into`; waits for the job.
        `options`: energy, density, majority_sign_method, seed, allow_base_mismatch, task.

        Example:
            >>> reg.merge({"acme/legal@production": 0.7, "acme/medical:2": 0.3}, into="acme/mix")
        """
        params = {
            "inputs": [{"ref": r, "weight": float(w)} for r, w in inputs.items()],
            "into": into,
            "method": method,
            "rank": rank,
            "aliases": list(alias),
            "message": message,
            **options,
        }
        return self._run("merge", params).result_as(MergeResult)

    def export(self, ref: str, base: str | Path, *, into: str | None = None, **options: Any) -> ExportResult:
        """`adapters export`: merge `ref` into `base` and register the result as a derived base
        (sharded safetensors); `options`: dtype, max_shard_size (bytes). Pull its files with
        registry.client.transfer.write_files(reg.client, result.files, folder)."""
        params = {"ref": ref, **job_base_params(self.client, str(base)), "into": into, **options}
        return self._run("export", params).result_as(ExportResult)

    def check_4bit(self, ref: str, base: str | Path, **options: Any) -> Check4bitResult:
        """`adapters check-4bit`: will `ref` work on a 4-bit bitsandbytes `base`? The verdict is
        recorded on the version; `options`: probe, probe_length, seed, quant, double_quant,
        compute_dtype."""
        params = {"ref": ref, **job_base_params(self.client, str(base)), **options}
        return self._run("check-4bit", params).result_as(Check4bitResult)

    def _run(self, job_type: JobType, params: dict[str, Any]) -> JobInfo:
        with self._jobs_running():
            return submit_and_follow(self.client, JobRequest(type=job_type, params=params))

    @contextmanager
    def _jobs_running(self) -> Iterator[None]:
        """As the CLI (cli/app.py): an embedded registry runs the job in this process meanwhile."""
        if not self.client.in_process:
            yield
            return
        from registry.worker.embedded import jobs_run_here
        from registry.worker.settings import WorkerSettings

        with jobs_run_here(self.client, WorkerSettings.from_settings(self.settings)):
            yield
