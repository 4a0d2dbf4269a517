"""Push and pull a safetensors adapter (512 MiB by default) next to anchors measured in the same run.

    python bench/push_pull.py [--size-mib 512] [--backends file,s3]

Each step runs as its own process (the real `adapters` CLI, embedded mode) so its peak RSS is its
own. Anchors, on the same file, disk and S3 endpoint:
- file: `cp FILE DST && openssl dgst -sha256 DST` (OpenSSL hashes as fast as Python's hashlib;
  coreutils' `sha256sum`, printed beside it, is several times slower and would flatter us); and for
  push, which must fsync what it stores (a committed version must survive a power cut), also
  `cp` + `sync DST` + `openssl`, the same work made as durable;
- S3: the minio SDK's own `fput_object` / `fget_object` of the file (its default part size and
  parallelism) plus `hashlib.sha256` of it: what a plain SDK script needs to move the bytes and
  know their digest.
Each row gives the ratio to its anchor of the whole commands, and a "net ratio" where each side is
less its own start-up, measured in the same run: ours is `adapters show --json` of a tiny version
on the same registry for a push (which goes through the ORM), `adapters list --json` for a pull
(which, like a pull of the embedded registry, reads through sqlite3); the SDK's is the script's
Python + minio import and client; the file anchor's, `cp` and `openssl` of an empty file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/push_pull.py`
    sys.path.insert(0, str(ROOT))

from bench.lora_file import n_for_mib, write_lora  # noqa: E402

MIB = 1024 * 1024


def write_adapter(folder: Path, size_mib: int) -> Path:
    """A LoRA adapter whose single q_proj pair totals size_mib MiB, written in 8 MiB chunks."""
    folder.mkdir(parents=True)
    return write_lora(folder, r=16, n=n_for_mib(size_mib), lora_alpha=32)


def peak_rss(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd` under a tiny wrapper that reports its own child's peak RSS."""
    wrapper = (
        "import resource,subprocess,sys,time;t=time.perf_counter();"
        "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], check=True, env=env, text=True, stdout=subprocess.PIPE
    ).stdout.split()
    return float(out[0]), float(out[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    from minio import Minio

    Minio(f"127.0.0.1:{port}", "test", "test", secure=False, region="us-east-1").make_bucket("bench")
    return proc, f"127.0.0.1:{port}"


SDK_PUSH = """
import hashlib, sys
from minio import Minio
endpoint, path = sys.argv[1:3]
client = Minio(endpoint, "test", "test", secure=False, region="us-east-1")
client.fput_object("bench", "anchor/blob", path)
h = hashlib.sha256()
with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
        h.update(chunk)
"""
SDK_START = """
import hashlib
from minio import Minio
Minio("127.0.0.1:9", "test", "test", secure=False, region="us-east-1")
"""
SDK_PULL = SDK_PUSH.replace(
    'client.fput_object("bench", "anchor/blob", path)', 'client.fget_object("bench", "anchor/blob", path)'
)


def row(
    size_mb: float,
    step: str,
    t: float,
    anchor_name: str,
    t_anchor: float,
    rss: float,
    starts: tuple[float, float],
) -> None:
    """One step next to its anchor: MB/s and their ratio whole, then the same ratio with each side
    less its own start-up (`starts`: ours, the anchor's), moving the same bytes."""
    mbps, anchor = size_mb / t, size_mb / t_anchor
    net = (size_mb / (t - starts[0])) / (size_mb / (t_anchor - starts[1]))
    print(
        f"{step:<22}{mbps:>7.0f}  {anchor_name:<20}{anchor:>7.0f}{mbps / anchor:>8.2f}{net:>12.2f}{rss:>9.0f}"
    )


def median_of_3(cmd: list[str], env: dict[str, str]) -> float:
    return sorted(peak_rss(cmd, env)[0] for _ in range(3))[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--backends", default="file,s3")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-push-pull-", dir=os.environ.get("BENCH_DIR")))
    try:
        src = write_adapter(work / "adapter", args.size_mib)
        size_mb = src.stat().st_size / 1e6
        show = partial(row, size_mb)
        env0 = dict(os.environ)
        copy = str(work / "copy.safetensors")
        t_cp, rss_cp = peak_rss(["cp", str(src), copy], env0)
        t_sync, _ = peak_rss(["sync", copy], env0)  # coreutils: fsync this one file
        t_ossl, rss_ossl = peak_rss(["openssl", "dgst", "-sha256", copy], env0)
        t_sha, rss_sha = peak_rss(["sha256sum", copy], env0)
        (work / "copy.safetensors").unlink()
        # Each anchor's own start-up, as ours is measured: the same programs on an empty file.
        empty = work / "empty"
        empty.touch()
        ossl_start = median_of_3(["cp", str(empty), str(work / "empty2")], env0) + median_of_3(
            ["openssl", "dgst", "-sha256", str(empty)], env0
        )
        sha_start = ossl_start - median_of_3(["openssl", "dgst", "-sha256", str(empty)], env0)
        sha_start += median_of_3(["sha256sum", str(empty)], env0)
        print(f"file: {size_mb:.0f} MB safetensors adapter; load average {os.getloadavg()[0]:.1f}")
        print(
            f"{'step':<22}{'MB/s':>7}  {'anchor':<20}{'MB/s':>7}{'ratio':>8}{'net ratio':>12}{'RSS MiB':>9}"
        )
        print("(net ratio: both sides less their own start-up, measured in this run)")
        anchor_file = ("cp + openssl dgst", t_cp + t_ossl, ossl_start)
        show("cp + openssl dgst", t_cp + t_ossl, *anchor_file[:2], max(rss_cp, rss_ossl), (ossl_start,) * 2)
        show("cp + sha256sum", t_cp + t_sha, *anchor_file[:2], max(rss_cp, rss_sha), (sha_start, ossl_start))
        # A registry must not lose a blob it has committed: a push fsyncs what it stores, which
        # `cp` does not. This anchor does the same (`sync FILE` fsyncs that file).
        durable = ("cp + sync + openssl", t_cp + t_sync + t_ossl, ossl_start)
        show("cp + sync + openssl", durable[1], *anchor_file[:2], max(rss_cp, rss_ossl), (ossl_start,) * 2)
        cli = [sys.executable, "-m", "cli.main"]
        for backend in args.backends.split(","):
            env = dict(os.environ, ADAPTERS_HOME=str(work / f"home-{backend}"))
            moto = None
            anchors = {"push": anchor_file, "pull": anchor_file}
            sdk_rss = []
            if backend == "s3":
                moto, endpoint = start_moto()
                env.update(
                    ADAPTERS_BLOB_URL="s3://bench/blobs",
                    ADAPTERS_S3_ENDPOINT=endpoint,
                    ADAPTERS_S3_ACCESS_KEY="test",
                    ADAPTERS_S3_SECRET_KEY="test",
                    ADAPTERS_S3_REGION="us-east-1",
                    ADAPTERS_S3_SECURE="false",
                )
            try:
                if moto is not None:
                    t_up, rss_up = peak_rss([sys.executable, "-c", SDK_PUSH, endpoint, str(src)], env0)
                    t_down, rss_down = peak_rss([sys.executable, "-c", SDK_PULL, endpoint, copy], env0)
                    os.unlink(copy)
                    # The SDK script's start-up: Python, minio and hashlib imported, a client made.
                    sdk_start = median_of_3([sys.executable, "-c", SDK_START], env0)
                    anchors = {
                        "push": ("SDK fput + sha256", t_up, sdk_start),
                        "pull": ("SDK fget + sha256", t_down, sdk_start),
                    }
                    sdk_rss = [rss_up, rss_down]
                subprocess.run([*cli, "db", "upgrade"], check=True, env=env, stdout=subprocess.DEVNULL)
                # What push and pull pay before moving a byte (start-up, settings, the database, the
                # store): `adapters show --json` of a tiny version on the same registry, the median
                # of three. (Not `list`: on the embedded default it skips the ORM, which they need.)
                tiny = work / f"tiny-{backend}"
                write_adapter(tiny, 1)
                subprocess.run(
                    [*cli, "push", str(tiny), "bench/tiny"], check=True, env=env, stdout=subprocess.DEVNULL
                )
                t_start = median_of_3([*cli, "show", "bench/tiny", "--json"], env)
                # A pull of the embedded registry reads on a bare sqlite3 connection (registry.client.reads):
                # its start-up is that of `adapters list --json`, which reads the same way.
                t_quick = median_of_3([*cli, "list", "--json"], env)
                t_push, rss_push = peak_rss([*cli, "push", str(work / "adapter"), "bench/big"], env)
                out = work / f"pulled-{backend}"
                t_pull, rss_pull = peak_rss([*cli, "pull", "bench/big", "-o", str(out)], env)
                shutil.rmtree(out)
                shutil.rmtree(work / f"home-{backend}", ignore_errors=True)
            finally:
                if moto is not None:
                    moto.terminate()
                    moto.wait()
            for (step, anchor), rss in zip(anchors.items(), sdk_rss, strict=False):
                show(
                    f"{backend} {step}: anchor", anchor[1], anchor[0], anchor[1], rss, (anchor[2], anchor[2])
                )
            for step, t, rss in (("push", t_push, rss_push), ("pull", t_pull, rss_pull)):
                name, t_anchor, anchor_start = anchors[step]
                ours = t_start if step == "push" else t_quick
                show(f"{backend} {step}", t, name, t_anchor, rss, (ours, anchor_start))
                if backend == "file" and step == "push":
                    show("file push (durable)", t, durable[0], durable[1], rss, (t_start, durable[2]))
            print(
                f"({backend}: our start-up {t_start:.2f} s (push), {t_quick:.2f} s (pull), "
                f"the anchor's {anchors['push'][2]:.2f} s)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
