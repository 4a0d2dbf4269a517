"""The quickstart behind `make demo`: a tiny Llama, two LoRA adapters trained with PEFT, then the
real `adapters` CLI registers the base, pushes, lists, pulls (PEFT loads the pulled adapter), asks
which adapters fit, merges (a job, run by the in-process worker), exports an adapter merged into
the base (transformers loads it) and checks it on a 4-bit NF4 base.

Runs on the embedded default (SQLite + local blobs under ADAPTERS_HOME); imports torch.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HIDDEN, VOCAB = 64, 256


def sh(*args: str) -> str:
    print(f"$ adapters {' '.join(args)}", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], check=True, text=True, stdout=subprocess.PIPE
    ).stdout
    print(out, end="", flush=True)
    return out


def train(base_dir: Path, out: Path, seed: int, targets: list[str]) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM"),
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(20):
        ids = torch.randint(0, VOCAB, (4, 16))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(str(out))
    print(f"trained {out.name}: final loss {loss.item():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".demo"))
    work: Path = parser.parse_args().workdir.resolve()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    work.mkdir(parents=True, exist_ok=True)
    base_dir = work / "tiny-llama"
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(cfg).save_pretrained(base_dir)
    print(f"built a random-init Llama at {base_dir}")
    train(base_dir, work / "legal-lora", 1, ["q_proj", "v_proj"])
    train(base_dir, work / "medical-lora", 2, ["q_proj", "k_proj", "v_proj", "o_proj"])

    sh("base", "add", str(base_dir), "--name", "tiny-llama", "--upload")
    sh(
        "push",
        str(work / "legal-lora"),
        "demo/legal",
        "--base",
        "tiny-llama",
        "--task",
        "legal",
        "--eval",
        "accuracy=0.71@lexglue:test",
        "--alias",
        "production",
        "-m",
        "first legal adapter",
    )
    sh(
        "push",
        str(work / "medical-lora"),
        "demo/medical",
        "--base",
        "tiny-llama",
        "--task",
        "medical",
        "--eval",
        "accuracy=0.64@medqa:test",
    )
    sh("list")
    sh("show", "demo/legal@production")
    pulled = work / "pulled-legal"
    shutil.rmtree(pulled, ignore_errors=True)
    sh("pull", "demo/legal@production", "-o", str(pulled))

    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        original = PeftModel.from_pretrained(base, work / "legal-lora").eval()(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
        loaded = PeftModel.from_pretrained(base, pulled).eval()(input_ids=ids).logits
    same = torch.equal(original, loaded)
    print(f"PeftModel.from_pretrained({pulled.name}): logits identical to the trained adapter: {same}")
    if not same:
        sys.exit(1)

    sh("fit", "tiny-llama", "--sort", "accuracy")
    sh("merge", "demo/legal=0.7", "demo/medical=0.3", "--into", "demo/legal-medical", "--method", "svd")
    sh("eval", "add", "demo/legal-medical", "accuracy=0.69@lexglue:test", "--note", "the merge, scored later")
    sh("leaderboard", "--base", "tiny-llama", "--metric", "accuracy", "--dataset", "lexglue")
    sh("lineage", "demo/legal-medical")
    sh("plan", "--base", "tiny-llama", "--method", "qlora", "--r", "8", "--gpu-memory", "1GB")
    exported = work / "legal-merged"
    sh("export", "demo/legal@production", "--base", "tiny-llama", "-o", str(exported), "--force")
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
        merged = PeftModel.from_pretrained(base, pulled).merge_and_unload().eval()(input_ids=ids).logits
        served = AutoModelForCausalLM.from_pretrained(exported).eval()(input_ids=ids).logits
    close = torch.allclose(merged, served, atol=1e-5)
    print(f"AutoModelForCausalLM.from_pretrained({exported.name}) equals PEFT merge_and_unload(): {close}")
    if not close:
        sys.exit(1)
    sh("check-4bit", "demo/legal@production", "--base", "tiny-llama")
    sh("fit", "tiny-llama", "--qlora-ok")
    sh("jobs", "list")


if __name__ == "__main__":
    main()
