"""Activation memory within 25% of the bytes autograd actually saves, measured with
saved_tensors_hooks on tiny models in bf16 (the planner's default dtype), batch 2 x 64 tokens.

With gradient checkpointing, transformers' reentrant checkpoint keeps each block's input during the
forward pass and recomputes one block at a time in the backward pass (outside our hooks' view), so
the peak measured is: the bytes saved by the checkpointed forward pass, plus the largest block's
saved bytes, measured on the same model without checkpointing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from registry.planning import Layout
from registry.planning.activations import activation_bytes
from registry.planning.trainable import trainable
from tests.planning.models import CONFIGS, SavedBytes, build, forward_loss, layers_of, with_method

pytestmark = pytest.mark.models  # runs real models to measure their activations

BATCH, SEQ = 2, 64
TOLERANCE = 0.25
METHODS = ["full", "lora", "dora", "ia3", "prefix", "prompt"]


def measure(name: str, method: str, *, checkpointing: bool, **overrides: object) -> tuple[int, int]:
    """(bytes saved by the forward pass, the largest block's share of them)."""
    base = build(name, torch.bfloat16, **overrides)
    base.train()
    if checkpointing:
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()  # what PEFT's prepare step does for a frozen embedding
    model = with_method(base, name, method)
    meter = SavedBytes(model)
    per_block: list[int] = []
    handles = []
    for block in layers_of(model):
        start: list[int] = []
        handles.append(block.register_forward_pre_hook(lambda *_, s=start: s.append(meter.current)))
        handles.append(
            block.register_forward_hook(lambda *_, s=start: per_block.append(meter.current - s[-1]))
        )
    torch.manual_seed(1)
    ids = torch.randint(0, 1000, (BATCH, SEQ))
    with meter.hooks():
        forward_loss(model, name, ids)
    for h in handles:
        h.remove()
    return meter.current, max(per_block)


def planned(layout: Layout, method: str, checkpointing: bool, eager: bool = False) -> int:
    t = trainable(layout, method)
    return activation_bytes(
        layout,
        t,
        dtype_bytes=2,
        seq_len=SEQ,
        batch=BATCH,
        gradient_checkpointing=checkpointing,
        eager_attention=eager,
    ).total


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_activations_without_checkpointing(layouts: dict[str, Layout], name: str, method: str) -> None:
    actual, _ = measure(name, method, checkpointing=False)
    assert planned(layouts[name], method, False) == pytest.approx(actual, rel=TOLERANCE)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "prefix"])  # PEFT refuses prefix + GC
@pytest.mark.parametrize("name", list(CONFIGS))
def test_activations_with_checkpointing(layouts: dict[str, Layout], name: str, method: str) -> None:
    _, block = measure(name, method, checkpointing=False)
    kept, _ = measure(name, method, checkpointing=True)
    assert planned(layouts[name], method, True) == pytest.approx(kept + block, rel=TOLERANCE)


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_eager_attention_keeps_the_probabilities(layouts: dict[str, Layout], name: str) -> None:
    actual, _ = measure(name, "lora", checkpointing=False, attn_implementation="eager")
    assert planned(layouts[name], "lora", False, eager=True) == pytest.approx(actual, rel=TOLERANCE)
    assert planned(layouts[name], "lora", False, eager=True) > planned(layouts[name], "lora", False)


def test_qlora_on_a_real_nf4_base(layouts: dict[str, Layout], tmp_path: Path) -> None:
    """LoRA on every linear of an NF4 base (bitsandbytes on the CPU): its 4-bit matmul keeps only the
    packed weight for the backward pass, never its input, like a frozen 16-bit linear."""
    build("llama").save_pretrained(tmp_path / "base")
    quantized = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    base = AutoModelForCausalLM.from_pretrained(
        tmp_path / "base", dtype=torch.bfloat16, device_map="cpu", quantization_config=quantized
    )
    base.train()
    model = get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    meter = SavedBytes(model)
    with meter.hooks():
        forward_loss(model, "llama", torch.randint(0, 1000, (BATCH, SEQ)))
    t = trainable(layouts["llama"], "qlora", targets="all-linear")
    plan = activation_bytes(
        layouts["llama"], t, dtype_bytes=2, seq_len=SEQ, batch=BATCH, gradient_checkpointing=False
    )
    assert plan.total == pytest.approx(meter.current, rel=TOLERANCE)
