"""Export (adapter merged into its base, streamed) next to `cp` and PEFT, and the 4-bit check time.

    python bench/export.py [--layers 20] [--hidden 2048] [--skip-peft] [--skip-4bit]

A random Llama-shaped model (bf16, ~2 GB at the defaults, 500 MB shards) and a rank-16 LoRA on
all seven linear projections. Each contender runs in its own process so that its peak RSS is its
own:
- anchor: `cp` of the same shards, then fsync (our writer fsyncs too);
- ours: registry.tensors.export.export_merged into a fresh folder;
- PEFT: AutoModelForCausalLM.from_pretrained + PeftModel.from_pretrained + merge_and_unload()
  + save_pretrained (safetensors, 500 MB shards).
Then registry.tensors.qlora.check_4bit on the same model and adapter (CPU here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARD = 500 * 10**6
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def run_child(code: str) -> dict[str, float]:
    """Run `code` in a fresh interpreter; it prints one JSON line. Adds wall time and peak RSS."""
    wrapped = textwrap.dedent(code) + textwrap.dedent(
        r"""
        import json, re
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
        hwm = re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read())
        out["peak_rss_mib"] = int(hwm.group(1)) / 1024
        print(json.dumps(out))
        """
    )
    os.sync()  # the previous contender's dirty pages are flushed before this one starts
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", wrapped], cwd=ROOT, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    out.setdefault("wall_s", wall)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--skip-peft", action="store_true")
    ap.add_argument("--skip-4bit", action="store_true")
    ap.add_argument("--probe", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from registry.tensors.synthetic import llama_config, llama_shapes, write_llama, write_lora

    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        cfg = llama_config(args.hidden, args.layers, 32000)
        base = write_llama(root / "base", cfg, shard_bytes=SHARD)
        write_lora(root / "lora", llama_shapes(cfg), TARGETS, r=16)
        shards = sorted(base.glob("*.safetensors"))
        size = sum(p.stat().st_size for p in shards)
        print(
            f"model: {size / 1e9:.2f} GB in {len(shards)} shards, LoRA r=16 on {len(TARGETS)} projections x {args.layers} layers"
        )
        for p in shards:  # warm the page cache for everyone alike
            with p.open("rb") as f:
                while f.read(64 << 20):
                    pass

        cp_code = f"""
            import os, shutil, time
            src, dst = {str(base)!r}, {str(root / "cp")!r} + str(time.time())
            os.makedirs(dst)
            t = time.perf_counter()
            for name in sorted(os.listdir(src)):
                if name.endswith(".safetensors"):
                    shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
                    fd = os.open(os.path.join(dst, name), os.O_RDONLY); os.fsync(fd); os.close(fd)
            out = {{"wall_s": time.perf_counter() - t}}
            """
        ours_code = f"""
            import json, time
            from pathlib import Path
            from registry.formats.model_folder import weight_files
            from registry.tensors.export import export_merged
            base = Path({str(base)!r})
            t = time.perf_counter()
            export_merged(weight_files(base), Path({str(root / "lora")!r}), Path({str(root / "ours")!r} + str(time.time())),
                          config=json.loads((base / "config.json").read_text()), max_shard_size={SHARD})
            out = {{"wall_s": time.perf_counter() - t}}
            """
        # Alternate the two, keep the median: this VM's disk throughput drifts between runs.
        cps, ourss = [], []
        for _ in range(args.repeat):
            cps.append(run_child(cp_code))
            ourss.append(run_child(ours_code))
            for leftover in root.glob("cp*"):
                shutil.rmtree(leftover)
            for leftover in root.glob("ours*"):
                shutil.rmtree(leftover)
        cp = sorted(cps, key=lambda r: r["wall_s"])[len(cps) // 2]
        ours = sorted(ourss, key=lambda r: r["wall_s"])[len(ourss) // 2]
        print("cp + fsync runs: " + ", ".join(f"{r['wall_s']:.2f}" for r in cps) + " s")
        print("ours runs:       " + ", ".join(f"{r['wall_s']:.2f}" for r in ourss) + " s")
        rows = [("cp + fsync (anchor)", cp), ("ours: export", ours)]
        if not args.skip_peft:
            peft = run_child(
                f"""
                import time, torch
                from transformers import AutoModelForCausalLM
                from peft import PeftModel
                t = time.perf_counter()
                model = AutoModelForCausalLM.from_pretrained({str(base)!r}, dtype=torch.bfloat16)
                model = PeftModel.from_pretrained(model, {str(root / "lora")!r}).merge_and_unload()
                model.save_pretrained({str(root / "peft")!r}, max_shard_size="500MB")
                out = {{"wall_s": time.perf_counter() - t}}
                """
            )
            rows.append(("PEFT merge_and_unload + save_pretrained", peft))
        print(f"\n{'':44} {'wall s':>8} {'vs cp':>7} {'peak RSS MiB':>13}")
        for name, r in rows:
            print(
                f"{name:44} {r['wall_s']:8.2f} {r['wall_s'] / cp['wall_s']:6.2f}x {r['peak_rss_mib']:13.0f}"
            )
        if not args.skip_peft:
            ratio = ours["peak_rss_mib"] / rows[-1][1]["peak_rss_mib"]
            print(
                f"\nours / PEFT peak RSS: {ratio:.2f} (target <= 0.25); ours / cp wall: "
                f"{ours['wall_s'] / cp['wall_s']:.2f}x (target <= 2)"
            )
        if not args.skip_4bit:
            q = run_child(
                f"""
                import time
                from pathlib import Path
                from registry.tensors.qlora import check_4bit
                t = time.perf_counter()
                r = check_4bit(Path({str(base)!r}), Path({str(root / "lora")!r}), probe={args.probe}, probe_length=32)
                out = {{"wall_s": time.perf_counter() - t, "verdict": r["verdict"]}}
                """
            )
            print(
                f"\n4-bit check ({args.probe} probes x 32 tokens, CPU): {q['wall_s']:.1f} s, peak RSS "
                f"{q['peak_rss_mib']:.0f} MiB, verdict {q['verdict']}"
            )


if __name__ == "__main__":
    main()
