"""Validate adapter_config.json against PEFT's config schema, importing no user code (and no torch).

peft_schema.json holds the field names of every PEFT config class, generated from the installed
peft by `python -m registry.formats.gen_peft_schema`; tests/formats/test_peft_config.py checks it
against peft itself and checks that configs we accept are accepted by peft's own classes.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from registry.bounds import NAME_LEN, REVISION_LEN, check_text, loads_strict
from registry.errors import InvalidAdapter, UnknownPeftType, UnsafeConfig, ValidationFailed

SAFE_LIBRARIES = ("transformers", "peft")


@cache
def peft_schema() -> dict[str, Any]:
    text = resources.files("registry.formats").joinpath("peft_schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class PeftConfigFacts:
    """The parts of a PEFT config the registry indexes, plus the whole document."""

    raw: dict[str, Any]
    peft_type: str
    task_type: str | None
    r: int | None = None
    lora_alpha: float | None = None
    target_modules: list[str] | str | None = None
    lora_dropout: float | None = None
    use_rslora: bool = False
    use_dora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    modules_to_save: list[str] = field(default_factory=list)
    base_model_name_or_path: str | None = None
    revision: str | None = None
    unknown_fields: list[str] = field(default_factory=list)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# Field checks shared by the config classes that have the field: (predicate, what it must be).
_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "r": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "lora_alpha": (lambda v: _is_num(v) and v > 0, "a positive number"),
    "lora_dropout": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "alpha": (lambda v: _is_num(v), "a number"),
    "target_modules": (
        lambda v: v is None or isinstance(v, str) or _str_list(v),
        "null, a regex string or a list of module names",
    ),
    "modules_to_save": (lambda v: v is None or _str_list(v), "null or a list of module names"),
    "use_rslora": (lambda v: isinstance(v, bool), "true or false"),
    "use_dora": (lambda v: isinstance(v, bool), "true or false"),
    "inference_mode": (lambda v: isinstance(v, bool), "true or false"),
    "fan_in_fan_out": (lambda v: isinstance(v, bool), "true or false"),
    "rank_pattern": (
        lambda v: (
            v is None
            or (
                isinstance(v, dict) and all(isinstance(k, str) and _is_int(x) and x > 0 for k, x in v.items())
            )
        ),
        "an object mapping module patterns to positive integers",
    ),
    "alpha_pattern": (
        lambda v: (
            v is None
            or (isinstance(v, dict) and all(isinstance(k, str) and _is_num(x) for k, x in v.items()))
        ),
        "an object mapping module patterns to numbers",
    ),
    "num_virtual_tokens": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    "token_dim": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    "num_layers": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    "num_attention_heads": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    "base_model_name_or_path": (lambda v: v is None or isinstance(v, str), "a string"),
    "revision": (lambda v: v is None or isinstance(v, str), "a string"),
    "bias": (lambda v: v in ("none", "all", "lora_only"), "'none', 'all' or 'lora_only'"),
}


def parse_config(path: str, raw_bytes: bytes) -> PeftConfigFacts:
    """Parse and validate adapter_config.json; raise an InvalidAdapter subclass on refusal."""
    doc = loads_strict(raw_bytes, path, InvalidAdapter)
    if not isinstance(doc, dict):
        raise InvalidAdapter(f"{path} must hold a JSON object", path=path)
    return validate_config(doc, path)


def validate_config(doc: dict[str, Any], path: str = "adapter_config.json") -> PeftConfigFacts:
    schema = peft_schema()
    peft_type = doc.get("peft_type")
    if (
        isinstance(peft_type, str)
        and peft_type not in schema["fields"]
        and peft_type.upper() in schema["fields"]
    ):
        # PEFT looks the type up by its exact enum value: it cannot load a pulled "lora" adapter.
        raise UnknownPeftType(
            f'{path}: peft_type {peft_type!r} must be spelled exactly "{peft_type.upper()}" '
            "(PEFT matches the type by its exact, upper-case value)",
            path=path,
            peft_type=peft_type,
        )
    if not isinstance(peft_type, str) or peft_type not in schema["fields"]:
        raise UnknownPeftType(
            f"{path}: peft_type {peft_type!r} is not a PEFT type; known: "
            + ", ".join(sorted(schema["fields"])),
            path=path,
            peft_type=peft_type,
        )
    _refuse_code_hooks(doc, path)
    _check_stored_text(doc, path)
    task_type = doc.get("task_type")
    if task_type is not None and task_type not in schema["task_types"]:
        raise InvalidAdapter(
            f"{path}: task_type {task_type!r} is not one of {', '.join(schema['task_types'])}",
            path=path,
        )
    known = set(schema["fields"][peft_type])
    for name, value in doc.items():
        check = _FIELD_TYPES.get(name)
        if name in known and check is not None and not check[0](value):
            raise InvalidAdapter(f"{path}: {name} must be {check[1]}, got {value!r}", path=path, field=name)
    target = doc.get("target_modules")
    return PeftConfigFacts(
        raw=doc,
        peft_type=peft_type,
        task_type=task_type,
        r=doc.get("r") if _is_int(doc.get("r")) else None,
        lora_alpha=float(doc["lora_alpha"]) if _is_num(doc.get("lora_alpha")) else None,
        target_modules=sorted(target) if isinstance(target, list) else target,
        lora_dropout=float(doc["lora_dropout"]) if _is_num(doc.get("lora_dropout")) else None,
        use_rslora=bool(doc.get("use_rslora", False)),
        use_dora=bool(doc.get("use_dora", False)),
        rank_pattern=dict(doc.get("rank_pattern") or {}),
        modules_to_save=list(doc.get("modules_to_save") or []),
        base_model_name_or_path=doc.get("base_model_name_or_path") or None,
        revision=doc.get("revision") or None,
        unknown_fields=sorted(set(doc) - known),
    )


# Fields the registry stores in columns of their own, with the columns' bounds.
_STORED_TEXT = {"base_model_name_or_path": NAME_LEN, "revision": REVISION_LEN}


def _check_stored_text(doc: dict[str, Any], path: str) -> None:
    for name, max_len in _STORED_TEXT.items():
        value = doc.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidAdapter(f"{path}: {name} must be a string, got {value!r}", path=path, field=name)
        try:
            check_text(value, name, max_len)
        except ValidationFailed as err:
            raise InvalidAdapter(f"{path}: {err.message}", path=path, field=name) from err


def _refuse_code_hooks(doc: dict[str, Any], path: str) -> None:
    """Refuse fields that make PEFT or transformers import or run code named by the config."""
    auto = doc.get("auto_mapping")
    if auto is not None:
        if not isinstance(auto, dict):
            raise UnsafeConfig(f"{path}: auto_mapping must be an object", path=path, field="auto_mapping")
        lib = auto.get("parent_library")
        if lib is not None and (not isinstance(lib, str) or lib.split(".")[0] not in SAFE_LIBRARIES):
            raise UnsafeConfig(
                f"{path}: auto_mapping.parent_library {lib!r} names a library outside "
                f"{'/'.join(SAFE_LIBRARIES)}; loading it would import third-party code",
                path=path,
                field="auto_mapping",
            )
    for key in ("tokenizer_kwargs", "model_kwargs", "init_kwargs"):
        kwargs = doc.get(key)
        if isinstance(kwargs, dict) and kwargs.get("trust_remote_code"):
            raise UnsafeConfig(
                f"{path}: {key} sets trust_remote_code, which would run code from a remote repository",
                path=path,
                field=key,
            )
    if doc.get("trust_remote_code"):
        raise UnsafeConfig(f"{path}: trust_remote_code is not accepted", path=path, field="trust_remote_code")
    if doc.get("megatron_config") is not None or doc.get("megatron_core", "megatron.core") != "megatron.core":
        raise UnsafeConfig(
            f"{path}: megatron_config/megatron_core make PEFT import a module named by the config",
            path=path,
            field="megatron_core",
        )


SET_VALUED_FIELDS = (
    "target_modules",
    "exclude_modules",
    "modules_to_save",
    "feedforward_modules",
    "target_parameters",
)
"""Config fields PEFT reads as sets (LoraConfig/IA3Config turn the lists into `set()`;
modules_to_save is matched by membership): `save_pretrained` writes them in set order, which
differs between runs of the same training."""


def canonical_config(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with each set-valued list sorted and without repeats: two configs PEFT reads alike
    compare equal."""
    out = dict(raw)
    for name in SET_VALUED_FIELDS:
        value = out.get(name)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[name] = sorted(set(value))
    return out
