"""Memory by part against the real thing: the loaded base's bytes (bf16, NF4 with and without double
quantization, through bitsandbytes on the CPU) within 1%, and the optimizer's state after one step
(torch AdamW exactly; bitsandbytes AdamW8bit, which runs on the CPU, exactly)."""

from __future__ import annotations

from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, BitsAndBytesConfig

from registry.planning import Layout, PlanOptions, make_plan
from registry.planning.optimizer import optimizer_bytes
from registry.planning.trainable import trainable
from registry.planning.weights import base_weight_bytes
from tests.planning.models import CONFIGS, build, forward_loss, is_causal, with_method

pytestmark = pytest.mark.models  # loads real models and steps real optimizers


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    out = {}
    for name in CONFIGS:
        build(name).save_pretrained(root / name)
        out[name] = root / name
    return out


def loaded_bytes(model: torch.nn.Module) -> int:
    """Parameters, buffers and bitsandbytes' quantization state, each storage once."""
    storages: dict[int, int] = {}
    tensors = [*model.parameters(), *model.buffers()]
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:
            tensors += [state.absmax, state.code]
            if state.nested:
                tensors += [state.offset, state.state2.absmax, state.state2.code]
    for t in tensors:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("fmt", ["bf16", "nf4", "nf4+dq"])
def test_base_weight_bytes_match_the_loaded_model(
    layouts: dict[str, Layout], saved: dict[str, Path], name: str, fmt: str
) -> None:
    auto = AutoModelForCausalLM if is_causal(name) else AutoModel
    kwargs: dict[str, object] = {"dtype": torch.bfloat16}
    if fmt != "bf16":
        kwargs["device_map"] = "cpu"
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=fmt == "nf4+dq",
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = auto.from_pretrained(saved[name], **kwargs)
    planned = base_weight_bytes(layouts[name], "bf16", nf4=fmt != "bf16", double_quant=fmt == "nf4+dq")
    actual = loaded_bytes(model)
    assert planned.total == pytest.approx(actual, rel=0.01)
    if fmt != "bf16":
        packed = [m.weight for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert planned.packed == sum(w.untyped_storage().nbytes() for w in packed)
        assert planned.quantized_params == sum(2 * w.numel() for w in packed)  # two weights a byte
        # transformers' own footprint counts parameters and buffers: not the quantization constants.
        assert model.get_memory_footprint() == actual - planned.constants  # type: ignore[operator]


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("llama", "lora"),
        ("llama", "dora"),
        ("mistral", "ia3"),
        ("gpt2", "lora"),
        ("bert", "prefix"),
        ("llama", "full"),
    ],
)
@pytest.mark.parametrize("optimizer", ["adamw", "adamw-8bit", "paged-adamw-8bit"])
def test_optimizer_state_bytes_match_one_real_step(
    layouts: dict[str, Layout], name: str, method: str, optimizer: str
) -> None:
    model = with_method(build(name), name, method)
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params)
    elif optimizer == "adamw-8bit":
        opt = bnb.optim.AdamW8bit(params)
    else:
        opt = bnb.optim.PagedAdamW8bit(params)
    forward_loss(model, name, torch.randint(0, 1000, (1, 16))).backward()
    opt.step()
    storages: dict[int, int] = {}
    for state in opt.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                storages[value.untyped_storage().data_ptr()] = value.untyped_storage().nbytes()
    t = trainable(layouts[name], method)
    assert optimizer_bytes(t.tensors, optimizer) == sum(storages.values())


def test_plan_parts_add_up(layouts: dict[str, Layout]) -> None:
    plan = make_plan(layouts["llama"], PlanOptions(method="qlora", gpu_memory=10**9))
    m = plan.memory
    assert m.total == m.base_weights + m.trainable_weights + m.gradients + m.optimizer_states + m.activations
    assert plan.fits is True and plan.headroom == 10**9 - m.total
    assert plan.weights.format == "nf4+dq" and plan.weights.constants > 0
    assert m.gradients == m.trainable_weights == 4 * plan.trainable_params
