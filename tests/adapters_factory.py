"""Real tiny models and real PEFT adapters trained for a few steps (imports torch: tests only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

VOCAB = 128


def tiny_llama(seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def save_base(model: PreTrainedModel, path: Path) -> Path:
    model.save_pretrained(path, safe_serialization=True)
    return path


def train_lora(base: PreTrainedModel, out: Path, seed: int = 1, steps: int = 3, **lora: Any) -> Path:
    """Train a LoRA adapter on random tokens for a few steps and save it with save_pretrained."""
    torch.manual_seed(seed)
    params: dict[str, Any] = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj"],
        "lora_dropout": 0.0,
        "task_type": "CAUSAL_LM",
    }
    params.update(lora)
    model = get_peft_model(base, LoraConfig(**params))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (2, 12))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out)
    model.unload()
    return out


def logits_with_adapter(base: PreTrainedModel, adapter_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        out = model(input_ids=ids).logits
    model.unload()
    return out


def tiny_gpt2(seed: int = 0) -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    ).eval()


def sized_llama(hidden: int = 32, vocab: int = VOCAB, seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def save_peft(base: PreTrainedModel, config: Any, out: Path) -> Path:
    """An untrained adapter of any PEFT type, saved as PEFT saves it (shapes are what matter)."""
    from peft import get_peft_model

    model = get_peft_model(base, config)
    model.save_pretrained(out)
    return out
