"""What verifying a signed adapter costs, next to hashing it alone (issue 27).

    python bench/signing.py [--size-mib 1024] [--dir /tmp]

Writes an adapter folder (one safetensors file of SIZE MiB, its adapter_config.json, a README)
signed with model-signing's format (registry/formats/signing.py, a P-256 key), page-cache warm,
then times, best of --repeat runs each:
- `sha256sum FILE` (coreutils) and `openssl dgst -sha256 FILE`: the hash alone, the anchors;
- `verify_folder` (what `adapters verify DIR` and a pulled folder's check run: every file hashed
  with one reused buffer, the statement's signature checked with the trusted key, files matched);
- `model_signing verify` through the package's API, when it is installed (the reference).
The target (issue 27): verification at most 1.2x `sha256sum` of the same bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 1024 * 1024


def write_adapter(folder: Path, size_mib: int) -> None:
    """One F32 tensor of size_mib MiB in a safetensors file, written in 8 MiB chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    n = size_mib * MIB // 4
    header = json.dumps(
        {
            "base_model.model.layers.0.self_attn.q_proj.lora_A.weight": {
                "dtype": "F32",
                "shape": [n // 64, 64],
                "data_offsets": [0, n * 4],
            }
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    chunk = bytes(range(256)) * (8 * MIB // 256)
    with open(folder / "adapter_model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left = n * 4
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "README.md").write_text("# bench\n")


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from registry.client.verify import verify_folder
    from registry.formats.signing import files_statement, sign_statement
    from storage.base import sha256_file

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the folder (default: a temp dir)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench-signing-"))
    try:
        folder = root / "adapter"
        write_adapter(folder, args.size_mib)
        key = ec.generate_private_key(ec.SECP256R1())
        public = root / "key.pub"
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        from registry.formats.manifest import FileEntry

        entries = []
        for p in sorted(folder.iterdir()):
            info = sha256_file(str(p))
            entries.append(FileEntry(p.name, info.size, info.digest))
        (folder / "model.sig").write_bytes(sign_statement(files_statement(entries, "adapter"), key))
        pub = serialization.load_pem_public_key(public.read_bytes())
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        weights = str(folder / "adapter_model.safetensors")
        subprocess.run(["cat", weights], stdout=subprocess.DEVNULL, check=True)  # page cache warm
        rows: list[tuple[str, float]] = []
        rows.append(
            (
                "sha256sum (coreutils)",
                best(
                    lambda: subprocess.run(["sha256sum", weights], capture_output=True, check=True),
                    args.repeat,
                ),
            )
        )
        if shutil.which("openssl"):
            rows.append(
                (
                    "openssl dgst -sha256",
                    best(
                        lambda: subprocess.run(
                            ["openssl", "dgst", "-sha256", weights], capture_output=True, check=True
                        ),
                        args.repeat,
                    ),
                )
            )
        rows.append(("adapters verify (in process)", best(lambda: verify_folder(folder, [pub]), args.repeat)))
        rows.append(
            (
                "adapters verify DIR (CLI process)",
                best(
                    lambda: subprocess.run(
                        [sys.executable, "-m", "cli.main", "verify", str(folder), "--trust-key", str(public)],
                        capture_output=True,
                        check=True,
                        cwd=Path(__file__).resolve().parent.parent,
                    ),
                    args.repeat,
                ),
            )
        )
        try:
            import model_signing

            def reference() -> None:
                model_signing.verifying.Config().use_elliptic_key_verifier(
                    public_key=public
                ).set_hashing_config(
                    model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])
                ).verify(folder, folder / "model.sig")

            rows.append(("model_signing verify (API)", best(reference, args.repeat)))
        except ImportError:
            pass
        anchor = rows[0][1]
        size = args.size_mib * MIB
        print(f"{args.size_mib} MiB adapter, best of {args.repeat}, page cache warm")
        print(f"{'':36} {'seconds':>8} {'MB/s':>8} {'x sha256sum':>12}")
        for name, secs in rows:
            print(f"{name:36} {secs:8.3f} {size / secs / 1e6:8.0f} {secs / anchor:12.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
