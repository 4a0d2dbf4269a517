"""A version whole: VersionInfo's JSON document (what `/v1/resolve` and `adapters show --json`
write), read by SQL on either driver, as registry.reads.versions reads a listing: the summary
(that module's mapper), then its message, config, files, lineage (each parent marked deleted when
it no longer exists), checks and signatures.

The embedded `show` prints this document as it is; the services validate it into VersionInfo
(registry.reads.entity). What only the entities or the lineage reader know is imported when a
version has it (a signature of its own, a lineage), not at start-up: a plain version's
`show --json` then imports neither the entities nor SQLAlchemy (bench/cli_startup.py)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from registry.dtypes import qlora_variant_label
from registry.formats.paths import SIGNATURE_NAME
from registry.reads.documents import iso_utc
from registry.reads.driver import Driver
from registry.reads.versions import readable_clause, summaries
from registry.refs import ref_or_none


def version_doc(db: Driver, version_id: int, *, readable: Collection[str] | None) -> dict[str, Any]:
    """VersionInfo's JSON document of the version `version_id` (which exists), its lineage's
    parents looked up only in namespaces `readable` (registry.reads.versions.readable_clause)."""
    [summary] = summaries(db, [version_id])
    [(message, config, lineage, fit_override, manifest_text, namespace)] = db.rows(
        "SELECT v.message, CAST(v.config AS TEXT), CAST(v.lineage AS TEXT), "
        "CAST(v.fit_override AS TEXT), CAST(v.manifest AS TEXT), r.namespace "
        "FROM versions v JOIN repositories r ON r.id = v.repository_id WHERE v.id = :id",
        {"id": version_id},
    )
    manifest = _json(manifest_text) or {}
    files = db.rows(
        "SELECT path, size, digest FROM version_files WHERE version_id = :id ORDER BY path",
        {"id": version_id},
    )
    return {
        **summary,
        "message": message,
        "files": [{"path": p, "size": size, "sha256": digest} for p, size, digest in files],
        "config": _json(config),
        "lineage": lineage_view(db, _json(lineage), readable),
        "fit_override": _json(fit_override),
        "qlora_checks": _qlora_checks(db, version_id),
        "training": manifest.get("training"),
        "signatures": _signatures(db, version_id, namespace, manifest.get("signatures", [])),
    }


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def lineage_view(db: Driver, lineage: Any, readable: Collection[str] | None) -> Any:
    """The recorded lineage, each parent that no longer exists (deleted since) marked
    `"deleted": true`; its digest stays as recorded. Computed when read: lineage is immutable.

    Parents are looked up only in namespaces `readable` may read: a parent elsewhere (or one
    recorded without a ref and found in no readable repository) is left as recorded, neither
    deleted nor present, so lineage is no oracle for versions the reader may not see."""
    if not isinstance(lineage, dict):
        return lineage
    from registry.jobspec.lineage import read_lineage, with_deleted

    lin = read_lineage(lineage)
    if lin is None or not lin.parents:  # the parents any document lists, whatever its kind
        return lineage
    found = {p.position: _parent_exists(db, p.digest, p.ref, readable) for p in lin.parents}
    return with_deleted(lineage, {i: not exists for i, exists in found.items() if exists is not None})


def _parent_exists(
    db: Driver, digest: str, ref_text: str | None, readable: Collection[str] | None
) -> bool | None:
    """Whether the version the parent names (its ref's repository and number) still holds its
    digest; a parent recorded without a usable ref: whether some version with its digest exists.
    Only in namespaces `readable`: None when that cannot tell (the ref's repository is not
    readable; no readable version has the digest of a parent without a ref)."""
    params: dict[str, Any] = {"digest": digest}
    sql = "SELECT 1 FROM versions v JOIN repositories r ON r.id = v.repository_id WHERE v.digest = :digest"
    clause = readable_clause(readable, "r.namespace", params)
    if clause:
        sql += " AND " + clause
    ref = ref_or_none(ref_text)
    if ref is None:
        if db.rows(sql + " LIMIT 1", params):
            return True
        return False if readable is None else None
    if readable is not None:
        ns_params: dict[str, Any] = {"parent_ns": ref.repo.namespace}
        ns_clause = readable_clause(readable, ":parent_ns", ns_params)
        if not db.rows(f"SELECT 1 WHERE {ns_clause}", ns_params):
            return None
    sql += " AND r.namespace = :namespace AND r.name = :name"
    params.update(namespace=ref.repo.namespace, name=ref.repo.name)
    if ref.version is not None:
        sql += " AND v.number = :number"
        params["number"] = ref.version
    return bool(db.rows(sql + " LIMIT 1", params))


def _qlora_checks(db: Driver, version_id: int) -> list[dict[str, Any]]:
    """QloraCheckSummary's documents, newest first: a base by its first name (else its
    fingerprint's first 19 characters, else its row id)."""
    rows = db.rows(
        "SELECT q.base_model_id, b.fingerprint, q.quant_type, q.double_quant, q.compute_dtype, "
        "q.verdict, q.created_at, q.job_id, CAST(q.report AS TEXT), "
        "(SELECT MIN(n.name) FROM base_names n WHERE n.base_model_id = q.base_model_id) "
        "FROM qlora_checks q JOIN base_models b ON b.id = q.base_model_id "
        "WHERE q.version_id = :id ORDER BY q.created_at DESC",
        {"id": version_id},
    )
    return [
        {
            "base": name or (fingerprint or f"#{base_id}")[:19],
            "base_fingerprint": fingerprint,
            "variant": qlora_variant_label(quant, bool(double), compute),
            "verdict": verdict,
            "checked_at": iso_utc(created_at),
            "job": job,
            "reasons": list((_json(report) or {}).get("reasons", [])),
        }
        for base_id, fingerprint, quant, double, compute, verdict, created_at, job, report, name in rows
    ]


def _signatures(
    db: Driver, version_id: int, namespace: str, own: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """SignatureInfo's documents: its own model.sig (recorded at push in the manifest) and the
    bundles attached since, oldest first, each marked revoked when the namespace's policy revoked
    its key."""
    revoked = {
        fingerprint
        for (fingerprint,) in db.rows(
            "SELECT fingerprint FROM namespace_trusted_keys "
            "WHERE namespace = :namespace AND revoked_at IS NOT NULL",
            {"namespace": namespace},
        )
    }
    docs = []
    if own:  # as recorded then, through the entity (its defaults fill fields added since)
        from registry.entities import SignatureInfo

        docs = [SignatureInfo(**doc).model_dump(mode="json") for doc in own]
        for doc in docs:
            doc["revoked"] = doc["fingerprint"] in revoked
    for kind, fingerprint, identity, checked, purpose, digest, size, created_by, job_id in db.rows(
        "SELECT signer_kind, fingerprint, identity, checked, purpose, digest, size, created_by, job_id "
        "FROM version_signatures WHERE version_id = :id ORDER BY id",
        {"id": version_id},
    ):
        docs.append(
            {
                "path": SIGNATURE_NAME if purpose == "signature" else "provenance.sigstore.json",
                "kind": kind,
                "fingerprint": fingerprint,
                "identity": identity,
                "checked": bool(checked),
                "attached": True,
                "purpose": purpose,
                "digest": digest,
                "size": size,
                "created_by": created_by,
                "job_id": job_id,
                "revoked": fingerprint in revoked,
            }
        )
    return docs
