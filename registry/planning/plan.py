"""One plan: trainable parameters and memory by part for one method on one base."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from registry import dtypes
from registry.planning.activations import activation_bytes
from registry.planning.layout import Layout
from registry.planning.optimizer import optimizer_bytes
from registry.planning.trainable import METHODS as METHOD_NAMES
from registry.planning.trainable import trainable

__all__ = ["METHOD_NAMES", "Adjustment", "MemoryParts", "Plan", "PlanOptions", "make_plan"]
from registry.planning.weights import base_weight_bytes, dtype_bytes

Method = Literal["lora", "qlora", "dora", "ia3", "prefix", "prompt", "full"]
Optimizer = Literal["adamw", "adamw-8bit", "paged-adamw-8bit"]
TRAINABLE_BYTES = 4
"""Trainable weights, their gradients and Adam's states are fp32: PEFT upcasts adapter weights to
fp32 (`autocast_adapter_dtype`), and full fine-tuning keeps fp32 master weights (mixed precision,
Rajbhandari et al. 2020 "ZeRO": 16 bytes per parameter with Adam)."""


class PlanOptions(BaseModel):
    method: Method = "lora"
    r: Annotated[int, Field(ge=1, le=65536)] = 8
    targets: str | list[str] | None = None
    """PEFT's target_modules; None: PEFT's default for the model type (all-linear for QLoRA)."""
    seq_len: Annotated[int, Field(ge=1, le=10_000_000)] = 512
    batch: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    gradient_checkpointing: bool = False
    optimizer: Optimizer = "adamw"
    gpu_memory: Annotated[int, Field(gt=0)] | None = None
    dtype: Annotated[dtypes.Short, BeforeValidator(dtypes.lenient("short"))] = "bf16"
    """The base's dtype (its compute dtype under QLoRA) and the activations'."""
    double_quant: bool = True
    """QLoRA: quantize the quantization constants too (Dettmers et al. 2023)."""
    num_virtual_tokens: Annotated[int, Field(ge=1, le=100_000)] = 20
    attention: Literal["sdpa", "eager"] = "sdpa"
    """sdpa (transformers' default, flash/memory-efficient kernels) keeps no s*s matrices; eager does."""


class MemoryParts(BaseModel):
    base_weights: int
    """Frozen weights (0 for full fine-tuning, whose weights all train)."""
    trainable_weights: int
    gradients: int
    optimizer_states: int
    activations: int
    total: int


class WeightDetail(BaseModel):
    format: str
    """bf16 | fp16 | fp32 | nf4 | nf4+dq"""
    quantized_params: int = 0
    packed: int = 0
    constants: int = 0
    high_precision: int = 0


class ActivationDetail(BaseModel):
    per_layer: int
    outside: int
    checkpoints: int
    formula: str


class Adjustment(BaseModel):
    """A configuration that fits where the one asked for does not (registry.planning.search)."""

    method: Method
    changes: list[str]
    """What changed, in words: "gradient checkpointing on", "batch 8 -> 2 (accumulate 4 steps ...)"."""
    flags: list[str]
    """The `adapters plan` flags that plan it (and name the settings to train with)."""
    cost: int
    total: int
    headroom: int


class Plan(BaseModel):
    method: Method
    options: PlanOptions
    targets: str | list[str] | None
    """The target spec used (the default filled in)."""
    targeted_modules: int
    trainable_params: int
    total_params: int
    trainable_percent: float
    memory: MemoryParts
    weights: WeightDetail
    activations: ActivationDetail
    fits: bool | None
    """Against options.gpu_memory; None when not given."""
    headroom: int | None
    notes: list[str] = Field(default_factory=list)
    adjusted: Adjustment | None = None
    """When it does not fit: the cheapest change of settings under which it does (None: none)."""


def make_plan(layout: Layout, options: PlanOptions) -> Plan:
    """The plan of `options.method` on `layout`. Raises BadRequest for a target spec that matches
    nothing or a base whose config lacks the sizes."""
    o = options
    notes: list[str] = []
    method = o.method
    t = trainable(
        layout,
        method,
        r=o.r,
        targets=o.targets,
        num_virtual_tokens=o.num_virtual_tokens,
    )
    p = dtype_bytes(o.dtype)
    nf4 = method == "qlora"
    if method == "full":
        weights = base_weight_bytes(layout, "fp32")
        base_bytes, trainable_bytes = 0, weights.total
        fmt = "fp32"
    else:
        weights = base_weight_bytes(layout, o.dtype, nf4=nf4, double_quant=o.double_quant)
        base_bytes, trainable_bytes = weights.total, TRAINABLE_BYTES * t.params
        fmt = ("nf4+dq" if o.double_quant else "nf4") if nf4 else o.dtype
    gc = o.gradient_checkpointing
    if gc and method == "prefix":
        notes.append("PEFT refuses prefix tuning with gradient checkpointing: planned without it")
        gc = False
    act = activation_bytes(
        layout,
        t,
        dtype_bytes=p,
        seq_len=o.seq_len,
        batch=o.batch,
        gradient_checkpointing=gc,
        r=o.r,
        eager_attention=o.attention == "eager",
    )
    grads = TRAINABLE_BYTES * t.params
    states = optimizer_bytes(t.tensors, o.optimizer, TRAINABLE_BYTES)
    total = base_bytes + trainable_bytes + grads + states + act.total
    if o.optimizer == "paged-adamw-8bit":
        notes.append("paged optimizer states can be evicted to CPU memory under pressure; counted in full")
    if layout.hidden_dropout > 0:
        notes.append("dropout masks counted at 1 byte per element (the GPU's native_dropout)")
    fits = None if o.gpu_memory is None else total <= o.gpu_memory
    all_params = layout.arch.param_count + (0 if method == "full" else t.params)
    return Plan(
        method=method,
        options=o,
        targets=t.target_spec,
        targeted_modules=len(t.targets),
        trainable_params=t.params,
        total_params=all_params,
        trainable_percent=round(100 * t.params / max(1, all_params), 4),
        memory=MemoryParts(
            base_weights=base_bytes,
            trainable_weights=trainable_bytes,
            gradients=grads,
            optimizer_states=states,
            activations=act.total,
            total=total,
        ),
        weights=WeightDetail(
            format=fmt,
            quantized_params=weights.quantized_params,
            packed=weights.packed,
            constants=weights.constants,
            high_precision=weights.high_precision,
        ),
        activations=ActivationDetail(
            per_layer=act.per_layer,
            outside=act.outside,
            checkpoints=act.checkpoints,
            formula="checkpoints + outside + one layer" if gc else "layers + outside",
        ),
        fits=fits,
        headroom=None if o.gpu_memory is None else o.gpu_memory - total,
        notes=notes,
    )
