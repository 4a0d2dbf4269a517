"""Does an adapter fit a base? Compare its tensors and config with the base's module table.

Pure functions over recorded facts: no weights, no torch. Every problem names the module and both
shapes, with a stable code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.entities import BaseArchitecture
from registry.errors import ERRORS_BY_CODE, FitRefused, RegistryError
from registry.formats.model_folder import ModuleShape
from registry.formats.peft_config import PeftConfigFacts
from registry.formats.safetensors_header import TensorInfo
from registry.formats.targets import is_feedforward, locate_module
from registry.formats.weights import PREFIX

_PARAM_RE = re.compile(
    r"^(?P<module>.+)\.(?P<param>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_E|lora_magnitude_vector|"
    r"hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|hada_t1|hada_t2|lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|"
    r"lokr_w2_b|lokr_t2|ia3_l)(?:\.weight)?$"
)
PROMPT_TYPES = {"PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING", "MULTITASK_PROMPT_TUNING"}


@dataclass(frozen=True)
class BaseView:
    """What the fit check needs to know about a base (all of it stored in the database)."""

    label: str
    arch: BaseArchitecture
    modules: dict[str, ModuleShape]


@dataclass(frozen=True)
class FitProblem:
    code: str
    message: str
    module: str | None = None


@dataclass(frozen=True)
class AdapterModule:
    """A base module an adapter touches and the in/out features it expects (None = not constrained)."""

    name: str
    in_features: int | None
    out_features: int | None
    rank: int | None


def find_module(base: BaseView, name: str) -> ModuleShape | None:
    """The base module an adapter module names (`targets.locate_module`)."""
    hit = locate_module(name, base.modules)
    return None if hit is None else base.modules[hit]


def adapter_modules(config: PeftConfigFacts, tensors: dict[str, TensorInfo]) -> list[AdapterModule]:
    """Per module: the in/out features its tensors imply, for every weight-based PEFT type."""
    params: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, info in tensors.items():
        m = _PARAM_RE.match(name)
        if m:
            params.setdefault(m["module"].removeprefix(PREFIX), {})[m["param"]] = info.shape
    ff = config.raw.get("feedforward_modules") if config.peft_type == "IA3" else None
    out = []
    for module, p in sorted(params.items()):
        in_f = out_f = rank = None
        if "lora_A" in p:
            in_f, rank = _dim(p["lora_A"], 1), _dim(p["lora_A"], 0)
        if "lora_B" in p:
            out_f = _dim(p["lora_B"], 0)
        if "lora_embedding_A" in p:
            in_f, rank = _dim(p["lora_embedding_A"], 1), _dim(p["lora_embedding_A"], 0)
        if "lora_embedding_B" in p:
            out_f = _dim(p["lora_embedding_B"], 0)
        if "hada_w1_a" in p and "hada_w1_b" in p:
            out_f, in_f, rank = _dim(p["hada_w1_a"], 0), _dim(p["hada_w1_b"], 1), _dim(p["hada_w1_a"], 1)
        lokr = _lokr_shape(p)
        if lokr is not None:
            out_f, in_f = lokr
        if "ia3_l" in p:
            shape = p["ia3_l"]
            if is_feedforward(module, ff):
                in_f = _dim(shape, -1)
            else:
                out_f = _dim(shape, 0)
        out.append(AdapterModule(module, in_f, out_f, rank))
    return out


def _dim(shape: tuple[int, ...], i: int) -> int | None:
    try:
        return shape[i]
    except IndexError:
        return None


def _lokr_shape(p: dict[str, tuple[int, ...]]) -> tuple[int, int] | None:
    def factor(full: str, a: str, b: str) -> tuple[int, int] | None:
        if full in p and len(p[full]) >= 2:
            return p[full][0], p[full][1]
        if a in p and b in p:
            return p[a][0], p[b][-1] if len(p[b]) == 2 else p[b][1]
        return None

    w1 = factor("lokr_w1", "lokr_w1_a", "lokr_w1_b")
    w2 = factor("lokr_w2", "lokr_w2_a", "lokr_w2_b")
    if w1 is None or w2 is None:
        return None
    return w1[0] * w2[0], w1[1] * w2[1]


def fit_refusal(
    problems: list[FitProblem], *, prefix: str = "", hint: str = "", **details: object
) -> RegistryError:
    """The error for a non-empty list of fit problems, as push and the serving SDK raise it: the
    first problem's code and message, every problem listed."""
    cls = ERRORS_BY_CODE.get(problems[0].code, FitRefused)
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return cls(f"{prefix}{problems[0].message}{more}{hint}", problems=listed(problems), **details)


def listed(problems: list[FitProblem]) -> list[dict[str, str | None]]:
    return [{"code": p.code, "module": p.module, "message": p.message} for p in problems]


def check_fit(config: PeftConfigFacts, tensors: dict[str, TensorInfo], base: BaseView) -> list[FitProblem]:
    """Every reason this adapter cannot work on `base`; empty when it fits."""
    if config.peft_type in PROMPT_TYPES:
        return _check_prompt(config, base)
    problems = []
    for mod in adapter_modules(config, tensors):
        target = find_module(base, mod.name)
        if target is None:
            problems.append(
                FitProblem(
                    "target_module_not_found",
                    f"module {mod.name} does not exist in base {base.label}",
                    mod.name,
                )
            )
            continue
        for what, got, want in (
            ("in", mod.in_features, target.in_features),
            ("out", mod.out_features, target.out_features),
        ):
            if got is None or got == want:
                continue
            code = (
                "vocab_mismatch"
                if target.kind == "embedding" and what == "in"
                else ("ia3_shape_mismatch" if config.peft_type == "IA3" else "shape_mismatch")
            )
            problems.append(
                FitProblem(
                    code,
                    f"module {mod.name}: the adapter expects {what}_features={got}, base {base.label} has "
                    f"{target.in_features} -> {target.out_features} ({target.kind})",
                    mod.name,
                )
            )
    problems.extend(_check_saved_modules(config, tensors, base))
    return problems


def _check_saved_modules(
    config: PeftConfigFacts, tensors: dict[str, TensorInfo], base: BaseView
) -> list[FitProblem]:
    """modules_to_save tensors are full copies of base modules: their shapes must equal the base's."""
    problems = []
    for name, info in tensors.items():
        if _PARAM_RE.match(name) or not name.endswith(".weight") or len(info.shape) != 2:
            continue
        module = (
            name.removeprefix(PREFIX)
            .removesuffix(".weight")
            .removesuffix(".base_layer")
            .replace(".modules_to_save.default", "")
        )
        target = find_module(base, module)
        if target is None:
            continue
        want = (
            (target.in_features, target.out_features)
            if target.kind in ("embedding", "conv1d")
            else (target.out_features, target.in_features)
        )
        if tuple(info.shape) != want:
            vocab = target.kind == "embedding" or module.endswith("lm_head")
            problems.append(
                FitProblem(
                    "vocab_mismatch" if vocab else "shape_mismatch",
                    f"saved module {module} has shape {list(info.shape)}, base {base.label} has {list(want)}"
                    + (f" (vocabulary {base.arch.vocab_size})" if vocab else ""),
                    module,
                )
            )
    return problems


def _check_prompt(config: PeftConfigFacts, base: BaseView) -> list[FitProblem]:
    """token_dim is the hidden size; for prefix tuning on a GQA model PEFT stores the key/value width
    (head_dim x KV heads) and the KV head count instead, so both forms are accepted."""
    raw = config.raw
    arch = base.arch
    hidden, heads, kv = arch.hidden_size, arch.num_heads, arch.num_kv_heads or arch.num_heads
    token_dims = {hidden}
    head_counts = {heads}
    if config.peft_type == "PREFIX_TUNING" and hidden and heads and kv:
        token_dims.add(hidden // heads * kv)
        head_counts.add(kv)
    checks = [("token_dim", raw.get("token_dim"), token_dims, "hidden size")]
    if config.peft_type == "PREFIX_TUNING":
        checks += [
            ("num_layers", raw.get("num_layers"), {arch.num_layers}, "layers"),
            ("num_attention_heads", raw.get("num_attention_heads"), head_counts, "attention heads"),
        ]
    return [
        FitProblem(
            "prompt_shape_mismatch",
            f"{config.peft_type} {field}={got} but base {base.label} has "
            f"{' or '.join(str(w) for w in sorted(x for x in want if x is not None))} {what}",
            None,
        )
        for field, got, want, what in checks
        if got is not None and None not in want and got not in want
    ]
