"""Print the planner's figures next to the published ones and next to what the tiny models really
hold: `python -m tests.planning.report` (about 3 minutes on 2 CPU cores; the README quotes it)."""

from __future__ import annotations

import json
import math
import warnings

from registry.entities import ModuleInfo
from registry.formats.model_folder import arch_facts, module_table, with_tied_head
from registry.planning import Layout, PlanOptions, make_plan
from registry.planning.units import human
from registry.tensors.meta_shapes import meta_shapes
from tests.planning.models import CONFIGS, FIXTURES


def layout_of(cfg: dict[str, object]) -> Layout:
    """What `adapters base add --config` records, without a database."""
    shapes = meta_shapes(cfg)
    arch = arch_facts(cfg)
    modules = with_tied_head(module_table(shapes, arch.model_type), cfg)
    arch = arch.model_copy(update={"param_count": sum(math.prod(s) for _, s in shapes.values())})
    return Layout(arch, cfg, tuple(ModuleInfo(**vars(m)) for m in modules))


def published() -> None:
    big = {
        n: layout_of(json.loads((FIXTURES / f"{n}.json").read_text())) for n in ("llama-2-70b", "llama-65b")
    }
    full = PlanOptions(method="full", dtype="fp32", seq_len=4096, batch=1)
    print("Llama-2-70B full fine-tune, fp32, AdamW, seq 4096, batch 1 (recipe: 280/280/560 GB, ~1 TB)")
    for label, opts in (("sdpa", full), ("eager", full.model_copy(update={"attention": "eager"}))):
        m = make_plan(big["llama-2-70b"], opts).memory
        print(
            f"  {label:5s} weights {human(m.trainable_weights)}  gradients {human(m.gradients)}  "
            f"adam {human(m.optimizer_states)}  activations {human(m.activations)}  total {human(m.total)}"
        )
    print("LLaMA-65B QLoRA (NF4 + double quant, r=64 on all linear layers, bf16 compute, 48 GB GPU)")
    for opt in ("adamw", "paged-adamw-8bit"):
        for seq, batch in ((512, 1), (2048, 1), (512, 16)):
            o = PlanOptions(
                method="qlora",
                r=64,
                seq_len=seq,
                batch=batch,
                gradient_checkpointing=True,
                optimizer=opt,
                gpu_memory=48 * 10**9,
            )
            p = make_plan(big["llama-65b"], o)
            m = p.memory
            print(
                f"  {opt:16s} seq {seq:5d} batch {batch:2d}: base {human(m.base_weights)} "
                f"(constants {human(p.weights.constants)}), lora {p.trainable_params:,} params "
                f"{human(m.trainable_weights + m.gradients + m.optimizer_states)} with grads+states, "
                f"activations {human(m.activations)}, total {human(m.total)}: {'fits' if p.fits else 'does not fit'}"
            )


def tiny() -> None:
    from tests.planning.test_activations import measure, planned

    print("Activations, planned / measured (bf16, batch 2 x 64 tokens)")
    for name in CONFIGS:
        layout = layout_of(CONFIGS[name])
        cells = []
        for method in ("full", "lora", "dora", "ia3", "prefix", "prompt"):
            actual, block = measure(name, method, checkpointing=False)
            cell = f"{method} {planned(layout, method, False) / actual:.2f}"
            if method != "prefix":
                kept, _ = measure(name, method, checkpointing=True)
                cell += f" / gc {planned(layout, method, True) / (kept + block):.2f}"
            cells.append(cell)
        print(f"  {name:8s} " + ", ".join(cells))


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    published()
    tiny()
