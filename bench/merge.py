"""SVD merge of three rank-16 LoRA adapters on a Llama-3-8B-shaped model, next to PEFT.

    python bench/merge.py [--layers 32] [--peft-layers 1]

Shapes: hidden 4096, intermediate 14336, 32 heads / 8 KV heads (k/v out 1024), all seven linear
projections per layer, random factors, weights 0.5 / 0.3 / 0.2. Ours merges every layer; PEFT's
add_weighted_adapter(combination_type="svd") runs on one layer of the same factors in the same run
(it forms each dense delta and runs a full SVD on it). Errors are relative Frobenius errors of each
module's merged delta against the exact weighted sum, computed densely here for the PEFT layer.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from registry.tensors.lora import LoraAdapter, LoraModuleFactors
from registry.tensors.merge import MergeOptions, merge_loras

HIDDEN, INTER, KV = 4096, 14336, 1024
RANK, WEIGHTS = 16, (0.5, 0.3, 0.2)
PROJ = {  # name: (in, out)
    "self_attn.q_proj": (HIDDEN, HIDDEN),
    "self_attn.k_proj": (HIDDEN, KV),
    "self_attn.v_proj": (HIDDEN, KV),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (HIDDEN, INTER),
    "mlp.up_proj": (HIDDEN, INTER),
    "mlp.down_proj": (INTER, HIDDEN),
}


def random_adapters(layers: int) -> list[LoraAdapter]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in WEIGHTS:
        mods = {}
        for layer in range(layers):
            for name, (k, d) in PROJ.items():
                a = torch.randn(RANK, k, generator=g) / k**0.5
                b = torch.randn(d, RANK, generator=g) / RANK**0.5
                mods[f"model.layers.{layer}.{name}"] = LoraModuleFactors(a, b, 1.0, (RANK, k), (d, RANK))
        out.append(LoraAdapter({}, mods, torch.float32))
    return out


def peft_one_layer(adapters: list[LoraAdapter]) -> tuple[float, dict[str, float], dict[str, torch.Tensor]]:
    """PEFT's svd merge on a one-layer Llama of the same shapes, loaded with layer 0's factors."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        num_attention_heads=32,
        num_key_value_heads=KV // 128,
        num_hidden_layers=1,
        vocab_size=128,
    )
    targets = [n.split(".")[-1] for n in PROJ]
    model = get_peft_model(
        LlamaForCausalLM(cfg), LoraConfig(r=RANK, lora_alpha=RANK, target_modules=targets), adapter_name="t0"
    )
    for i in range(1, len(adapters)):
        model.add_adapter(f"t{i}", LoraConfig(r=RANK, lora_alpha=RANK, target_modules=targets))
    layer = model.base_model.model.model.layers[0]
    with torch.no_grad():
        for i, ad in enumerate(adapters):
            for name in PROJ:
                mod = layer.get_submodule(name)
                f = ad.modules[f"model.layers.0.{name}"]
                mod.lora_A[f"t{i}"].weight.copy_(f.a)
                mod.lora_B[f"t{i}"].weight.copy_(f.b)
    t0 = time.perf_counter()
    model.add_weighted_adapter(
        [f"t{i}" for i in range(len(adapters))],
        list(WEIGHTS),
        "merged",
        combination_type="svd",
        svd_rank=RANK,
    )
    wall = time.perf_counter() - t0
    errors, exacts = {}, {}
    with torch.no_grad():
        for name in PROJ:
            mod = layer.get_submodule(name)
            # float64: a float32 norm over 58M entries is itself off by ~4e-4 on the MLP projections.
            exact = sum(w * mod.get_delta_weight(f"t{i}").double() for i, w in enumerate(WEIGHTS))
            errors[name] = float((mod.get_delta_weight("merged").double() - exact).norm() / exact.norm())
            exacts[name] = exact
    return wall, errors, exacts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--skip-peft", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    adapters = random_adapters(args.layers)
    t0 = time.perf_counter()
    result = merge_loras(
        [(ad, w) for ad, w in zip(adapters, WEIGHTS, strict=True)], MergeOptions(method="svd", rank=RANK)
    )
    ours = time.perf_counter() - t0
    per_layer = ours / args.layers
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"ours: svd merge of {args.layers} layers x 7 projections, 3 x rank-{RANK} -> rank {RANK}: "
        f"{ours:.2f} s ({per_layer * 1000:.1f} ms/layer), peak RSS {rss:.0f} MiB, "
        f"max error {result.max_error:.6f}"
    )
    if args.skip_peft:
        return
    peft_wall, peft_err, exacts = peft_one_layer(adapters)
    print(
        f"PEFT add_weighted_adapter(svd), 1 layer: {peft_wall:.1f} s/layer; ours is {peft_wall / per_layer:,.0f}x faster"
    )
    print("errors on layer 0, relative Frobenius against the exact weighted sum (dense, float64):")
    print(f"{'module':<20}{'ours reported':>15}{'ours measured':>15}{'PEFT measured':>15}{'ours - PEFT':>13}")
    for name in PROJ:
        f = result.modules[f"model.layers.0.{name}"]
        exact = exacts[name]
        measured = float((f.b.double() @ f.a.double() - exact).norm() / exact.norm())
        reported = result.report[f"model.layers.0.{name}"].rel_error
        print(
            f"{name:<20}{reported:>15.6f}{measured:>15.6f}{peft_err[name]:>15.6f}{measured - peft_err[name]:>13.2e}"
        )


if __name__ == "__main__":
    main()
