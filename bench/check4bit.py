"""The 4-bit check, layer by layer (ours) next to the whole-model check (the anchor: both models
loaded whole, transformers' BitsAndBytesConfig + PeftModel), on the same base and adapter.

    python bench/check4bit.py [--layers 20] [--hidden 2048] [--probe 4]

The model is bench/export.py's: a random Llama-shaped base (bf16, ~2 GB at the defaults, 500 MB
shards) and a rank-16 LoRA on all seven linear projections. Each path runs in its own process (so
its peak RSS, VmHWM, is its own) with the page cache warm for both. Targets (issue 15): streamed
peak RSS at most 1.3 GB, wall time no worse than the whole-model path; the same verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.export import SHARD, TARGETS, run_child  # noqa: E402


def _child(base: Path, lora: Path, out: Path, streamed: bool, probe: int) -> str:
    return f"""
        import json, time
        from pathlib import Path
        from registry.tensors.qlora import check_4bit
        t = time.perf_counter()
        r = check_4bit(Path({str(base)!r}), Path({str(lora)!r}), probe={probe}, probe_length=32,
                       streamed={streamed})
        out = {{"wall_s": time.perf_counter() - t, "verdict": r["verdict"], "path": r["path"]}}
        Path({str(out)!r}).write_text(json.dumps(r))
        """


def _max_rel_diff(a: Any, b: Any) -> float:
    """The largest relative difference between the numbers of two reports of the same shape."""
    if isinstance(a, dict):
        return max((_max_rel_diff(a[k], b[k]) for k in a if k in b), default=0.0)
    if isinstance(a, list):
        return max((_max_rel_diff(x, y) for x, y in zip(a, b, strict=False)), default=0.0)
    if isinstance(a, float) and isinstance(b, float) and math.isfinite(a) and math.isfinite(b):
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--probe", type=int, default=4)
    args = ap.parse_args()

    from registry.tensors.synthetic import llama_config, llama_shapes, write_llama, write_lora

    with tempfile.TemporaryDirectory(prefix="bench-check4bit-", dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        cfg = llama_config(args.hidden, args.layers, 32000)
        base = write_llama(root / "base", cfg, shard_bytes=SHARD)
        lora = write_lora(root / "lora", llama_shapes(cfg), TARGETS, r=16)
        shards = sorted(base.glob("*.safetensors"))
        size = sum(p.stat().st_size for p in shards)
        print(
            f"model: {size / 1e9:.2f} GB bf16 in {len(shards)} shards, LoRA r=16 on {len(TARGETS)} "
            f"projections x {args.layers} layers; {args.probe} probes x 32 tokens, CPU"
        )
        for p in shards:  # warm the page cache for both alike
            with p.open("rb") as f:
                while f.read(64 << 20):
                    pass
        whole = run_child(_child(base, lora, root / "whole.json", False, args.probe))
        ours = run_child(_child(base, lora, root / "ours.json", True, args.probe))
        reports = [json.loads((root / f"{n}.json").read_text()) for n in ("whole", "ours")]
        print(f"\n{'':40} {'wall s':>8} {'peak RSS MiB':>13}  verdict")
        for name, r in (("whole model (anchor)", whole), ("ours: layer by layer", ours)):
            print(f"{name:40} {r['wall_s']:8.1f} {r['peak_rss_mib']:13.0f}  {r['verdict']}")
        print(
            f"\nours / whole: wall {ours['wall_s'] / whole['wall_s']:.2f}x (target <= 1), peak RSS "
            f"{ours['peak_rss_mib'] / whole['peak_rss_mib']:.2f}x; ours peak RSS "
            f"{ours['peak_rss_mib'] * 2**20 / 1e9:.2f} GB (target <= 1.3 GB); same verdict: "
            f"{whole['verdict'] == ours['verdict']}; largest relative difference of a figure: "
            f"{_max_rel_diff(reports[0], reports[1]):.2g}"
        )


if __name__ == "__main__":
    main()
