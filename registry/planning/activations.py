"""Activation memory: the bytes autograd saves for the backward pass, per layer and outside the layers.

The shape of the sum is Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (arXiv:2205.05198, section 4.1): per layer s*b*h*(34 + 5*a*s/h) bytes for a
16-bit GPT layer (34 = 11 for attention's linear inputs, Q/K/V and output, 19 for the 4h MLP, 4 for
two layer norms; 5as/h for the s*s scores, softmax and dropout mask). Adapted term by term to what
today's PyTorch and transformers keep, each term found with saved_tensors_hooks on tiny models:
- attention through scaled_dot_product_attention (transformers' default): Q, K, V, the output and an
  fp32 logsumexp per head and token; no s*s matrices (the 5as/h term is gone; `eager_attention`
  brings it back: (4+p)*a*s bytes a token for Llama-family eager attention, p*a*s for BERT's); grouped-query
  attention keeps K and V at num_key_value_heads width; a fused QKV projection (GPT-2's c_attn)
  keeps its whole output alive through the view that is Q, besides the K and V copies;
- transformers' RMSNorm upcasts its input to fp32 and keeps that copy (4h bytes) and one fp32 rsqrt
  per token; LayerNorm keeps its input and an fp32 mean and rstd per token;
- a gated MLP keeps gate, up and act(gate) (3 x intermediate); a plain one keeps its activation's
  saves (1 for torch's gelu, 4 for GPT-2's Python gelu_new);
- a linear layer's input is kept only when its weight trains: with a frozen base (LoRA, IA3,
  prompts) the inputs of the q/k/v, MLP and down projections are not kept, the norms' outputs are
  not either; PEFT's LoRA casts its input to the adapter's fp32 (4*in bytes per adapted module)
  and keeps A's output (4r); IA3 keeps the scaled tensor;
- dropout keeps a 1-byte mask per element on the GPU (PyTorch's native_dropout);
- a causal LM's loss upcasts the logits to fp32 and log_softmax keeps its fp32 output (4V per token).
Gradient checkpointing (transformers' per-layer checkpoint) keeps each layer's input (p*h per token)
plus what lies outside the layers, and recomputes one layer at a time in the backward pass: the peak
adds one layer's activations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.planning.layout import Layout
from registry.planning.trainable import Trainable

_LAYER = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class ActivationBytes:
    total: int
    """Peak bytes autograd holds: all layers (no checkpointing), or the checkpoints plus one layer."""
    per_layer: int
    """One layer's saved activations (without checkpointing), adapters included."""
    outside: int
    """Embeddings, norms outside the layers, the output head and loss."""
    checkpoints: int = 0
    """With gradient checkpointing: the layer inputs kept for recomputation."""


def _norm(layout: Layout, p: int, trains: bool) -> float:
    """Bytes per token a norm keeps."""
    h = layout.hidden
    if layout.rms_norm:
        return 4 * h + 4 + (p * h if trains else 0)
    return p * h + 8


def _adapter_bytes(t: Trainable, p: int, r: int) -> dict[int | None, float]:
    """Bytes per token the adapters keep, by layer index (None outside the layers)."""
    out: dict[int | None, float] = {}
    seen_inputs: set[tuple[str, int]] = set()
    for hit in t.targets:
        m = hit.module
        match = _LAYER.search(m.name)
        layer = int(match.group(1)) if match else None
        if t.method in ("lora", "qlora", "dora"):
            parent = m.name.rsplit(".", 1)[0]
            if p != 4:
                cost = 4 * m.in_features  # PEFT's cast of x to the adapter's fp32: one copy per module
            elif (parent, m.in_features) in seen_inputs:
                cost = 0  # fp32 base: the adapters share their input tensor
            else:
                cost = 4 * m.in_features
            seen_inputs.add((parent, m.in_features))
            cost += 4 * r
            if t.method == "dora":
                cost += (4 + p) * m.out_features
        elif hit.feedforward:  # IA3 scales the input: keeps the fp32 input
            cost = 4 * m.in_features
        else:  # IA3 scales the output: keeps the base layer's output
            cost = p * m.out_features
        out[layer] = out.get(layer, 0) + cost
    return out


def activation_bytes(
    layout: Layout,
    t: Trainable,
    *,
    dtype_bytes: int,
    seq_len: int,
    batch: int,
    gradient_checkpointing: bool,
    r: int = 8,
    eager_attention: bool = False,
) -> ActivationBytes:
    p = dtype_bytes
    h, a, L = layout.hidden, layout.heads, layout.layers
    hq = a * layout.head_dim
    kv = layout.kv_heads * layout.head_dim
    width = layout.intermediate
    full = t.method == "full"
    n_virtual = t.num_virtual_tokens
    seq = seq_len + (n_virtual if t.method == "prompt" else 0)
    tokens = batch * seq
    # Keys and values are longer by the prefix: (s+n)/s of a token's K and V.
    kv_scale = (seq_len + n_virtual) / seq_len if t.method == "prefix" else 1.0

    layer = 2 * _norm(layout, p, full)
    layer += p * (hq + 2 * kv * kv_scale) + p * hq  # Q, K, V, output
    if eager_attention:
        # The s*s probabilities per head (Korthikanti's 5as/h term): Llama-family eager attention
        # runs softmax in fp32 and keeps that and its cast back (4+p bytes a score), BERT's keeps p.
        layer += (p + (4 if layout.rms_norm else 0)) * a * seq_len * kv_scale
    else:
        layer += 4 * a  # SDPA's fp32 logsumexp
    if layout.fused_qkv:
        layer += p * 2 * kv  # Q is a view of the fused output: K and V are kept twice
    layer += (3 if layout.gated_mlp else layout.activation_saves) * p * width
    if full:
        layer += p * h + p * h + p * width  # inputs of q/k/v, of the MLP and of down
    if layout.hidden_dropout > 0:
        layer += 2 * h  # two 1-byte dropout masks (after attention and after the MLP)
    adapters = _adapter_bytes(t, p, r)
    layer_bytes: list[float] = [tokens * (layer + adapters.get(i, 0)) for i in range(L)]
    if not full and t.method != "prompt" and not gradient_checkpointing:
        # Nothing before the first adapter needs a gradient: layer 0's first norm keeps nothing.
        layer_bytes[0] -= tokens * _norm(layout, p, False)

    outside: float = 8 * tokens * (2 if layout.causal_lm else 1)  # input ids (and labels)
    loose_norms = [m for m in layout.modules if m.kind == "norm" and not _LAYER.search(m.name)]
    outside += tokens * len(loose_norms) * _norm(layout, p, full)
    if layout.hidden_dropout > 0:
        outside += tokens * h  # embedding dropout mask
    if full and layout.head is not None:
        outside += tokens * p * h  # the head's input
    if layout.causal_lm:
        outside += tokens * 4 * layout.vocab  # fp32 log_softmax output of the loss
    outside += tokens * adapters.get(None, 0)

    if not gradient_checkpointing:
        return ActivationBytes(
            total=int(sum(layer_bytes) + outside), per_layer=int(max(layer_bytes)), outside=int(outside)
        )
    checkpoints = L * tokens * p * h
    return ActivationBytes(
        total=int(checkpoints + outside + max(layer_bytes)),
        per_layer=int(max(layer_bytes)),
        outside=int(outside),
        checkpoints=int(checkpoints),
    )
