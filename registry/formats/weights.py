"""Check that adapter tensor names and shapes agree with the PEFT config (LoRA family)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import WeightsMismatch
from registry.formats.peft_config import PeftConfigFacts
from registry.formats.safetensors_header import TensorInfo
from registry.formats.targets import module_matches

PREFIX = "base_model.model."
# A LoRA factor as PEFT saves it: <module>.lora_A.weight, <module>.lora_embedding_B, ...
LORA_FACTOR_RE = re.compile(
    r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.weight)?$"
)
LORA_TYPES = {"LORA"}


@dataclass(frozen=True)
class LoraModule:
    name: str
    rank: int
    in_features: int
    out_features: int


def pattern_value(module: str, patterns: dict[str, int], default: int) -> int:
    """rank_pattern lookup: the first pattern that matches the end of the module name."""
    for pat, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?(?:{pat})", module):
            return value
    return default


def check_lora_tensors(
    path: str, config: PeftConfigFacts, tensors: dict[str, TensorInfo]
) -> list[LoraModule]:
    """Every lora_A has its lora_B, targets a configured module, and has the configured rank."""
    if config.peft_type not in LORA_TYPES:
        return []
    pairs: dict[str, dict[str, TensorInfo]] = {}
    for name, info in tensors.items():
        m = LORA_FACTOR_RE.match(name)
        if m is None:
            if (
                config.modules_to_save
                or config.use_dora
                or "lora_magnitude_vector" in name
                or "trainable_tokens" in name
                or name.endswith(".bias")
                or name.endswith(".base_layer.weight")  # save_embedding_layers: the resized embedding
            ):
                continue
            raise WeightsMismatch(f"{path}: tensor {name!r} is not a LoRA factor", path=path, tensor=name)
        module = m["module"].removeprefix(PREFIX)
        pairs.setdefault(module, {})[m["kind"].replace("embedding_", "")] = info
    if not pairs:
        raise WeightsMismatch(f"{path}: no lora_A/lora_B tensors found", path=path)
    modules = []
    default_r = config.r or 8
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            missing = ({"lora_A", "lora_B"} - set(pair)).pop()
            raise WeightsMismatch(f"{path}: module {module!r} has no {missing}", path=path, module=module)
        if not module_matches(module, config.target_modules) and not config.raw.get("target_parameters"):
            raise WeightsMismatch(
                f"{path}: module {module!r} is not matched by target_modules {config.target_modules!r}",
                path=path,
                module=module,
            )
        a, b = pair["lora_A"], pair["lora_B"]
        if a.numel == 0 or b.numel == 0:
            # A LoRA factor of a zero-width layer adds nothing and fits no base: the second probe
            # pushed 100k of them in a 12 MB header.
            raise WeightsMismatch(
                f"{path}: module {module!r} has an empty factor (lora_A {list(a.shape)}, lora_B {list(b.shape)})",
                path=path,
                module=module,
            )
        rank = pattern_value(module, config.rank_pattern, default_r)
        embedding = a.name.find("lora_embedding_A") >= 0
        a_rank, b_rank = (
            (a.shape[0], b.shape[-1]) if embedding else (a.shape[0], b.shape[1] if len(b.shape) > 1 else -1)
        )
        if a_rank != rank or b_rank != rank:
            raise WeightsMismatch(
                f"{path}: module {module!r} has lora_A {list(a.shape)} and lora_B {list(b.shape)}, "
                f"expected rank {rank}",
                path=path,
                module=module,
                expected_rank=rank,
            )
        in_f = a.shape[1] if len(a.shape) > 1 else 0
        modules.append(LoraModule(module, rank, in_f, b.shape[0]))
    return modules
