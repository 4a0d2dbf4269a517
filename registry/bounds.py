"""What the registry can store and serve back: column bounds, and one strict check of text and JSON.

Every value that reaches the database passes through here, from the API, the CLI and (later) the
Hub protocol alike: the pydantic types in `entities` and the adapter file checks in `formats` call
these functions. A value they accept can be written to SQLite and PostgreSQL and rendered back as
JSON; the probe in issue 9 stored a lone surrogate and a 500-deep config that made every later
listing a 500, so "accepted" must mean "servable".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

from registry.errors import RegistryError, ValidationFailed

INT32_MAX = 2**31 - 1
"""Integer columns (version numbers, ids, module features): PostgreSQL's `integer`."""
INT64_MAX = 2**63 - 1
"""BigInteger columns (sizes, parameter counts), and the widest integer a JSON document may hold."""

PAGE_MAX = 500
"""The most versions or repositories one listing page holds."""


def row_cursor(raw: str) -> int | None:
    """A listing's cursor (a row id of an integer column: a previous page's next_cursor) as that
    id, or None for anything else, which was not made by us."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= INT32_MAX:
        return int(raw)
    return None


LFS_BATCH_OBJECTS = 1000
"""The most objects one Git LFS batch call may ask about (huggingface_hub asks 256 at a time, git-lfs
100). The second probe's 10,000-object batch took 35.6 s and answered 808 MiB."""
LFS_BATCH_PARTS = 4096
"""The most part URLs one LFS batch answer holds: multipart objects share them, each taking parts
larger than the configured chunk when there are many (huggingface_hub reads the part size from
the answer). An answer stays near a megabyte whatever the objects' sizes."""

MAX_VERSION_FILES = 10_000
"""The most files one version holds (a push's file list, a Hub commit's resulting file set, a
preupload's question). Counted before any file is read: a Hub commit of 150k inline files was
refused only after all were decoded and checked (8.6 s, +380 MB)."""

JSON_BODY_BYTES = 16 * 1024**2
"""The largest JSON body a /v1 route takes: a push of 10,000 files is 1.5 MB, a base's module table
for a 256-expert MoE about 5 MB (Hub commits, which carry files inline, are read line by line)."""
JSON_BODY_VALUES = 1_000_000
"""The most values (commas) in a /v1 JSON body: that 256-expert module table holds about 200k."""

NAME_LEN = 256
"""base_model_name, base names and module names (String(256))."""
REVISION_LEN = 128
LABEL_LEN = 128
"""task, metric, user names (String(128))."""
MESSAGE_LEN = 10_000

CARD_BYTES = 64 * 1024
"""How much of a README is read for its YAML front matter (the Hub's `cardData`): real model cards'
front matter is a few hundred bytes to a few KiB; one that does not close within this is ignored."""
CARD_NODES = 10_000
"""The most values a model card's front matter may hold once YAML aliases are expanded: a few
hundred bytes of aliases name 2**30 values (the "billion laughs"), which yaml.safe_load shares but
a JSON answer would spell out."""

MAX_HEADER_BYTES = 100 * 1024**2
"""Cap on a safetensors header, the one the safetensors library applies (ADAPTERS_MAX_HEADER_BYTES
sets the server's; config, formats and the client all read it from here)."""

ADAPTER_TENSORS_MAX = 65_536
"""The most tensors one safetensors file of an adapter may hold. The largest real adapters hold a
few thousand (every linear layer of a 70B model with DoRA: 1,680; every expert of a 128-expert
MoE: about 72k would not fit, and such adapters target stacked expert parameters instead). The
header cap alone allowed a million, and the probe's 100k became 100k rows in one commit."""

ADAPTER_HEADER_BYTES = 16 * 1024**2
"""The cap on an adapter's safetensors header, checked before it is read: room for
ADAPTER_TENSORS_MAX entries of 256 bytes (a real entry, name and all, takes 100 to 150)."""

MAX_JSON_DEPTH = 32
"""PEFT configs nest 3 levels, merge lineage 4, transformers configs 4: 32 leaves room and stays far
below the recursion limits of every serializer between the database and a client."""
MAX_JSON_BYTES = 1024**2
"""A JSON value given in a request body (lineage, a base's config, job parameters), serialized."""

# Characters no name, label or path may hold: C0/C1 controls and DEL; bidi overrides and isolates
# (they make a name display as another); zero-width characters and BOM (lookalikes).
_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_ZERO_WIDTH = {0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF}
_INVISIBLE = frozenset(_BIDI | _ZERO_WIDTH)

_SUSPECT_TEXT = re.compile(r"[\x00\ud800-\udfff]")
_SUSPECT_LINE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff" + "".join(rf"\u{o:04x}" for o in sorted(_INVISIBLE)) + "]"
)

Raise = Callable[[str], NoReturn]


def _raise_validation(message: str) -> NoReturn:
    raise ValidationFailed(message)


def text_problem(value: str, single_line: bool) -> str | None:
    """Why `value` cannot be stored as text, or None. Always refused: NUL (PostgreSQL text cannot
    hold it) and lone surrogates (not encodable as UTF-8). Single-line values (names, labels) also
    refuse every control, bidi and zero-width character."""
    # A regex finds the first suspect character in C: most text has none, and the loop below
    # (which says what is wrong) ran over every character of every string of a header (2.4 s of a
    # 65k-tensor push's 13 s under the profiler).
    found = (_SUSPECT_LINE if single_line else _SUSPECT_TEXT).search(value)
    if found is None:
        return None
    for ch in value[found.start() :]:
        o = ord(ch)
        if o == 0:
            return "contains a NUL character"
        if 0xD800 <= o <= 0xDFFF:
            return "contains a lone surrogate (not valid Unicode)"
        if single_line and (o < 32 or 0x7F <= o <= 0x9F):
            return f"contains the control character U+{o:04X}"
        if single_line and o in _INVISIBLE:
            return f"contains the invisible or bidi character U+{o:04X}"
    return None


def check_text(value: str, field: str, max_len: int, *, single_line: bool = True) -> str:
    if len(value) > max_len:
        raise ValidationFailed(f"{field}: longer than {max_len} characters", field=field)
    why = text_problem(value, single_line)
    if why is not None:
        raise ValidationFailed(f"{field}: {why}", field=field)
    return value


def check_json(
    value: Any,
    field: str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    fail: Raise | None = None,
    scalars: bool = True,
) -> Any:
    """Refuse what a strict JSON document cannot hold or we cannot serve back: NaN and infinities,
    integers wider than 64 bits, text `text_problem` refuses (keys included), non-string keys, and
    nesting deeper than `max_depth` (with `scalars` False, only the nesting). Iterative, so a
    hostile depth cannot exhaust the stack."""
    fail = fail or _raise_validation
    check = _check_scalar if scalars else _accept
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                fail(f"{field}: nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                for k, v in node.items():
                    if not isinstance(k, str):
                        fail(f"{field}: object keys must be strings")
                    check(k, field, fail)
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in node)
        else:
            check(node, field, fail)
    return value


def _accept(node: Any, field: str, fail: Raise) -> None:
    pass


def _check_scalar(node: Any, field: str, fail: Raise) -> None:
    if node is None or isinstance(node, bool):
        return
    if isinstance(node, str):
        why = text_problem(node, single_line=False)
        if why is not None:
            fail(f"{field}: a string {why}")
    elif isinstance(node, int):
        if not -INT64_MAX - 1 <= node <= INT64_MAX:
            fail(f"{field}: integer {str(node)[:20]}... is wider than 64 bits")
    elif isinstance(node, float):
        if not math.isfinite(node):
            fail(f"{field}: {node} is not a finite number (strict JSON has no NaN or Infinity)")
    else:
        fail(f"{field}: {type(node).__name__} is not a JSON value")


def check_json_size(value: Any, field: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """check_json, then a cap on the serialized size."""
    check_json(value, field)
    size = len(json.dumps(value, separators=(",", ":")))
    if size > max_bytes:
        raise ValidationFailed(f"{field}: {size} bytes of JSON; the limit is {max_bytes}", field=field)
    return value


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not strict JSON")


def loads_strict(
    raw: bytes,
    where: str,
    error: type[RegistryError],
    max_depth: int = MAX_JSON_DEPTH,
    storable: bool = True,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """Parse `raw` as strict UTF-8 JSON (no NaN/Infinity, nesting capped, and when `storable`, as
    for what goes into the database: no lone surrogates, no NUL in strings) or raise `error`
    naming `where`. Used for adapter_config.json, safetensors headers, and (not `storable`: they
    stay blobs, and real tokenizers hold odd tokens) every other JSON file of an adapter.
    `object_pairs_hook` builds each object (a RegistryError it raises goes through as it is)."""

    def fail(message: str) -> NoReturn:
        raise error(message, path=where)

    try:
        doc = json.loads(
            raw.decode("utf-8"), parse_constant=_no_constants, object_pairs_hook=object_pairs_hook
        )
    except RegistryError:
        raise
    except RecursionError:
        fail(f"{where}: nested deeper than {max_depth} levels")
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise error(f"{where} is not valid UTF-8 JSON: {err}", path=where) from err
    check_json(doc, where, max_depth=max_depth, fail=fail, scalars=storable)
    return doc
