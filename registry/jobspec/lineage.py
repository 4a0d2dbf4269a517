"""How a version or a base was derived, as a typed value: the merge or export job writes one, and
every reader (the lineage graph and its edge index, `show`, the UI's base page, the Hub's card)
reads one through `read_lineage`, the only code that knows the stored JSON's shape.

The column stays a JSON document as written (a client may push its own claim; the API serves it
back as stored), so reading is lenient: a field of another JSON type reads as absent, a parent
without a digest is no parent. The shapes ever written (migrations 0002 and 0004 added the
columns; the jobs have written these shapes since, tests/evals/test_lineage_shapes.py reads each):

- a merge: {kind: "merge", method, parameters, parents: [{ref, digest, weight}],
  error: {max, mean, modules: {name: {rank, rel_error}}}};
- an export: {kind: "export", base_fingerprint, base, adapter, adapter_digest, dtype,
  merged_modules, replaced_tensors};
- a pushed claim of any other shape, kept as given; the parents it names are checked at push, and
  the unverified ones marked (`"unverified": true` on the parent, their keys in a top-level list);
- no lineage: SQL NULL, or the JSON text 'null' (SQLAlchemy's JSON type wrote None so on
  `versions` and, before `none_as_null`, on `base_models`), both read as None.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, TypeAdapter

SCHEMA = 1
"""The shape above. A document without `schema` is of this shape (every row stored so far); a job
that writes a new shape writes `"schema": 2`, and readers tell the two apart by `schema_`."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond a float's range (JSON allows one)
        return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _texts(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _schema(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else SCHEMA


Text = Annotated[str | None, BeforeValidator(_text)]
Schema = Annotated[int, BeforeValidator(_schema)]
Number = Annotated[float | None, BeforeValidator(_number)]
Count = Annotated[int | None, BeforeValidator(_count)]
Texts = Annotated[list[str], BeforeValidator(_texts)]
Object = Annotated[dict[str, Any], BeforeValidator(_object)]


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Parent(_Read):
    """A version a merge was made from, by digest (and the reference it had then)."""

    digest: str
    ref: Text = None
    weight: Number = None
    unverified: bool = False
    """The pusher could not read it (or it did not exist) when pushing: never indexed."""
    position: int = Field(default=0, exclude=True)
    """Its index among the document's `parents` (entries that are no parent included)."""


def _parents(value: Any) -> list[Parent | dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [
        p.model_copy(update={"position": i})
        if isinstance(p, Parent)  # built by a job
        else {**p, "position": i, "unverified": p.get("unverified") is True}
        for i, p in enumerate(value)
        if isinstance(p, Parent) or (isinstance(p, dict) and isinstance(p.get("digest"), str))
    ]


class ModuleError(_Read):
    rank: Count = None
    rel_error: Number = None


class MergeError(_Read):
    """The merge's relative error per module against the exact weighted sum of the updates."""

    max: Number = None
    mean: Number = None
    modules: Annotated[dict[str, ModuleError], BeforeValidator(lambda v: _modules(v))] = Field(
        default_factory=dict
    )


def _modules(value: Any) -> dict[str, Any]:
    return {k: v for k, v in _object(value).items() if isinstance(v, dict | ModuleError)}


class _Lineage(_Read):
    """What every shape may name, whatever its `kind`: the parents a document lists (a merge's;
    a pushed claim may list them beside another kind, and they are edges all the same), and a
    base (an export's; a pushed claim's)."""

    parents: Annotated[list[Parent], BeforeValidator(_parents)] = Field(default_factory=list)
    base: Text = None


class MergeLineage(_Lineage):
    """A merge's lineage (or any pushed document naming `parents`)."""

    kind: Text = None
    """As recorded: "merge", or what a pushed claim with `parents` said (None: nothing)."""
    schema_: Schema = Field(default=SCHEMA, alias="schema")
    method: Text = None
    parameters: Object = Field(default_factory=dict)
    error: Annotated[
        MergeError | None, BeforeValidator(lambda v: v if isinstance(v, dict | MergeError) else None)
    ] = None
    unverified: Texts = Field(default_factory=list)

    @property
    def max_error(self) -> float | None:
        return self.error.max if self.error is not None else None

    def document(self) -> dict[str, Any]:
        """The JSON a merge job records (the shape above, unchanged since the first merge)."""
        error = self.error or MergeError()
        return {
            "kind": "merge",
            "method": self.method,
            "parameters": self.parameters,
            "parents": [{"ref": p.ref, "digest": p.digest, "weight": p.weight} for p in self.parents],
            "error": {
                "max": error.max,
                "mean": error.mean,
                "modules": {k: {"rank": e.rank, "rel_error": e.rel_error} for k, e in error.modules.items()},
            },
        }


class ExportLineage(_Lineage):
    """An export's lineage: the adapter merged into a base, and what came of it."""

    kind: Literal["export"] = "export"
    schema_: Schema = Field(default=SCHEMA, alias="schema")
    base_fingerprint: Text = None
    base: Text = None
    """The base as the job named it (a name, a fingerprint or, embedded, a folder)."""
    adapter: Text = None
    """The adapter's reference."""
    adapter_digest: Text = None
    dtype: Text = None
    merged_modules: Count = None
    """How many modules the adapter's updates were merged into."""
    replaced_tensors: Texts = Field(default_factory=list)
    """Tensors replaced whole (modules_to_save, trainable tokens)."""
    unverified: Texts = Field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The JSON an export job records."""
        return {
            "kind": "export",
            "base_fingerprint": self.base_fingerprint,
            "base": self.base,
            "adapter": self.adapter,
            "adapter_digest": self.adapter_digest,
            "dtype": self.dtype,
            "merged_modules": self.merged_modules,
            "replaced_tensors": self.replaced_tensors,
        }


class OtherLineage(_Lineage):
    """A pushed document of no shape we write (`{"kind": "note"}`): kept and served as given."""

    kind: Text = None


def _tag(doc: Any) -> str:
    """The discriminator: `kind` "export", else a merge's when it names parents (as the edge index
    always read it) or says "merge", else a document of another shape."""
    if not isinstance(doc, dict):  # a typed value again
        return (
            "merge"
            if isinstance(doc, MergeLineage)
            else "export"
            if isinstance(doc, ExportLineage)
            else "other"
        )
    if doc.get("kind") == "export":
        return "export"
    return "merge" if isinstance(doc.get("parents"), list) or doc.get("kind") == "merge" else "other"


Lineage = Annotated[
    Annotated[MergeLineage, Tag("merge")]
    | Annotated[ExportLineage, Tag("export")]
    | Annotated[OtherLineage, Tag("other")],
    Discriminator(_tag),
]
_LINEAGE: TypeAdapter[MergeLineage | ExportLineage | OtherLineage] = TypeAdapter(Lineage)


def read_lineage(doc: Any) -> MergeLineage | ExportLineage | OtherLineage | None:
    """The typed lineage of a stored or served document; None for none (NULL, 'null', not an
    object)."""
    if not isinstance(doc, dict):
        return None
    return _LINEAGE.validate_python(doc)


# ---- the two places the stored document itself changes: marks written at push, and at read
def with_unverified(doc: dict[str, Any], doubtful: list[str]) -> dict[str, Any]:
    """The document to store for a pushed claim: the parents (and the top-level list) of the keys
    in `doubtful` marked unverified, and every mark the pusher wrote replaced (a claim cannot make
    itself look verified)."""
    out = {k: v for k, v in doc.items() if k != "unverified"}
    if doubtful:
        out["unverified"] = doubtful
    if isinstance(out.get("parents"), list):
        out["parents"] = [_marked(p, doubtful) for p in out["parents"]]
    return out


def _marked(parent: Any, doubtful: list[str]) -> Any:
    if not isinstance(parent, dict):
        return parent
    out = {k: v for k, v in parent.items() if k != "unverified"}
    if out.get("digest") in doubtful:
        out["unverified"] = True
    return out


def with_deleted(doc: dict[str, Any], deleted: dict[int, bool]) -> dict[str, Any]:
    """The document as served: the parents at the positions in `deleted` marked `"deleted": true`
    (False: the mark removed); every other entry as recorded."""
    parents = doc.get("parents")
    if not isinstance(parents, list) or not deleted:
        return doc
    out = []
    for i, parent in enumerate(parents):
        if i in deleted:
            parent = {k: v for k, v in parent.items() if k != "deleted"}
            if deleted[i]:
                parent["deleted"] = True
        out.append(parent)
    return {**doc, "parents": out}
