"""Trainable parameters of each method on a base, exact, from its module table.

Counted as PEFT 0.21 builds the adapters (each count is checked against
`PeftModel.get_nb_trainable_parameters()` in tests/planning):
- LoRA: A [r, in] and B [out, r] per targeted module, r*(in+out); DoRA adds a magnitude vector of
  `out` features. The same for an Embedding (in = vocabulary, out = dimension).
- IA3: one vector per targeted module, over the input features for a feed-forward module (it scales
  the layer's input) and over the output features otherwise.
- Prefix tuning (no projection): num_virtual_tokens * num_layers * 2 * token_dim, where token_dim is
  num_key_value_heads * head_dim when the config has key/value heads (PEFT #1901), else hidden.
- Prompt tuning: num_virtual_tokens * token_dim (one transformer submodule for a decoder or encoder).
- Full fine-tuning: every parameter (tied weights once).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.entities import ModuleInfo
from registry.errors import BadRequest
from registry.formats.targets import is_feedforward, module_matches
from registry.planning.layout import LINEAR_KINDS, Layout

METHODS = ("lora", "qlora", "dora", "ia3", "prefix", "prompt", "full")
ADAPTER_METHODS = ("lora", "qlora", "dora")

# PEFT's default target modules per model type (peft.utils.constants, 0.21), pinned by a test:
# TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING and the IA3 target / feed-forward mappings.
LORA_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
    "opt": ["q_proj", "v_proj"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
}
IA3_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mixtral": (["k_proj", "v_proj", "w2"], ["w2"]),
    "qwen2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen3": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
    "gpt_neox": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    "falcon": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    "opt": (["q_proj", "k_proj", "fc2"], ["fc2"]),
    "bert": (["key", "value", "output.dense"], ["output.dense"]),
    "roberta": (["key", "value", "output.dense"], ["output.dense"]),
}


@dataclass(frozen=True)
class TargetedModule:
    """One module an adapter touches; `feedforward` only for IA3."""

    module: ModuleInfo
    feedforward: bool = False


@dataclass(frozen=True)
class Trainable:
    """What a method trains: the size of each trainable tensor (the optimizer keeps state per tensor,
    and bitsandbytes' 8-bit optimizer decides 8-bit or 32-bit state by a tensor's size)."""

    method: str
    tensors: tuple[int, ...]
    targets: tuple[TargetedModule, ...] = ()
    target_spec: str | list[str] | None = None
    num_virtual_tokens: int = 0

    @property
    def params(self) -> int:
        return sum(self.tensors)


def default_targets(layout: Layout, method: str) -> str | list[str]:
    """PEFT's default for the model type; all-linear for QLoRA (Dettmers et al. 2023 put adapters on
    every linear layer) and for a model type PEFT has no default for."""
    if method == "ia3":
        return IA3_TARGETS.get(layout.model_type, ("all-linear", []))[0]
    if method == "qlora":
        return "all-linear"
    return LORA_TARGETS.get(layout.model_type, "all-linear")


def targeted(
    layout: Layout, spec: str | list[str], feedforward: list[str] | None = None
) -> list[TargetedModule]:
    """The base modules a PEFT `target_modules` spec selects. "all-linear" is PEFT's rule: every
    Linear/Conv1D except the output head; any other spec is matched by `formats.targets` (the rule
    the fit check uses). Raises BadRequest when nothing matches."""
    if isinstance(spec, str) and spec.lower() == "all-linear":
        chosen = [m for m in layout.linears if m.name != layout.head]
        # PEFT expands all-linear to the set of leaf names and matches those as suffixes.
        spec = sorted({m.name.rsplit(".", 1)[-1] for m in chosen})
    candidates = [m for m in layout.modules if m.kind in (*LINEAR_KINDS, "embedding")]
    hits = [
        TargetedModule(m, is_feedforward(m.name, feedforward) if feedforward is not None else False)
        for m in candidates
        if module_matches(m.name, spec)
    ]
    if not hits:
        raise BadRequest(f"--targets {spec!r} matches no linear or embedding module of this base")
    return hits


def trainable(
    layout: Layout,
    method: str,
    *,
    r: int = 8,
    targets: str | list[str] | None = None,
    num_virtual_tokens: int = 20,
) -> Trainable:
    """The tensors `method` trains on `layout`."""
    if method not in METHODS:
        raise BadRequest(f"unknown method {method!r}: one of {', '.join(METHODS)}")
    if method == "full":
        # Sizes per tensor are not all known (biases are not in the table): one tensor per module
        # weight, the biases as one more; only the 8-bit optimizer's small-tensor rule cares.
        weights = [
            m.in_features if m.kind == "norm" else m.in_features * m.out_features
            for m in layout.modules
            if not (m.name == layout.head and layout.tied_head)
        ]
        rest = layout.arch.param_count - sum(weights)
        return Trainable(method, tuple(weights + ([rest] if rest > 0 else [])))
    if method == "prefix":
        token_dim = layout.kv_heads * layout.head_dim if layout.arch.num_kv_heads else layout.hidden
        return Trainable(
            method,
            (num_virtual_tokens * layout.layers * 2 * token_dim,),
            num_virtual_tokens=num_virtual_tokens,
        )
    if method == "prompt":
        return Trainable(method, (num_virtual_tokens * layout.hidden,), num_virtual_tokens=num_virtual_tokens)
    spec = targets if targets is not None else default_targets(layout, method)
    if method == "ia3":
        ff = IA3_TARGETS.get(layout.model_type, ([], []))[1]
        hits = targeted(layout, spec, feedforward=ff)
        vectors = [t.module.in_features if t.feedforward else t.module.out_features for t in hits]
        return Trainable(method, tuple(vectors), tuple(hits), spec)
    if r < 1:
        raise BadRequest("--r must be at least 1")
    hits = targeted(layout, spec)
    sizes: list[int] = []
    for t in hits:
        sizes += [r * t.module.in_features, r * t.module.out_features]
        if method == "dora":
            sizes.append(t.module.out_features)
    return Trainable(method, tuple(sizes), tuple(hits), spec)
