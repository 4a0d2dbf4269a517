"""Bytes of the base's weights as loaded: 16/32-bit, or NF4 the way bitsandbytes stores it.

NF4 (bitsandbytes 0.50 through transformers' `BitsAndBytesConfig(load_in_4bit=True)`), per quantized
Linear/Conv1D of n weights, as measured on the loaded model's parameters and `quant_state` tensors:
- the weights packed two to a byte: ceil(n/2);
- one absmax per 64-weight block in fp32 (4*ceil(n/64)) and the 16-value NF4 code in fp32 (64 B);
- with double quantization the absmax are themselves 8-bit (ceil(n/64) bytes) with one fp32 absmax
  per 256 of them, an fp32 offset, and the 256-value fp32 dynamic code (1 KiB), per layer.
Everything else stays in the compute dtype: embeddings, the output head (transformers'
`get_keys_to_not_convert`), norms and biases.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.errors import BadRequest
from registry.planning.layout import Layout

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
NF4_BLOCK = 64
DQ_BLOCK = 256
NF4_CODE_BYTES = 16 * 4
DYNAMIC_CODE_BYTES = 256 * 4


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise BadRequest(f"unknown dtype {dtype!r}: one of {', '.join(DTYPE_BYTES)}") from None


@dataclass(frozen=True)
class WeightBytes:
    total: int
    quantized_params: int = 0
    """Weights stored in NF4 (0 unless 4-bit)."""
    packed: int = 0
    constants: int = 0
    """Quantization constants (absmax, codes, offsets)."""
    high_precision: int = 0
    """Bytes of what stays in the compute dtype."""


def _blocks(n: int, size: int) -> int:
    return -(-n // size)


def nf4_constants(n: int, double_quant: bool) -> int:
    """Bytes of one quantized layer's constants (n weights)."""
    blocks = _blocks(n, NF4_BLOCK)
    if not double_quant:
        return 4 * blocks + NF4_CODE_BYTES
    return blocks + 4 * _blocks(blocks, DQ_BLOCK) + 4 + NF4_CODE_BYTES + DYNAMIC_CODE_BYTES


def base_weight_bytes(
    layout: Layout, dtype: str, *, nf4: bool = False, double_quant: bool = True
) -> WeightBytes:
    """The loaded base's weights (param_count from the registry, tied weights once)."""
    p = dtype_bytes(dtype)
    total_params = layout.arch.param_count
    if not nf4:
        return WeightBytes(total=total_params * p, high_precision=total_params * p)
    quantized = [m.in_features * m.out_features for m in layout.linears if m.name != layout.head]
    n_q = sum(quantized)
    packed = sum(-(-n // 2) for n in quantized)
    constants = sum(nf4_constants(n, double_quant) for n in quantized)
    high = (total_params - n_q) * p
    return WeightBytes(
        total=packed + constants + high,
        quantized_params=n_q,
        packed=packed,
        constants=constants,
        high_precision=high,
    )
