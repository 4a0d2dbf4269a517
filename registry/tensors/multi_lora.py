"""One base model, many LoRA adapters, one batch: PEFT's mixed-batch inference (`adapter_names`).

The torch half of registry.serving.AdapterServer, which owns the bookkeeping (which adapters, when
to evict, who may run) and calls this under its lock. Nothing here is thread-safe on its own: PEFT
passes `adapter_names` to the LoRA layers through forward pre-hooks registered on the shared modules
for the length of one call, so two calls at once would each see the other's hooks.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry import dtypes
from registry.errors import BadRequest

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

DTYPES = {name: dtypes.DTYPES.get(name, name) for name in dtypes.SPELLINGS}
"""The dtype names a base may be loaded in (registry.dtypes: the short names and torch's) -> torch's."""

BASE_ROW = "__base__"
"""PEFT's name for a row that runs the base alone."""

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class Generated:
    token_ids: list[int]
    """The new tokens only (the prompt and its padding removed)."""
    text: str | None
    """The new tokens decoded; None when the base folder has no tokenizer."""


def has_tokenizer(folder: Path) -> bool:
    return any((folder / n).is_file() for n in _TOKENIZER_FILES)


class MultiLoraModel:
    """A causal LM loaded once from `folder`, and the PEFT wrapper that holds its adapters (None
    while no adapter is loaded: PEFT cannot delete its last adapter, so that one is unloaded)."""

    def __init__(
        self,
        folder: Path,
        device: str = "cpu",
        dtype: str | None = None,
        tokenizer_folder: Path | None = None,
    ) -> None:
        """`tokenizer_folder`: where the tokenizer is, for a base folder that holds none (default:
        the base folder's, when it has one)."""
        from transformers import AutoModelForCausalLM

        torch_dtype = _torch_dtype(dtype)
        self.device = device
        # Any: transformers' stubs type .to() and .generate() too loosely for mypy.
        model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
        self.base: Any = model.to(device).eval()
        self.peft: Any = None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        source = tokenizer_folder or folder
        if tokenizer_folder is not None and not has_tokenizer(tokenizer_folder):
            raise BadRequest(f"{tokenizer_folder} holds no tokenizer ({', '.join(_TOKENIZER_FILES)})")
        if has_tokenizer(source):
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(source)
            tok.padding_side = "left"  # decoder-only generation continues from the right edge
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            self.tokenizer = tok
        self.param_bytes = next(self.base.parameters()).element_size()
        self._takes_positions = "position_ids" in inspect.signature(self.base.forward).parameters

    def adapter_bytes_estimate(self, trainable_params: int) -> int:
        """Memory an adapter of that many parameters takes once loaded: PEFT keeps adapter weights
        in float32 on a float16/bfloat16 base (autocast_adapter_dtype), else in the base's dtype."""
        return trainable_params * max(self.param_bytes, 4)

    def add(self, folder: Path, name: str) -> int:
        """Load the adapter saved in `folder` as `name`; returns the bytes its weights take."""
        from peft import PeftModel

        if self.peft is None:
            self.peft = PeftModel.from_pretrained(
                self.base, folder, adapter_name=name, torch_device=self.device
            ).eval()
        else:
            self.peft.load_adapter(folder, adapter_name=name, torch_device=self.device)
            self.peft.eval()
        marker = f".{name}."
        return sum(p.numel() * p.element_size() for n, p in self.peft.named_parameters() if marker in n)

    def delete(self, name: str) -> None:
        if self.peft is None:
            return
        if list(self.peft.peft_config) == [name]:
            self.base = self.peft.unload()  # the LoRA layers replaced by the original modules
            self.peft = None
            return
        with warnings.catch_warnings():  # "Adapter x was active which is now deleted": expected
            warnings.simplefilter("ignore", UserWarning)
            self.peft.delete_adapter(name)
        if self.peft.active_adapter not in self.peft.peft_config:
            # PEFT 0.21 leaves the wrapper's active adapter naming the deleted one (KeyError on
            # the next call); mixed batches ignore which one is active, but it must exist.
            self.peft.set_adapter(next(iter(self.peft.peft_config)))

    def forward(
        self, input_ids: torch.Tensor, names: list[str], attention_mask: torch.Tensor | None = None
    ) -> Any:
        """The model's output (`.logits`) for a batch whose row i runs adapter `names[i]`."""
        import torch

        kwargs: dict[str, Any] = {"input_ids": input_ids.to(self.device)}
        if attention_mask is not None:
            mask = attention_mask.to(self.device)
            kwargs["attention_mask"] = mask
            if self._takes_positions:
                # As generate does: a left-padded row's first real token is position 0. Without
                # this a forward numbers positions from the padding, which models with learned
                # positions (GPT-2) get wrong; RoPE only shifts, but a row should not depend on its
                # neighbours' lengths.
                kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            if self.peft is None:
                return self.base(**kwargs)
            return self.peft(**kwargs, adapter_names=names)

    def generate(
        self, prompts: list[str] | list[list[int]], names: list[str], **kwargs: Any
    ) -> list[Generated]:
        """Generate for every row at once, row i with adapter `names[i]` (prompts left-padded)."""
        import torch

        input_ids, attention_mask = self._encode(prompts)
        kwargs.setdefault("pad_token_id", self._pad_id())
        with torch.inference_mode():
            model: Any = self.base if self.peft is None else self.peft
            extra = {} if self.peft is None else {"adapter_names": names}
            out = model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                **extra,
                **kwargs,
            )
        new = out[:, input_ids.shape[1] :].tolist()
        eos = self._eos_ids()
        results = []
        for row in new:
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            ids = row[:cut]
            text = (
                None if self.tokenizer is None else str(self.tokenizer.decode(ids, skip_special_tokens=True))
            )
            results.append(Generated(token_ids=ids, text=text))
        return results

    def _encode(self, prompts: list[str] | list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        if all(isinstance(p, str) for p in prompts):
            if self.tokenizer is None:
                raise BadRequest(
                    "this base has no tokenizer (no tokenizer.json, tokenizer_config.json, "
                    "tokenizer.model or vocab.json in its folder): pass token ids instead of text, or a "
                    "tokenizer from elsewhere (adapters generate --token-ids / --tokenizer)",
                    field="prompts",
                )
            enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
            return enc["input_ids"], enc["attention_mask"]
        rows = [list(p) for p in prompts]  # token ids, left-padded here as the tokenizer would
        width = max(len(r) for r in rows)
        pad = self._pad_id()
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        return ids, mask

    def _pad_id(self) -> int:
        if self.tokenizer is not None and self.tokenizer.pad_token_id is not None:
            return int(self.tokenizer.pad_token_id)
        cfg = self.base.config
        for value in (cfg.pad_token_id, cfg.eos_token_id, 0):
            if isinstance(value, list):
                value = value[0] if value else None
            if value is not None:
                return int(value)
        return 0

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.base.generation_config, "eos_token_id", None) or self.base.config.eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in (eos if isinstance(eos, list) else [eos])}


def check_placement(device: str, dtype: str | None) -> Any:
    """The torch dtype for `dtype` (None and "auto" as given), after checking that `device` names
    a device this process can use; cheap, so a server checks before it pulls or loads a base.

    Raises:
        BadRequest: an unknown dtype name, or a device torch cannot parse or does not have here.
    """
    import torch

    torch_dtype = _torch_dtype(dtype)
    try:
        torch.empty(0, device=device)  # parses the name and checks the device exists (no memory)
    except (RuntimeError, AssertionError, ValueError) as err:
        # RuntimeError: a malformed name or a missing index; AssertionError: torch built without it.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadRequest(f"device {device!r} cannot be used here: {first}", field="device") from None
    return torch_dtype


def _torch_dtype(name: str | None) -> Any:
    import torch

    if name is None or name == "auto":
        return name
    torch_name = dtypes.canonical(name, "torch")
    if torch_name is None:
        raise BadRequest(f"dtype {name!r} is not one of {', '.join(DTYPES)} (or auto)", field="dtype")
    return getattr(torch, torch_name)
