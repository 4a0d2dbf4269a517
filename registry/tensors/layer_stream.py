"""A causal LM run one decoder layer at a time, each layer built from its own tensors alone.

The model's skeleton is made on the meta device (no memory); a layer is materialized from tensors
memory-mapped out of the base's shards (`export.read_tensor`), in full precision or with its Linear
layers replaced by bitsandbytes 4-bit ones exactly as transformers' quantizer does it, used, and
dropped. The layers are transformers' own classes, fed the masks and rotary embeddings that the
model's own forward computes, so a layer-by-layer pass gives the whole-model pass's numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from registry.formats.model_folder import locate_tensors, weight_files
from registry.formats.safetensors_header import LocatedTensor
from registry.tensors.export import read_tensor

HEAD_ROWS = 4096


@dataclass(frozen=True)
class Family:
    """Where a model family keeps its parts (module paths as in its checkpoints)."""

    embed: str
    layers: str
    norm: str
    rotary: str | None = None
    positions: str | None = None
    """Learned position embeddings (GPT-2's wpe), added to the token embeddings."""


_LLAMA_LIKE = Family("model.embed_tokens", "model.layers", "model.norm", rotary="model.rotary_emb")
FAMILIES: dict[str, Family] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "gpt2": Family("transformer.wte", "transformer.h", "transformer.ln_f", positions="transformer.wpe"),
}


def _submodule(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    target = module.get_submodule(owner) if owner else module
    if leaf in target._parameters:
        target._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    else:
        target._buffers[leaf] = value


class _Holder(nn.Module):
    is_loaded_in_4bit = False


class LayeredModel:
    """The base at `base_dir`, ready to hand out its parts one at a time."""

    def __init__(self, base_dir: Path, device: str = "cpu") -> None:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(base_dir)
        self.family = FAMILIES[str(config.model_type)]
        with torch.device("meta"):
            # from_config resolves the attention implementation as from_pretrained does (sdpa).
            self.skeleton = AutoModelForCausalLM.from_config(config)
        self.config = self.skeleton.config
        self.device = torch.device(device)
        self.tensors: dict[str, LocatedTensor] = locate_tensors(weight_files(base_dir))
        self.checkpoint_dtype = self._checkpoint_dtype()
        self.num_layers = int(self.config.num_hidden_layers)

    @staticmethod
    def supports(model_type: str | None) -> bool:
        return model_type in FAMILIES

    def _checkpoint_dtype(self) -> torch.dtype:
        """What transformers' default dtype ("auto") loads the unquantized parts in."""
        declared = getattr(self.config, "dtype", None) or getattr(self.config, "torch_dtype", None)
        if isinstance(declared, torch.dtype):
            return declared
        if isinstance(declared, str) and isinstance(getattr(torch, declared, None), torch.dtype):
            return getattr(torch, declared)  # type: ignore[no-any-return]
        for t in self.tensors.values():
            if t.dtype in ("F32", "F16", "BF16", "F64"):
                return read_tensor(t).dtype
        return torch.float32

    def _key(self, name: str) -> str:
        if name in self.tensors:
            return name
        bare = name.split(".", 1)[1]  # checkpoints saved from the inner model lack its prefix
        if bare in self.tensors:
            return bare
        if name == "lm_head.weight":  # tied to the input embeddings
            return self._key(self.family.embed + ".weight")
        raise KeyError(f"the base has no tensor {name}")

    def mapped(self, name: str) -> torch.Tensor:
        """One tensor as mapped from its shard, on the CPU, in the checkpoint's dtype: slice it
        before moving it (a whole embedding table or head on a GPU is what streaming avoids)."""
        return read_tensor(self.tensors[self._key(name)])

    def tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One tensor, mapped from its shard, on the device, cast to `dtype` when given."""
        t = self.mapped(name)
        return t.to(device=self.device, dtype=dtype or t.dtype)

    def layer_prefix(self, index: int) -> str:
        return f"{self.family.layers}.{index}."

    def holder(self, index: int, layer: nn.Module, quantized: bool = False) -> nn.Module:
        """The layer under its full name (model.layers.3), so that PEFT's target matching and module
        names are the whole model's; `quantized` marks it as transformers marks a 4-bit model, which
        makes PEFT wrap Linear4bit in its bitsandbytes LoRA layer (it casts the update to the
        output's dtype before adding it: bf16 results differ otherwise)."""
        root = _Holder()
        root.is_loaded_in_4bit = quantized
        parent: nn.Module = root
        parts = self.family.layers.split(".")
        for part in parts[:-1]:
            child = nn.Module()
            parent.add_module(part, child)
            parent = child
        parent.add_module(parts[-1], nn.ModuleDict({str(index): layer}))
        return root

    def _materialize(self, module: nn.Module, prefix: str, dtype: torch.dtype) -> None:
        for name, _ in list(module.named_parameters()) + list(module.named_buffers()):
            _set_tensor(module, name, self.tensor(prefix + name, dtype))

    def layer(self, index: int, dtype: torch.dtype) -> nn.Module:
        """Decoder layer `index` in `dtype` (non-persistent buffers computed as at construction)."""
        skeleton = _submodule(self.skeleton, self.layer_prefix(index)[:-1])
        layer = copy.deepcopy(skeleton)
        self._materialize(layer, self.layer_prefix(index), dtype)
        self._check_materialized(layer, index)
        return layer.eval()

    def layer_4bit(self, index: int, quantization_config: Any) -> nn.Module:
        """Decoder layer `index` as transformers' bitsandbytes 4-bit quantizer loads it: every Linear
        (and Conv1D, transposed first) becomes a Linear4bit quantized from the checkpoint's values;
        the rest stays in the checkpoint's dtype."""
        import bitsandbytes as bnb
        from transformers.integrations.bitsandbytes import replace_with_bnb_linear

        skeleton = _submodule(self.skeleton, self.layer_prefix(index)[:-1])
        layer = replace_with_bnb_linear(
            copy.deepcopy(skeleton), modules_to_not_convert=[], quantization_config=quantization_config
        )
        prefix = self.layer_prefix(index)
        for name, module in layer.named_modules():
            if not isinstance(module, bnb.nn.Linear4bit):
                continue
            value = self.tensor(f"{prefix}{name}.weight", self.checkpoint_dtype)
            source = getattr(module, "source_cls", None)
            if source is not None and source.__name__ == "Conv1D":
                value = value.T  # Conv1D stores [in, out]; transformers transposes before quantizing
            # Quantized when moved to a device, from the checkpoint's values, as transformers does.
            param: Any = bnb.nn.Params4bit(value, requires_grad=False, **module.weight.__dict__)
            module.weight = param.to(value.device)
        for name, param in list(layer.named_parameters()) + list(layer.named_buffers()):
            if param.device.type == "meta":
                _set_tensor(layer, name, self.tensor(prefix + name, self.checkpoint_dtype))
        self._check_materialized(layer, index)
        return layer.eval()

    @staticmethod
    def _check_materialized(layer: nn.Module, index: int) -> None:
        for name, t in list(layer.named_parameters()) + list(layer.named_buffers()):
            if t.device.type == "meta":
                raise RuntimeError(f"layer {index}: {name} was not filled from the checkpoint")

    def embed(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Token embeddings (plus learned positions), gathering only the probed rows."""
        table = self.mapped(self.family.embed + ".weight")
        h = torch.nn.functional.embedding(ids.cpu(), table).to(device=self.device, dtype=dtype)
        if self.family.positions is not None:
            positions = self.mapped(self.family.positions + ".weight")[: ids.shape[1]]
            h = h + positions.to(device=self.device, dtype=dtype).unsqueeze(0)
        return h

    def position_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)

    def masks(self, h: torch.Tensor, position_ids: torch.Tensor) -> Callable[[int], Any]:
        """The attention mask of each layer, as the model's forward makes them."""
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        kwargs = {
            "config": self.config,
            "inputs_embeds": h,
            "attention_mask": None,
            "cache": None,
            "position_ids": position_ids,
        }
        full = create_causal_mask(**kwargs)
        layer_types = getattr(self.config, "layer_types", None)
        if self.config.model_type == "mistral" and getattr(self.config, "sliding_window", None) is not None:
            sliding = create_sliding_window_causal_mask(**kwargs)
            return lambda _: sliding
        if layer_types and "sliding_attention" in layer_types:
            sliding = create_sliding_window_causal_mask(**kwargs)
            return lambda i: sliding if layer_types[i] == "sliding_attention" else full
        return lambda _: full

    def rotary(self, h: torch.Tensor, position_ids: torch.Tensor) -> Any:
        if self.family.rotary is None:
            return None
        cls = type(_submodule(self.skeleton, self.family.rotary))
        return cls(config=self.config).to(self.device)(h, position_ids)

    def run_layer(
        self, layer: nn.Module, h: torch.Tensor, mask: Any, position_ids: torch.Tensor, rotary: Any
    ) -> torch.Tensor:
        if self.family.rotary is not None:
            out = layer(h, attention_mask=mask, position_embeddings=rotary, position_ids=position_ids)
        else:
            out = layer(h, None, mask, None, use_cache=None, position_ids=position_ids)
        return out[0] if isinstance(out, tuple) else out

    def head(self, h: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Final norm, then the LM head, in `dtype`; float32 next-token log-probabilities."""
        norm = copy.deepcopy(_submodule(self.skeleton, self.family.norm))
        for name, _ in list(norm.named_parameters()):
            _set_tensor(norm, name, self.tensor(f"{self.family.norm}.{name}", dtype))
        h = norm.eval()(h)
        weight = self.mapped("lm_head.weight")  # on the CPU map, in the checkpoint's dtype
        bias = self.mapped("lm_head.bias") if "lm_head.bias" in self.tensors else None
        # Cast HEAD_ROWS rows of the head at a time: a whole float32 copy of a 32000 x 2048 head
        # is 262 MB, a fifth of the 1.3 GB budget of the bench model.
        logits = torch.empty((*h.shape[:-1], weight.shape[0]), dtype=dtype, device=h.device)
        for r0 in range(0, weight.shape[0], HEAD_ROWS):
            rows = slice(r0, r0 + HEAD_ROWS)
            b = bias[rows].to(device=h.device, dtype=dtype) if bias is not None else None
            w = weight[rows].to(device=h.device, dtype=dtype)
            logits[..., rows] = torch.nn.functional.linear(h, w, b)
        return logits.float().log_softmax(-1)
