"""`adapters merge`: resolve the inputs, pull them, merge with registry.tensors, push with lineage."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from registry.client.args import finite_number, name_equals_number
from registry.client.base import RegistryClient, TransferProgress
from registry.client.transfer import pull, push_folder
from registry.entities import PushResult, VersionInfo
from registry.errors import BadRequest, BaseMismatch, MergeRefused


@dataclass(frozen=True)
class MergeInput:
    ref: str
    weight: float


def parse_merge_input(text: str) -> MergeInput:
    """REF=WEIGHT, e.g. acme/legal@production=0.7 or acme/medical:2=-0.3."""
    usage = "REF=WEIGHT, e.g. acme/legal@production=0.7"
    ref, weight = name_equals_number(text, usage, split_last=True)
    return MergeInput(ref, finite_number(weight, text, usage))


def check_mergeable(infos: list[VersionInfo], allow_base_mismatch: bool) -> None:
    """Refuse what merges would silently get wrong (PEFT does: peft#3761, #3737)."""
    for info in infos:
        if info.peft_type != "LORA":
            raise MergeRefused(
                f"{info.ref} is {info.peft_type}; only LoRA adapters can be merged", ref=info.ref
            )
        if info.use_dora:
            raise MergeRefused(
                f"{info.ref} is a DoRA adapter: its magnitude vector rescales the whole weight, so DoRA "
                "updates do not add; merge into the base instead",
                ref=info.ref,
            )
    saved = {tuple(sorted(i.config.get("modules_to_save") or [])) for i in infos}
    if len(saved) > 1:
        raise MergeRefused(
            f"modules_to_save differ across inputs ({sorted(saved)}): full copies of a module cannot be "
            "weighted like low-rank updates"
        )
    bases = {i.base_model.name for i in infos if i.base_model.name}
    if len(bases) > 1 and not allow_base_mismatch:
        raise BaseMismatch(
            f"inputs were trained on different bases {sorted(bases)}; pass --allow-base-mismatch if they share "
            "one architecture (shapes are still checked)",
            bases=sorted(bases),
        )


def merge_refs(
    client: RegistryClient,
    inputs: list[MergeInput],
    into: str,
    *,
    method: str = "svd",
    rank: int | Literal["auto"] | None = None,
    energy: float = 0.99,
    density: float = 1.0,
    majority_sign_method: Literal["total", "frequency"] = "total",
    seed: int = 0,
    allow_base_mismatch: bool = False,
    task: str | None = None,
    aliases: list[str] | None = None,
    message: str | None = None,
    progress: TransferProgress | None = None,
    on_merge: Callable[[int, int], None] | None = None,
    device: str = "cpu",
) -> PushResult:
    """Merge registry adapters and push the result as a new version of `into`, with its lineage.

    This is the body of a merge job (registry.worker); `on_merge(done, total)` follows modules.
    """
    import torch

    from registry.tensors.lora import load_lora, save_lora
    from registry.tensors.merge import MergeOptions, merge_loras

    if not inputs:
        raise BadRequest("give at least one REF=WEIGHT")
    if rank is not None and rank != "auto" and (not isinstance(rank, int) or rank < 1):
        raise BadRequest(f"--rank must be a positive integer or 'auto', got {rank!r}")
    infos = [client.resolve(i.ref) for i in inputs]
    check_mergeable(infos, allow_base_mismatch)
    opts = MergeOptions(
        method=method,
        rank=rank,
        energy=energy,
        density=density,
        majority_sign_method=majority_sign_method,
        seed=seed,
    )
    with tempfile.TemporaryDirectory(prefix="adapters-merge-") as tmp:
        loaded = []
        for n, info in enumerate(infos):
            _, folder = pull(client, info.ref, Path(tmp) / f"in{n}", progress=progress)
            loaded.append(load_lora(folder, device))
        extras = [ad.extra for ad in loaded]
        if any(set(e) != set(extras[0]) or any(not e[k].equal(extras[0][k]) for k in e) for e in extras):
            raise MergeRefused(
                "inputs carry different non-LoRA tensors (modules_to_save); they cannot be merged"
            )
        result = merge_loras(
            [(ad, i.weight) for ad, i in zip(loaded, inputs, strict=True)], opts, on_module=on_merge
        )
        dtypes = {ad.dtype for ad in loaded}
        dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
        out = Path(tmp) / "merged"
        save_lora(out, loaded[0].config, result.modules, dtype, extras[0])
        lineage: dict[str, Any] = {
            "kind": "merge",
            "method": method,
            "parameters": {k: v for k, v in asdict(opts).items() if k != "method"},
            "parents": [
                {"ref": info.ref, "digest": info.digest, "weight": i.weight}
                for info, i in zip(infos, inputs, strict=True)
            ],
            "error": {
                "max": result.max_error,
                "mean": result.mean_error,
                "modules": {k: {"rank": r.rank, "rel_error": r.rel_error} for k, r in result.report.items()},
            },
        }
        (out / "README.md").write_text(_model_card(infos, inputs, method, result.max_error), "utf-8")
        bases = {i.base_model.name for i in infos if i.base_model.name}
        return push_folder(
            client,
            out,
            into,
            base=bases.pop() if len(bases) == 1 else None,
            task=task,
            aliases=aliases,
            message=message or f"{method} merge of {len(inputs)} adapters",
            lineage=lineage,
            progress=progress,
        )


def _model_card(infos: list[VersionInfo], inputs: list[MergeInput], method: str, max_error: float) -> str:
    rows = "\n".join(
        f"| {info.ref} | `{info.digest}` | {i.weight:g} |" for info, i in zip(infos, inputs, strict=True)
    )
    return (
        f"# Merged LoRA adapter\n\nMade by adapter-registry, method `{method}`; largest relative error "
        f"of a module's update against the exact weighted sum: {max_error:.3g}.\n\n"
        f"| parent | digest | weight |\n|---|---|---:|\n{rows}\n"
    )
