"""Tiny transformers models for the planner's tests, and a meter of what autograd saves.

Dropouts are 0: on the CPU, scaled_dot_product_attention with dropout falls back to the math path
(keeping the s*s probabilities and fp32 masks), which the GPU kernels the planner plans for do not.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import torch
from peft import IA3Config, LoraConfig, PeftModel, PrefixTuningConfig, PromptTuningConfig, get_peft_model
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PreTrainedModel

CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 1000,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
    },
    "mistral": {  # grouped-query attention: 4 heads, 2 key/value heads
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
    },
    "gpt2": {  # Conv1D weights ([in, out]), a tied head, biases
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_embd": 128,
        "n_layer": 2,
        "n_head": 4,
        "vocab_size": 1000,
        "n_positions": 128,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    },
    "bert": {  # an encoder without a head: AutoModel
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 512,
        "vocab_size": 1000,
        "max_position_embeddings": 128,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
}
FIXTURES = Path(__file__).parent / "fixtures"


def write_config(name: str, folder: Path) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(CONFIGS[name]))
    return path


def is_causal(name: str) -> bool:
    return CONFIGS[name]["architectures"][0].endswith(("ForCausalLM", "LMHeadModel"))


def build(name: str, dtype: torch.dtype = torch.float32, **overrides: Any) -> PreTrainedModel:
    config = AutoConfig.for_model(**{**CONFIGS[name], **overrides})
    torch.manual_seed(0)
    auto = AutoModelForCausalLM if is_causal(name) else AutoModel
    return auto.from_config(config).to(dtype)


def peft_config(name: str, method: str, targets: Any = None, r: int = 8) -> Any:
    task = "CAUSAL_LM" if is_causal(name) else "FEATURE_EXTRACTION"
    if method in ("lora", "dora"):
        return LoraConfig(r=r, target_modules=targets, use_dora=method == "dora", task_type=task)
    if method == "ia3":
        return IA3Config(target_modules=targets, task_type=task)
    if method == "prefix":
        return PrefixTuningConfig(num_virtual_tokens=20, task_type=task)
    assert method == "prompt"
    return PromptTuningConfig(num_virtual_tokens=20, task_type=task)


def with_method(
    model: PreTrainedModel, name: str, method: str, targets: Any = None
) -> PreTrainedModel | PeftModel:
    if method == "full":
        return model
    return get_peft_model(model, peft_config(name, method, targets))


class SavedBytes:
    """Bytes autograd holds for the backward pass, through saved_tensors_hooks: each saved tensor's
    whole storage (a view keeps its base alive), counted once however many ops save it, parameters
    and buffers left out (they are the weights, counted elsewhere)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.sizes: dict[int, int] = {}
        self.current = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.weights and ptr not in self.sizes:
            self.sizes[ptr] = storage.nbytes()
            self.current += storage.nbytes()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def forward_loss(model: torch.nn.Module, name: str, ids: torch.Tensor) -> torch.Tensor:
    if is_causal(name):
        return model(input_ids=ids, labels=ids).loss  # type: ignore[no-any-return]
    return model(input_ids=ids).last_hidden_state.float().pow(2).mean()  # type: ignore[no-any-return]


def layers_of(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks (the units transformers checkpoints)."""
    found = collections.OrderedDict[str, torch.nn.Module]()
    for module_name, module in model.named_modules():
        parts = module_name.split(".")
        if len(parts) >= 2 and parts[-1].isdigit() and parts[-2] in ("layers", "h", "layer"):
            found[module_name] = module
    return list(found.values())
