"""The float dtypes the registry's commands take, in one table of both spellings.

`plan`, `adapters export`, `check-4bit` and `generate` name a dtype; each accepts the short name
(`bf16`) and torch's (`bfloat16`), in any case (`cli.params.dtype_param`; the job parameters'
validators, `registry.jobspec`). Each parameter then keeps the spelling its records already use:
`export` and `plan` the short one (an export's default name ends in it), `check-4bit`'s compute
dtype torch's (it is part of a 4-bit variant's label, `nf4-bfloat16`, stored and served).
No imports beyond the standard library: the CLI builds its help from this table at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Short = Literal["bf16", "fp16", "fp32"]
Torch = Literal["bfloat16", "float16", "float32"]
Form = Literal["short", "torch"]

DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""Short name -> torch's name (`getattr(torch, name)`)."""
_SHORT = {long: short for short, long in DTYPES.items()}
SPELLINGS: tuple[str, ...] = (*DTYPES, *DTYPES.values())
"""Every accepted spelling, as help texts list them."""


def canonical(text: str, form: Form) -> str | None:
    """`text` (`bf16`, `BFloat16`, ...) in the spelling `form`; None where it names no dtype here."""
    key = text.strip().lower()
    short = key if key in DTYPES else _SHORT.get(key)
    if short is None:
        return None
    return short if form == "short" else DTYPES[short]


def lenient(form: Form) -> Callable[[object], object]:
    """A pydantic before-validator: a known spelling becomes `form`'s; anything else is passed on
    unchanged, for the field's Literal to refuse with its usual message."""

    def convert(value: object) -> object:
        return (canonical(value, form) or value) if isinstance(value, str) else value

    return convert


def qlora_variant_label(quant_type: str, double_quant: bool, compute_dtype: str) -> str:
    """The name of the variant a check ran on (`nf4-float32`, `fp4-nodq-bfloat16`): here, beside
    the compute dtypes it names, so that `show` names it without importing the entities."""
    return f"{quant_type}{'' if double_quant else '-nodq'}-{compute_dtype}"
