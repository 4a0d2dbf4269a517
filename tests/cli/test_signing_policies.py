"""Signing after the push, namespace signing policies and signed provenance (issue 27), with the
real OpenSSF `model-signing` package where interop matters: `adapters sign` attaches a bundle that
`model_signing verify` accepts on a pulled folder and on a snapshot_download, without changing the
version's digest; a namespace that requires signatures refuses unsigned or untrusted pushes and
alias moves (signature_required, nothing stored); a revoked key stops satisfying it; a merge's
provenance verifies offline against the worker's key."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, open_cli
from tests.cli.test_signing import error_code, fingerprint, make_certificate, make_key, sign
from tests.conftest import resource_params
from tests.storage.test_pull_one_write import write_adapter

model_signing = pytest.importorskip("model_signing")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {name: make_key(tmp_path, name) for name in ("alice", "mallory")}


def unsigned(tmp_path: Path, name: str = "plain", n: int = 64) -> Path:
    folder = write_adapter(tmp_path / name, n=n)
    (folder / "README.md").write_text(f"# {name}\n")
    return folder


def ms_verify(folder: Path, public: Path, ignored: tuple[str, ...] = ("model.sig",)) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=list(ignored))
    ).verify(folder, folder / "model.sig")


@pytest.mark.parametrize("mode", resource_params("embedded", "postgresql-file", server=True))
def test_sign_after_push_keeps_digest_and_passes_model_signing(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    private, public = keys["alice"]
    folder = unsigned(tmp_path)
    with open_cli(mode, request, tmp_path) as adapters:
        pushed = adapters.json("push", str(folder), "acme/plain")
        signed = adapters.json("sign", "acme/plain", "--key", str(private))
        assert signed["digest"] == pushed["digest"] and signed["fingerprint"] == fingerprint(public)
        assert signed["attached"] is True and signed["checked"] is True
        shown = adapters.json("show", "acme/plain")
        assert shown["digest"] == pushed["digest"]
        assert "model.sig" not in [f["path"] for f in shown["files"]]
        [sig] = shown["signatures"]
        assert sig["attached"] and sig["fingerprint"] == fingerprint(public)
        assert fingerprint(public) in adapters("show", "acme/plain").stdout
        # pulled (the bare embedded read and the --verify path): model.sig beside the files, accepted by model-signing
        out = tmp_path / "out"
        adapters("pull", "acme/plain", "-o", str(out))
        ms_verify(out, public)
        checked = tmp_path / "checked"
        got = adapters.json("pull", "acme/plain", "-o", str(checked), "--verify", "--trust-key", str(public))
        assert got["verified"]["fingerprint"] == fingerprint(public)
        ms_verify(checked, public)
        # a bundle over other files is refused, nothing attached
        other = unsigned(tmp_path, "other", n=32)
        sign(other, keys["mallory"][0])
        bundle = (other / "model.sig").read_text()
        from registry.client import open_client
        from registry.config import Settings
        from registry.entities import SignRequest
        from registry.errors import SignatureMismatch

        env = adapters.env
        settings = (
            Settings(url=env["ADAPTERS_URL"], token=env["ADAPTERS_TOKEN"])
            if env.get("ADAPTERS_URL")
            else Settings(home=Path(env["ADAPTERS_HOME"]))
        )
        client = open_client(settings)
        with pytest.raises(SignatureMismatch):
            client.sign_version("acme/plain:1", SignRequest(bundle=bundle))
        assert len(adapters.json("show", "acme/plain")["signatures"]) == 1
        # a certificate signs too: its identity is recorded
        key, leaf, _ca = make_certificate(tmp_path)
        by_cert = adapters.json("sign", "acme/plain", "--key", str(key), "--certificate", str(leaf))
        assert by_cert["identity"] == "ml@acme.example" and by_cert["kind"] == "certificate"


@pytest.mark.server
def test_attached_signature_in_snapshot_download(
    request: pytest.FixtureRequest, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    from tests.hub.clients import run_client

    private, public = keys["alice"]
    with open_cli("sqlite-file", request, tmp_path) as adapters:
        adapters("push", str(unsigned(tmp_path)), "acme/plain")
        adapters("sign", "acme/plain", "--key", str(private))
        adapters("namespace", "set", "acme", "--require-signature", "--trust-key", str(public))
        got = run_client(
            adapters.env["ADAPTERS_URL"],
            tmp_path / "hf",
            f"""
            res = {{"snapshot": hf.snapshot_download("acme/plain", local_dir="{tmp_path / "snap"}")}}
            try:
                hf.HfApi().upload_folder(repo_id="acme/unsigned", folder_path="{unsigned(tmp_path, "hub")}")
                res["refused"] = None
            except hf_errors.HfHubHTTPError as err:
                res["refused"] = [err.response.status_code, err.response.headers.get("x-error-message")]
            out(res)
            """,
            HF_TOKEN=adapters.env["ADAPTERS_TOKEN"],
        )
        status, text = got["refused"]  # a Hub commit is refused by the same policy as a push
        assert status == 403 and "signature_required" in text
        assert adapters("show", "acme/unsigned", ok=False).exit_code == 1
    snap = Path(got["snapshot"])
    assert (snap / "model.sig").is_file()
    ms_verify(snap, public, ("model.sig", ".cache"))


def test_policy_refuses_unsigned_and_untrusted(
    embedded: Cli, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    (alice, alice_pub), (mallory, _) = keys["alice"], keys["mallory"]
    bad = embedded("namespace", "set", "acme", "--require-signature", "--json", ok=False)
    assert bad.exit_code == 1 and error_code(bad) == "bad_request"  # no key trusted: no lock-out
    policy = embedded.json("namespace", "set", "acme", "--require-signature", "--trust-key", str(alice_pub))
    assert policy["require_signature"] and policy["trusted_keys"][0]["fingerprint"] == fingerprint(alice_pub)
    plain = unsigned(tmp_path)
    refused = embedded("push", str(plain), "acme/plain", "--json", ok=False)
    assert refused.exit_code == 1 and error_code(refused) == "signature_required"
    by_mallory = unsigned(tmp_path, "mallory")
    sign(by_mallory, mallory)
    refused = embedded("push", str(by_mallory), "acme/m", "--json", ok=False)
    assert error_code(refused) == "signature_required"
    assert embedded.json("list")["items"] == []  # nothing stored
    by_alice = unsigned(tmp_path, "alice")
    sign(by_alice, alice)
    embedded("push", str(by_alice), "acme/a")  # checked with the trusted key, not only its hint
    embedded("push", str(plain), "other/plain")  # other namespaces are not concerned
    events = embedded.json("audit")["items"]
    assert any(e["action"] == "namespace.policy" and e["namespace"] == "acme" for e in events)


def test_signed_aliases_and_revocation(
    embedded: Cli, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    alice, alice_pub = keys["alice"]
    mallory, mallory_pub = keys["mallory"]
    embedded("push", str(unsigned(tmp_path)), "acme/plain")
    embedded("namespace", "set", "acme", "--signed-aliases", "production", "--trust-key", str(alice_pub))
    embedded("alias", "set", "acme/plain:1", "staging")  # not restricted
    refused = embedded("alias", "set", "acme/plain:1", "production", "--json", ok=False)
    assert error_code(refused) == "signature_required"
    embedded("sign", "acme/plain", "--key", str(mallory))  # signed, by a key acme does not trust
    refused = embedded("alias", "set", "acme/plain:1", "production", "--json", ok=False)
    assert error_code(refused) == "signature_required"
    embedded("sign", "acme/plain", "--key", str(alice))
    embedded("alias", "set", "acme/plain:1", "production")
    assert embedded.json("show", "acme/plain@production")["version"] == 1
    # a push that moves a restricted alias must carry a trusted signature too
    v2 = unsigned(tmp_path, "v2", n=32)
    refused = embedded("push", str(v2), "acme/plain", "--alias", "production", "--json", ok=False)
    assert error_code(refused) == "signature_required"
    # revoked: from then on its signatures satisfy nothing, and the versions say so
    shown = embedded.json("namespace", "set", "acme", "--revoke-key", str(alice_pub))
    assert shown["trusted_keys"][0]["revoked_at"] is not None
    refused = embedded("alias", "set", "acme/plain:1", "production", "--json", ok=False)
    assert error_code(refused) == "signature_required"
    sigs = embedded.json("show", "acme/plain:1")["signatures"]
    assert [s["revoked"] for s in sigs if s["fingerprint"] == fingerprint(alice_pub)] == [True]
    again = embedded("namespace", "set", "acme", "--trust-key", str(alice_pub), "--json", ok=False)
    assert error_code(again) == "bad_request"
    assert "namespace.policy" in [e["action"] for e in embedded.json("audit")["items"]]
    assert "version.sign" in [e["action"] for e in embedded.json("audit")["items"]]
    assert mallory_pub.exists()


def test_server_swap_caught_with_attached_signature(
    embedded: Cli, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """Signed after the push: a swapped blob and digest still fails `pull --verify`."""
    private, public = keys["alice"]
    folder = unsigned(tmp_path)
    embedded("push", str(folder), "acme/plain")
    embedded("sign", "acme/plain", "--key", str(private))
    home = Path(embedded.env["ADAPTERS_HOME"])
    evil = b"# swapped\n"
    digest = "sha256:" + hashlib.sha256(evil).hexdigest()
    old = hashlib.sha256((folder / "README.md").read_bytes()).hexdigest()
    blob = next((home / "blobs").rglob(old))
    target = blob.parent.parent / digest[7:9] / digest[7:]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(evil)
    with sqlite3.connect(home / "registry.db") as db:
        db.execute(
            "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, '2020-01-01')", (digest, len(evil))
        )
        db.execute(
            "UPDATE version_files SET digest = ?, size = ? WHERE path = 'README.md'", (digest, len(evil))
        )
    out = tmp_path / "out"
    bad = embedded(
        "pull", "acme/plain", "-o", str(out), "--verify", "--trust-key", str(public), "--json", ok=False
    )
    assert error_code(bad) == "signature_mismatch" and not out.exists()


def test_gc_keeps_attached_signatures(
    embedded: Cli, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    embedded("push", str(unsigned(tmp_path)), "acme/plain")
    sig = embedded.json("sign", "acme/plain", "--key", str(keys["alice"][0]))
    report = embedded.json("gc", "--grace", "0")
    assert sig["digest"] not in report["digests"]
    out = tmp_path / "out"
    embedded("pull", "acme/plain", "-o", str(out))
    assert json.loads((out / "model.sig").read_text())["dsseEnvelope"]


def test_merge_provenance_verified_offline(embedded: Cli, adapters_dir: Path, tmp_path: Path) -> None:
    """A merge's output carries the worker's provenance (job, inputs by digest, libraries) and a
    model-signing signature by the same key; both check offline against `adapters worker key`."""
    pytest.importorskip("torch")
    worker_pub = tmp_path / "worker.pub"
    worker_pub.write_text(embedded("worker", "key").stdout)
    other_pub = make_key(tmp_path, "other")[1]
    embedded("base", "add", "--config", str(adapters_dir / "base" / "config.json"), "--name", "tiny-llama")
    a = embedded.json("push", str(adapters_dir / "lora_a"), "acme/legal", "--base", "tiny-llama")
    b = embedded.json("push", str(adapters_dir / "lora_b"), "acme/medical", "--base", "tiny-llama")
    embedded("merge", "acme/legal=0.7", "acme/medical=0.3", "--into", "acme/mix", "--method", "cat")
    got = embedded.json("verify", "--provenance", "acme/mix", "--trust-key", str(worker_pub))
    assert got["build_type"] == "https://adapter-registry.dev/jobs/merge@v1"
    assert {d["digest"]["sha256"] for d in got["inputs"]} >= {a["digest"][7:], b["digest"][7:]}
    assert "torch" in got["builder"]["version"] and got["parameters"]["method"] == "cat"
    bad = embedded("verify", "--provenance", "acme/mix", "--trust-key", str(other_pub), "--json", ok=False)
    assert error_code(bad) == "untrusted_signature"
    out = tmp_path / "mix"
    embedded("pull", "acme/mix", "-o", str(out), "--verify", "--trust-key", str(worker_pub))
    ms_verify(out, worker_pub)
    # the statement is about this content: edit the version's files in the database, it fails
    home = Path(embedded.env["ADAPTERS_HOME"])
    with sqlite3.connect(home / "registry.db") as db:
        db.execute(
            "DELETE FROM version_files WHERE path = 'README.md' AND version_id = "
            "(SELECT v.id FROM versions v JOIN repositories r ON r.id = v.repository_id WHERE r.name = 'mix')"
        )
    bad = embedded("verify", "--provenance", "acme/mix", "--trust-key", str(worker_pub), "--json", ok=False)
    assert error_code(bad) == "invalid_signature"
