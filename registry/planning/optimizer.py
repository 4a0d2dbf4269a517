"""Optimizer state bytes for the trainable tensors (kept in fp32, as PEFT keeps adapter weights).

- torch AdamW: exp_avg and exp_avg_sq in the parameter's dtype plus a 0-d fp32 `step` per tensor:
  8*n + 4 bytes per fp32 tensor (measured on torch.optim.AdamW's state after one step).
- bitsandbytes AdamW8bit / PagedAdamW8bit (0.50): a tensor of at least `min_8bit_size` (4096)
  elements keeps both states in 8 bits (2 bytes per element) with one fp32 absmax per 256-element
  block per state; a smaller one keeps fp32 states (8 bytes per element). The 256-value quantization
  maps are shared by every tensor. Paged states live in unified memory that the driver can evict to
  the CPU under pressure; they are counted at full size here (the peak when nothing is evicted).
"""

from __future__ import annotations

from registry.errors import BadRequest

OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit")
MIN_8BIT_SIZE = 4096
BLOCK_8BIT = 256
QMAP_BYTES = 2 * 256 * 4


def optimizer_bytes(tensors: tuple[int, ...], optimizer: str, param_bytes: int = 4) -> int:
    if optimizer == "adamw":
        return sum(2 * param_bytes * n + 4 for n in tensors)
    if optimizer in ("adamw-8bit", "paged-adamw-8bit"):
        total = QMAP_BYTES if any(n >= MIN_8BIT_SIZE for n in tensors) else 0
        for n in tensors:
            if n >= MIN_8BIT_SIZE:
                total += 2 * n + 2 * 4 * -(-n // BLOCK_8BIT)
            else:
                total += 2 * 4 * n
        return total
    raise BadRequest(f"unknown optimizer {optimizer!r}: one of {', '.join(OPTIMIZERS)}")
