"""Signed versions (issue 27) with the real OpenSSF `model-signing` package: a folder it signs pushes
as it is and its signer is recorded; a signature that does not match the files is refused with its
own code and nothing is stored; `pull --verify` and `verify DIR` check against keys trusted here,
so a server that swaps a blob and its digest together is caught; a pulled folder passes
`model_signing verify`."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.formats.signing import key_fingerprint
from tests.cli.conftest import Cli, open_cli
from tests.conftest import resource_params
from tests.storage.test_pull_one_write import write_adapter

pytestmark = pytest.mark.server

model_signing = pytest.importorskip("model_signing")


def make_key(folder: Path, name: str) -> tuple[Path, Path]:
    """A P-256 key pair as PEM files (what `openssl ecparam -genkey` writes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def beside() -> object:
    """What model-signing's CLI hashes with when the signature lies in the folder: it ignored."""
    return model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])


def sign(folder: Path, private: Path) -> Path:
    """`model_signing sign key FOLDER --private_key KEY --signature FOLDER/model.sig`."""
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private).set_hashing_config(
        beside()
    ).sign(folder, folder / "model.sig")
    return folder / "model.sig"


def fingerprint(public: Path) -> str:
    key = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key_fingerprint(key)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {name: make_key(tmp_path, name) for name in ("alice", "mallory")}


@pytest.fixture
def signed(tmp_path: Path, keys: dict[str, tuple[Path, Path]]) -> Path:
    folder = write_adapter(tmp_path / "signed", n=64)
    (folder / "README.md").write_text("# a signed adapter\n")
    sign(folder, keys["alice"][0])
    return folder


def error_code(result: Result) -> str:
    return str(json.loads(result.stdout)["error"]["code"])


def message(result: Result) -> str:
    return str(json.loads(result.stdout)["error"]["message"])


@pytest.mark.parametrize("mode", resource_params("embedded", "postgresql-file", server=True))
def test_signed_folder_pushes_and_records_signer(
    mode: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    signed: Path,
    keys: dict[str, tuple[Path, Path]],
) -> None:
    private, public = keys["alice"]
    with open_cli(mode, request, tmp_path) as adapters:
        pushed = adapters.json("push", str(signed), "acme/signed")
        assert "model.sig" in [f["path"] for f in pushed["info"]["files"]]
        [sig] = pushed["info"]["signatures"]
        assert sig["fingerprint"] == fingerprint(public) and sig["kind"] == "key"
        assert sig["checked"] is False  # a key bundle names its key only by fingerprint
        checked = adapters.json("push", str(signed), "acme/checked", "--signer-key", str(public))
        assert checked["info"]["signatures"][0]["checked"] is True
        shown = adapters("show", "acme/checked")
        assert fingerprint(public) in shown.stdout and "signature checked by the server" in shown.stdout
        # Without the key, the signer is a claim, and show says so.
        assert "UNVERIFIED signer" in adapters("show", "acme/signed").stdout
        # the wrong key sent with the push is refused, nothing stored
        wrong = adapters(
            "push", str(signed), "acme/wrong", "--signer-key", str(keys["mallory"][1]), "--json", ok=False
        )
        assert wrong.exit_code == 1 and error_code(wrong) == "invalid_signature"
        assert adapters("show", "acme/wrong", ok=False).exit_code == 1

        out = tmp_path / "pulled"
        got = adapters.json("pull", "acme/signed", "-o", str(out), "--verify", "--trust-key", str(public))
        assert got["verified"]["fingerprint"] == fingerprint(public)
        # what the registry serves, the reference implementation accepts
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).set_hashing_config(
            beside()
        ).verify(out, out / "model.sig")
        assert adapters.json("verify", str(out), "--trust-key", str(public))["fingerprint"] == fingerprint(
            public
        )
        untrusted = adapters(
            "pull", "acme/signed", "-o", str(tmp_path / "no"), "--verify",
            "--trust-key", str(keys["mallory"][1]), "--json", ok=False,
        )  # fmt: skip
        assert error_code(untrusted) == "untrusted_signature" and not (tmp_path / "no").exists()


def test_tampered_file_refused(embedded: Cli, signed: Path, tmp_path: Path) -> None:
    (signed / "README.md").write_text("# changed after signing\n")
    bad = embedded("push", str(signed), "acme/x", "--json", ok=False)
    assert bad.exit_code == 1 and error_code(bad) == "signature_mismatch"
    assert "changed: README.md" in message(bad)
    assert embedded.json("list")["items"] == []


def test_tampered_signature_refused(embedded: Cli, signed: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    public = keys["alice"][1]
    bundle = json.loads((signed / "model.sig").read_text())
    envelope = bundle["dsseEnvelope"]
    raw = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    raw[-1] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    (signed / "model.sig").write_text(json.dumps(bundle))
    bad = embedded("push", str(signed), "acme/x", "--signer-key", str(public), "--json", ok=False)
    assert error_code(bad) == "invalid_signature"
    # a statement rewritten to match edited files, the signature left as it was
    sign(signed, keys["alice"][0])
    bundle = json.loads((signed / "model.sig").read_text())
    (signed / "README.md").write_text("# swapped\n")
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    new_digest = hashlib.sha256(b"# swapped\n").hexdigest()
    root = hashlib.sha256()
    for res in statement["predicate"]["resources"]:
        if res["name"] == "README.md":
            res["digest"] = new_digest
        root.update(bytes.fromhex(res["digest"]))
    statement["subject"][0]["digest"]["sha256"] = root.hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (signed / "model.sig").write_text(json.dumps(bundle))
    bad = embedded("push", str(signed), "acme/x", "--signer-key", str(public), "--json", ok=False)
    assert error_code(bad) == "invalid_signature"
    assert embedded.json("list")["items"] == []
    # without the key the push is taken, but a client that trusts the key refuses it
    embedded("push", str(signed), "acme/x")
    bad = embedded("verify", str(signed), "--trust-key", str(public), "--json", ok=False)
    assert error_code(bad) == "invalid_signature"


def test_signature_over_other_files_refused(
    embedded: Cli, signed: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    (signed / "notes.md").write_text("added after signing\n")
    bad = embedded("push", str(signed), "acme/x", "--json", ok=False)
    assert error_code(bad) == "signature_mismatch"
    assert "not signed: notes.md" in message(bad)
    (signed / "notes.md").unlink()
    (signed / "extra.md").write_text("signed, then removed\n")
    sign(signed, keys["alice"][0])
    (signed / "extra.md").unlink()
    bad = embedded("push", str(signed), "acme/x", "--json", ok=False)
    assert "signed but absent: extra.md" in message(bad)
    assert embedded.json("list")["items"] == []


def test_server_refuses_mismatch_it_is_sent(
    request: pytest.FixtureRequest, tmp_path: Path, signed: Path
) -> None:
    """The server checks on its own: a client that skips the local check gets the same refusal."""
    from registry.client.transfer import upload_missing
    from registry.entities import FileInfo, PushRequest
    from registry.errors import SignatureMismatch
    from registry.formats.folder import hash_folder, list_folder

    (signed / "README.md").write_text("# changed after signing\n")
    with open_cli("sqlite-file", request, tmp_path) as adapters:
        from registry.client import open_client
        from registry.config import Settings

        client = open_client(Settings(url=adapters.env["ADAPTERS_URL"], token=adapters.env["ADAPTERS_TOKEN"]))
        files = list_folder(signed)
        entries = hash_folder(files)
        upload_missing(client, entries, dict(files), None)
        req = PushRequest(files=[FileInfo(path=e.path, size=e.size, sha256=e.sha256) for e in entries])
        with pytest.raises(SignatureMismatch) as err:
            client.commit("acme/x", req)
        assert err.value.changed == ["README.md"]
        assert adapters.json("list")["items"] == []


def test_pull_verify_catches_swapped_blob_and_digest(
    embedded: Cli, signed: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """A server that controls its database and its store swaps a file's bytes and its digest
    together: every per-file check passes, the signature does not."""
    public = keys["alice"][1]
    embedded("push", str(signed), "acme/signed")
    home = Path(embedded.env["ADAPTERS_HOME"])
    evil = b"# nothing to see here\n"
    digest = "sha256:" + hashlib.sha256(evil).hexdigest()
    blob = next((home / "blobs").rglob(hashlib.sha256((signed / "README.md").read_bytes()).hexdigest()))
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
    out = tmp_path / "verified"
    bad = embedded(
        "pull", "acme/signed", "-o", str(out), "--verify", "--trust-key", str(public), "--json", ok=False
    )
    assert error_code(bad) == "signature_mismatch" and not out.exists()
    assert "changed: README.md" in message(bad)
    plain = tmp_path / "plain"  # without --verify the lie goes through: each file matches its digest
    embedded("pull", "acme/signed", "-o", str(plain))
    assert (plain / "README.md").read_bytes() == evil
    bad = embedded("verify", str(plain), "--trust-key", str(public), "--json", ok=False)
    assert error_code(bad) == "signature_mismatch"


def test_verify_needs_a_trusted_key(embedded: Cli, signed: Path) -> None:
    bad = embedded("verify", str(signed), "--json", ok=False)
    assert bad.exit_code == 1 and error_code(bad) == "bad_request"


def test_hub_upload_of_signed_folder(
    request: pytest.FixtureRequest, tmp_path: Path, signed: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """huggingface_hub's upload_folder ends in the same commit: a signed folder is taken and its
    signer recorded, a tampered one refused with the code in X-Error-Code, and a snapshot_download
    passes `model_signing verify`."""
    from tests.hub.clients import run_client

    public = keys["alice"][1]
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for p in signed.iterdir():
        (tampered / p.name).write_bytes(p.read_bytes())
    (tampered / "README.md").write_text("# changed after signing\n")
    with open_cli("sqlite-file", request, tmp_path) as adapters:
        got = run_client(
            adapters.env["ADAPTERS_URL"],
            tmp_path / "hf",
            f"""
            api = hf.HfApi()
            res = {{}}
            api.upload_folder(repo_id="acme/signed", folder_path="{signed}", repo_type="model")
            res["snapshot"] = hf.snapshot_download("acme/signed", local_dir="{tmp_path / "snap"}")
            try:
                api.upload_folder(repo_id="acme/tampered", folder_path="{tampered}")
                res["tampered"] = None
            except hf_errors.HfHubHTTPError as err:
                res["tampered"] = [err.response.status_code, err.response.headers.get("x-error-code"),
                                   err.response.headers.get("x-error-message")]
            out(res)
            """,
            HF_TOKEN=adapters.env["ADAPTERS_TOKEN"],
        )
        status, code, text = got["tampered"]  # the Hub's CamelCase code; the registry's leads the message
        assert (status, code) == (422, "SignatureMismatch") and "signature_mismatch" in text
        assert adapters("show", "acme/tampered", ok=False).exit_code == 1
        [sig] = adapters.json("show", "acme/signed")["signatures"]
        assert sig["fingerprint"] == fingerprint(public)
    snap = Path(got["snapshot"])  # local_dir keeps huggingface_hub's own .cache/ beside the files:
    ignored = ["model.sig", ".cache"]  # `model_signing verify ... --ignore-paths .cache`
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=ignored)
    ).verify(snap, snap / "model.sig")


def make_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a code-signing leaf for ml@acme.example (P-256): key, leaf, CA as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme ml team")]))
        .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("ml@acme.example")]), critical=False)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "leaf.key", folder / "leaf.pem", folder / "ca.pem"
    paths[0].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def test_certificate_signed_folder(embedded: Cli, tmp_path: Path) -> None:
    """`model_signing sign certificate`: the server checks the signature with the certificate the
    bundle carries and records its identity; a client trusting the certificate verifies the pull."""
    key, leaf, ca = make_certificate(tmp_path)
    folder = write_adapter(tmp_path / "cert-signed", n=64)
    model_signing.signing.Config().use_certificate_signer(
        private_key=key, signing_certificate=leaf, certificate_chain=[ca]
    ).set_hashing_config(beside()).sign(folder, folder / "model.sig")
    [sig] = embedded.json("push", str(folder), "acme/cert")["info"]["signatures"]
    assert (sig["kind"], sig["identity"], sig["checked"]) == ("certificate", "ml@acme.example", True)
    assert "certificate ml@acme.example" in embedded("show", "acme/cert").stdout
    out = tmp_path / "pulled"
    embedded("pull", "acme/cert", "-o", str(out), "--verify", "--trust-key", str(leaf))
    model_signing.verifying.Config().use_certificate_verifier(certificate_chain=[ca]).set_hashing_config(
        beside()
    ).verify(out, out / "model.sig")


def test_sync_and_the_vllm_resolver_load_only_what_they_trust(
    embedded: Cli, signed: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """A serving fleet's trust policy: `sync --verify` writes and names a version only once its
    signature checks against the keys trusted here; a name whose new version does not (unsigned,
    or signed by someone else) stays on the version it had, and the pass says why. The vLLM
    resolver with trusted keys refuses the same versions (None: vLLM answers 404)."""
    from registry.client import open_client
    from registry.client.verify import trusted_keys
    from registry.config import Settings
    from registry.integrations.vllm import Resolver

    public = keys["alice"][1]

    def variant(name: str, readme: str, signer: str | None) -> Path:
        """The signed adapter made for the served base 'tiny', with another README, signed by `signer`."""
        folder = tmp_path / name
        folder.mkdir()
        for f in signed.iterdir():
            if f.name != "model.sig":
                (folder / f.name).write_bytes(f.read_bytes())
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "tiny"}))
        (folder / "README.md").write_text(readme)
        if signer is not None:
            sign(folder, keys[signer][0])
        return folder

    embedded(
        "push", str(variant("first", "# a signed adapter\n", "alice")), "acme/fleet", "--alias", "production"
    )
    fleet = tmp_path / "fleet"
    sync = ("sync", str(fleet), "--repo", "acme/fleet", "--alias", "production", "--verify")
    first = embedded.json(*sync, "--trust-key", str(public))
    assert [e["action"] for e in first["entries"]] == ["created"] and first["skipped"] == []
    assert (fleet / "acme/fleet@production" / "model.sig").is_file()
    # production moves to a version signed by mallory, then to an unsigned one: the name stays.
    embedded("push", str(variant("second", "# changed\n", "mallory")), "acme/fleet", "--alias", "production")
    moved = embedded.json(*sync, "--trust-key", str(public))
    assert [e["action"] for e in moved["entries"]] == []
    [skip] = moved["skipped"]
    assert skip["name"] == "acme/fleet@production" and skip["reason"].startswith("untrusted_signature")
    assert (fleet / "acme/fleet@production" / "README.md").read_text() == "# a signed adapter\n"
    embedded("push", str(variant("third", "# unsigned\n", None)), "acme/fleet", "--alias", "production")
    [skip] = embedded.json(*sync, "--trust-key", str(public))["skipped"]
    assert "no model.sig" in skip["reason"]
    assert embedded("sync", str(fleet), "--verify", "--json", ok=False).exit_code == 1  # nothing trusted
    # Trusting mallory too, the signed move goes through; the unsigned version never does.
    both = embedded.json(*sync, "--trust-key", str(public), "--trust-key", str(keys["mallory"][1]))
    assert both["skipped"][0]["name"] == "acme/fleet@production"

    settings = Settings(home=Path(embedded.env["ADAPTERS_HOME"]))
    trusting = Resolver(settings, tmp_path / "vllm", "tiny", tuple(trusted_keys([public])))
    trusting._client = open_client(settings)
    assert trusting.resolve("tiny", "acme/fleet:1") is not None  # alice's version
    assert trusting.resolve("tiny", "acme/fleet:2") is None  # mallory's
    assert trusting.resolve("tiny", "acme/fleet@production") is None  # unsigned
