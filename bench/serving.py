"""AdapterServer: one mixed batch of 8 requests over 4 adapters, next to the recipe's way (one adapter
applied per call, in turn: `set_adapter` + a forward per request) on the same PeftModel in the same
run; and adapter load latency, cold (from the registry over HTTP, empty cache) and warm.

    python bench/serving.py [--hidden 512] [--layers 4] [--seq 64] [--new-tokens 16] [--repeats 5]

The registry is `adapters serve` (SQLite, file store) in its own process; the client is HTTP with
an empty cache. The model is a random-init Llama (hidden 512, 4 layers, vocab 8000: 21M parameters),
the adapters rank-16 LoRA on q/k/v/o with random non-zero B (`init_lora_weights=False`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import start_serve  # noqa: E402

from registry.access.principal import OPERATOR

BASE = "bench/llama-512"
N_ADAPTERS = 4
BATCH = 8


def build(root: Path, hidden: int, layers: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    def model() -> Any:
        torch.manual_seed(0)
        cfg = LlamaConfig(
            vocab_size=8000,
            hidden_size=hidden,
            intermediate_size=hidden * 8 // 3,
            num_hidden_layers=layers,
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=512,
        )
        return LlamaForCausalLM(cfg).eval()

    model().save_pretrained(root / "base")
    for i in range(N_ADAPTERS):
        m = model()
        torch.manual_seed(100 + i)
        cfg = LoraConfig(
            r=16,
            lora_alpha=32,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        get_peft_model(m, cfg).save_pretrained(str(root / f"adapter{i}"))


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = ap.parse_args()

    import torch

    from registry.client.bases import add_base_folder
    from registry.client.http import HttpClient
    from registry.client.transfer import push_folder
    from registry.config import Settings
    from registry.services import accounts
    from registry.services.context import Registry
    from registry.serving import AdapterServer

    torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    build(home, args.hidden, args.layers)
    env = {**os.environ, "ADAPTERS_HOME": str(home / "registry")}
    for k in ("ADAPTERS_URL", "ADAPTERS_DATABASE_URL", "ADAPTERS_BLOB_URL"):
        env.pop(k, None)
    reg = Registry.from_settings(Settings(home=home / "registry"), migrate=True)
    accounts.add_user(reg, "bench", admin=True, principal=OPERATOR)
    token, _ = accounts.create_token(reg, "bench", name="serving", principal=OPERATOR)
    reg.close()
    server, url = start_serve(env)
    try:
        pusher = HttpClient(url, user="bench", cache_dir=home / "pusher-cache", token=token)
        add_base_folder(pusher, home / "base", [BASE], upload=True)
        refs = [f"bench/adapter{i}" for i in range(N_ADAPTERS)]
        for i, ref in enumerate(refs):
            push_folder(pusher, home / f"adapter{i}", ref, base=BASE)
        pusher.close()

        client = HttpClient(url, user="bench", cache_dir=home / "client-cache", token=token)
        srv = AdapterServer(BASE, client=client, max_adapters=N_ADAPTERS, work_dir=home / "work")
        cold = [timed(lambda r=ref: srv.load(r)) for ref in refs]  # type: ignore[misc]
        hit = [timed(lambda r=ref: srv.load(r)) for ref in refs]  # type: ignore[misc]
        # Warm: a second server on the same client: the blobs are in its cache, the adapters not loaded.
        srv2 = AdapterServer(BASE, client=client, max_adapters=N_ADAPTERS, work_dir=home / "work")
        warm = [timed(lambda r=ref: srv2.load(r)) for ref in refs]  # type: ignore[misc]
        srv2.close()

        rows = [refs[i % N_ADAPTERS] for i in range(BATCH)]
        torch.manual_seed(0)
        ids = torch.randint(0, 8000, (BATCH, args.seq))
        names = [srv.load(r) for r in rows]
        peft = srv._model.peft  # the same PeftModel, for the recipe's way

        def ours_forward() -> Any:
            return srv.forward(ids, adapters=rows).logits

        def recipe_forward() -> list[Any]:
            out = []
            with torch.inference_mode():
                for i, name in enumerate(names):
                    peft.set_adapter(name)
                    out.append(peft(input_ids=ids[i : i + 1]).logits)
            return out

        gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
        prompts = ids[:, :16].tolist()

        def ours_generate() -> Any:
            return srv.generate(prompts, adapters=rows, **gen)

        def recipe_generate() -> list[Any]:
            out = []
            with torch.inference_mode():
                for i, name in enumerate(names):
                    peft.set_adapter(name)
                    row = ids[i : i + 1, :16]
                    out.append(peft.generate(input_ids=row, attention_mask=torch.ones_like(row), **gen))
            return out

        # The two ways agree before they are timed.
        mixed, alone = ours_forward(), recipe_forward()
        err = max(float((mixed[i] - alone[i][0]).abs().max()) for i in range(BATCH))
        ways: list[tuple[str, Callable[[], Any]]] = [
            ("forward ours", ours_forward),
            ("forward recipe", recipe_forward),
            ("generate ours", ours_generate),
            ("generate recipe", recipe_generate),
        ]
        for _, fn in ways:
            fn()  # warm-up
        results: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            for label, fn in ways:
                results.setdefault(label, []).append(timed(fn))
        srv.close()
        client.close()
    finally:
        server.terminate()
        server.wait(10)

    ms = statistics.median
    print(
        f"model: Llama hidden {args.hidden}, {args.layers} layers; {N_ADAPTERS} LoRA r=16 on q/k/v/o; "
        f"{args.threads} torch thread(s); batch of {BATCH} requests, 2 per adapter"
    )
    print(f"mixed batch vs one adapter per call: largest logit difference {err:.2e}")
    print(f"{'':28}{'ours req/s':>12}{'recipe req/s':>14}{'ratio':>8}")
    for kind, unit in (
        ("forward", f"prefill {args.seq} tokens"),
        ("generate", f"{args.new_tokens} new tokens"),
    ):
        ours, recipe = ms(results[f"{kind} ours"]), ms(results[f"{kind} recipe"])
        print(f"{kind + ' (' + unit + ')':28}{BATCH / ours:12.1f}{BATCH / recipe:14.1f}{recipe / ours:8.2f}x")
    print(
        f"adapter load, cold (HTTP, empty cache): median {ms(cold) * 1e3:.0f} ms  {[round(x * 1e3) for x in cold]}"
    )
    print(
        f"adapter load, warm (blobs cached):      median {ms(warm) * 1e3:.0f} ms  {[round(x * 1e3) for x in warm]}"
    )
    print(f"adapter load, LRU hit:                  median {ms(hit) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
