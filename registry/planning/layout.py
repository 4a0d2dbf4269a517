"""What the planner knows about a base: its architecture facts, config.json and module table, as the
registry records them (`adapters base add --config` is enough: no weights)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from registry.entities import BaseArchitecture, BaseLayout, ModuleInfo
from registry.errors import BadRequest

LINEAR_KINDS = ("linear", "conv1d")
# transformers' activation names -> tensors of the MLP's width that autograd saves for it, measured
# with saved_tensors_hooks on tiny models: torch's gelu/relu/silu keep one (their input or output);
# GPT-2's "gelu_new" is a Python tanh formula that keeps four (x, tanh, 1+tanh, 0.5x).
ACTIVATION_SAVES = {"gelu_new": 4, "gelu_fast": 4, "quick_gelu": 2}
# transformers' default activation where config.json may leave it out.
DEFAULT_ACTIVATION = {"gpt2": "gelu_new"}
# Output heads transformers' causal LMs name (GPT-NeoX calls its head embed_out).
OUTPUT_HEADS = ("lm_head", "embed_out")
# Fused query/key/value projections: their output stays whole while a view of it (Q) is kept.
FUSED_QKV = {"c_attn", "query_key_value", "qkv_proj", "Wqkv", "W_pack"}
# Model types whose norm is transformers' RMSNorm (it upcasts its input to fp32 and keeps that copy).
RMS_NORM_TYPES = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "olmo2",
    "cohere",
    "starcoder2",
    "deepseek_v3",
}


@dataclass(frozen=True)
class Layout:
    """A base as the planner sees it. `modules` are the weight-bearing modules (linear, conv1d,
    embedding, norm) with in/out features as PEFT sees them (Conv1D already transposed)."""

    arch: BaseArchitecture
    config: dict[str, Any]
    modules: tuple[ModuleInfo, ...]

    @classmethod
    def of(cls, doc: BaseLayout) -> Layout:
        """From what the registry returns (`client.get_base_layout`)."""
        return cls(BaseArchitecture.of(doc.base), doc.config, tuple(doc.modules))

    def _text(self, *keys: str) -> Any:
        nested = self.config.get("text_config")
        cfg = nested if isinstance(nested, dict) else self.config
        for key in keys:
            value = cfg.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
        return None

    def _need(self, value: int | None, what: str) -> int:
        if not value:
            raise BadRequest(f"the base's config.json does not say its {what}: cannot plan for it")
        return value

    @property
    def model_type(self) -> str:
        return self.arch.model_type or ""

    @property
    def hidden(self) -> int:
        return self._need(self.arch.hidden_size, "hidden size")

    @property
    def layers(self) -> int:
        return self._need(self.arch.num_layers, "number of layers")

    @property
    def heads(self) -> int:
        return self._need(self.arch.num_heads, "number of attention heads")

    @property
    def kv_heads(self) -> int:
        return self.arch.num_kv_heads or self.heads

    @property
    def head_dim(self) -> int:
        return int(self._text("head_dim") or self.hidden // self.heads)

    @property
    def vocab(self) -> int:
        return self.arch.vocab_size or 0

    @cached_property
    def intermediate(self) -> int:
        """The MLP's width: config.json's, else the widest linear's output (GPT-2 leaves n_inner
        null for 4h)."""
        width = self._text("intermediate_size", "n_inner", "ffn_dim", "d_ff")
        if width:
            return int(width)
        linear = [m.out_features for m in self.modules if m.kind in LINEAR_KINDS and m.name != self.head]
        return max(linear, default=4 * self.hidden)

    @cached_property
    def gated_mlp(self) -> bool:
        leaves = {m.name.rsplit(".", 1)[-1] for m in self.modules}
        return bool({"gate_proj", "w1", "gate_up_proj"} & leaves)

    @cached_property
    def fused_qkv(self) -> bool:
        return any(m.name.rsplit(".", 1)[-1] in FUSED_QKV for m in self.modules)

    @property
    def rms_norm(self) -> bool:
        return self.model_type in RMS_NORM_TYPES

    @property
    def activation_saves(self) -> int:
        act = (
            self.config.get("hidden_act")
            or self.config.get("activation_function")
            or DEFAULT_ACTIVATION.get(self.model_type, "gelu")
        )
        return ACTIVATION_SAVES.get(str(act), 1)

    @property
    def hidden_dropout(self) -> float:
        return float(self._text("resid_pdrop", "hidden_dropout_prob", "hidden_dropout", "dropout") or 0.0)

    @property
    def causal_lm(self) -> bool:
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in self.arch.architectures)

    @cached_property
    def head(self) -> str | None:
        """The output head's module name (PEFT's all-linear leaves it out), when the model has one."""
        names = {m.name for m in self.modules}
        return next((h for h in OUTPUT_HEADS if h in names), None)

    @cached_property
    def tied_head(self) -> bool:
        """Is the head tied to the input embedding? The registry adds a tied head to the module table
        (PEFT can target it) though it has no tensor of its own: then the table holds more weights
        than the base has parameters."""
        if self.head is None:
            return False
        return self.weight_numel(include_head=True) > self.arch.param_count

    def weight_numel(self, *, include_head: bool = False) -> int:
        """Elements of the modules' weights (biases are not in the table)."""
        total = 0
        for m in self.modules:
            if m.name == self.head and not include_head:
                continue
            total += m.in_features if m.kind == "norm" else m.in_features * m.out_features
        return total

    @cached_property
    def linears(self) -> tuple[ModuleInfo, ...]:
        """Linear and Conv1D modules with a tensor of their own (a tied head has none)."""
        return tuple(
            m for m in self.modules if m.kind in LINEAR_KINDS and not (m.name == self.head and self.tied_head)
        )
