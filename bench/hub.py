"""The Hugging Face Hub endpoint under load: one big download, then a cold fleet.

    python bench/hub.py [--size-mib 1024] [--clients 64] [--xet-mib 512] [--only-xet]

1. `snapshot_download` (huggingface_hub, HF_ENDPOINT at the server) of a SIZE MiB adapter, next to
   `cp FILE DST && sha256sum DST` of the same file in the same run on the same disk (the anchor;
   the client also writes and hashes every byte). Goal: ratio >= 0.5.
2. CLIENTS processes (a serving fleet starting cold: each its own empty HF_HOME) run
   `snapshot_download` of a small adapter at once: HTTP requests per second (the server's access
   log), p50/p99 latency of one whole snapshot_download, errors (client failures + non-2xx/3xx).
   Goal: zero errors.
3. Xet deduplication (`--xet-mib`, default 512): `upload_folder` through hf_xet (the default
   install) of an adapter of that size, timed next to `cp` of the file; then 1% of its tensor
   bytes changed in 16 places and uploaded again from an empty client cache (HF_HOME, hence
   HF_XET_CACHE, removed between the uploads, so what deduplicates is the server's answer). The
   bytes are the server's own count on the CAS routes (adapters_http_request_body_bytes).
   Goal: the second upload sends <= 10% of the first's bytes. `--only-xet` runs this part alone.
Peak server RSS (VmHWM of the `adapters serve` process, read before it stops): goal < 300 MB.

The server is `adapters serve --no-worker` (SQLite + file store in a temp ADAPTERS_HOME), a
subprocess on loopback; the registry is seeded embedded before it starts (push, an admin, a token).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lora_file import data_bytes, file_digests, seeded, write_lora  # noqa: E402
from bench.push_pull import write_adapter  # noqa: E402
from bench.serve import peak_rss_mib  # noqa: E402
from registry.access.principal import OPERATOR  # noqa: E402


def write_small_adapter(folder: Path, seed: int) -> dict[str, str]:
    """A 16 KiB LoRA adapter whose bytes depend on `seed`; {path: sha256 hex}."""
    folder.mkdir(parents=True)
    write_lora(folder, r=4, n=512, data=seeded(seed, data_bytes(4, 512)))
    return file_digests(folder)


@dataclass
class Served:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    commits: list[str] = field(default_factory=list)

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.proc.pid)


@contextmanager
def seeded_server(home: Path, pushes: list[tuple[str, Path, list[str]]]) -> Iterator[Served]:
    """Push (embedded, as the operator) into `home`, add an admin with a token, then run
    `adapters serve --no-worker` on a free loopback port; stopped (and waited for) on exit."""
    from registry.client.local import LocalClient
    from registry.client.transfer import push_folder
    from registry.config import Settings
    from registry.services.accounts import add_user, create_token

    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERS_")}
    env["ADAPTERS_HOME"] = str(home)
    client = LocalClient.from_settings(Settings(home=home, user="bench"))  # type: ignore[call-arg]
    try:
        commits = [
            push_folder(client, folder, repo, aliases=aliases).digest.removeprefix("sha256:")[:40]
            for repo, folder, aliases in pushes
        ]
        add_user(client.registry, "bench", admin=True, principal=OPERATOR)
        token, _ = create_token(client.registry, "bench", principal=OPERATOR)
    finally:
        client.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = home / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "serve",
                "--no-worker",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield Served(f"http://127.0.0.1:{port}", token, proc, log, commits)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


CLIENT = r"""
import json, os, sys, time
import huggingface_hub as hf
go = sys.argv[1]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
t = time.perf_counter()
try:
    path = hf.snapshot_download(sys.argv[2])
    ok = True
except Exception as err:
    ok, path = False, repr(err)
print("@@" + json.dumps([ok, time.perf_counter() - t, path]), flush=True)
"""


def hf_env(url: str, token: str, hf_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": url,
        "HF_TOKEN": token,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def run_fleet(srv: Served, repo: str, clients: int, work: Path) -> dict[str, float]:
    go = work / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(go), repo],
            env=hf_env(srv.url, srv.token, work / f"fleet-{i}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(clients)
    ]
    for p in procs:  # every client imported and waiting: the fleet starts at once
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    lines_before = srv.log.read_text().count("HTTP/1.1")
    t0 = time.perf_counter()
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        results.append(json.loads(out.rsplit("@@", 1)[1]) if "@@" in out else [False, 0.0, err[-300:]])
    wall = time.perf_counter() - t0
    time.sleep(0.5)  # the access log flushes after the response
    access = srv.log.read_text().splitlines()
    served = [line for line in access if "HTTP/1.1" in line][lines_before:]
    bad_status = [line for line in served if not re.search(r'HTTP/1\.1" [23]\d\d', line)]
    latencies = sorted(r[1] for r in results if r[0])
    failures = [r[2] for r in results if not r[0]]
    for f in failures[:3]:
        print("client error:", f, file=sys.stderr)
    return {
        "clients": clients,
        "requests": len(served),
        "rps": len(served) / wall,
        "snapshots_per_s": len(latencies) / wall,
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else float("nan"),
        "errors": len(failures) + len(bad_status),
    }


def cas_bytes(url: str) -> int:
    """Request body bytes the server counted on its Xet CAS routes (xorbs, shards, queries)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    page = httpx.get(f"{url}/metrics").text
    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(page)
            if family.name == "adapters_http_request_body_bytes"
            for s in family.samples
            if s.name.endswith("_total") and s.labels.get("route", "").startswith("/api/xet-cas")
        )
    )


XET_UPLOAD = (
    "import sys,time,huggingface_hub as hf;api=hf.HfApi();api.create_repo(sys.argv[2],exist_ok=True);"
    "t=time.perf_counter();api.upload_folder(repo_id=sys.argv[2],folder_path=sys.argv[1]);"
    "print(time.perf_counter()-t)"
)


def change_one_percent(path: Path, places: int = 16) -> int:
    """Overwrite 1% of the tensor bytes (after the safetensors header) in `places` random runs."""
    import random
    import struct

    size = path.stat().st_size
    with path.open("r+b") as f:
        start = 8 + struct.unpack("<Q", f.read(8))[0]
        data = size - start
        run, stride = data // 100 // places, data // places
        rng = random.Random(0)
        for i in range(places):
            f.seek(start + i * stride + rng.randrange(0, stride - run))
            f.write(os.urandom(run))
    return run * places


def xet_dedupe(work: Path, size_mib: int) -> None:
    """Part 3: two Xet uploads of a big adapter, the second with 1% changed, from empty caches."""
    src = write_adapter(work / "xet", size_mib)
    with seeded_server(work / "xet-home", []) as srv:
        size_mb = src.stat().st_size / 1e6
        cp_t = timed(["cp", str(src), str(work / "copy")])
        (work / "copy").unlink()
        env = {
            k: v for k, v in hf_env(srv.url, srv.token, work / "hf-xet").items() if k != "HF_HUB_DISABLE_XET"
        }
        sent, took = [], []
        for step in ("first", "second"):
            if step == "second":
                changed = change_one_percent(src)
            shutil.rmtree(work / "hf-xet", ignore_errors=True)  # an empty client cache each time
            before = cas_bytes(srv.url)
            out = subprocess.run(
                [sys.executable, "-c", XET_UPLOAD, str(src.parent), "bench/xet"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            took.append(float(out.split()[-1]))
            sent.append(cas_bytes(srv.url) - before)
        rss = srv.peak_rss_mib()
    print(
        f"xet: {size_mb:.0f} MB adapter, {changed / 1e6:.1f} MB changed in 16 places; {os.cpu_count()} CPUs"
    )
    print(f"{'step':<34}{'s':>7}{'MB/s':>8}{'cp MB/s':>9}{'ratio':>7}{'CAS MB in':>11}")
    for name, t, b in zip(
        ("upload_folder (xet, 1st)", "upload_folder (xet, 1% changed)"), took, sent, strict=True
    ):
        print(f"{name:<34}{t:>7.1f}{size_mb / t:>8.0f}{size_mb / cp_t:>9.0f}{cp_t / t:>7.2f}{b / 1e6:>11.1f}")
    print(f"second upload sent {sent[1] / sent[0]:.3f} of the first's bytes (goal <= 0.10)")
    print(f"peak server RSS: {rss:.0f} MiB")


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--xet-mib", type=int, default=512)
    ap.add_argument("--only-xet", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-hub-", dir=os.environ.get("BENCH_DIR")))
    try:
        if args.only_xet:
            xet_dedupe(work, args.xet_mib)
            return
        src = write_adapter(work / "big", args.size_mib)
        write_small_adapter(work / "small", seed=1)
        pushes = [("bench/big", work / "big", []), ("bench/small", work / "small", [])]
        with seeded_server(work / "home", pushes) as srv:
            size_mb = src.stat().st_size / 1e6
            anchor_t = timed(["cp", str(src), str(work / "copy")]) + timed(["sha256sum", str(work / "copy")])
            (work / "copy").unlink()
            code = (
                "import time,huggingface_hub as hf;t=time.perf_counter();"
                "hf.snapshot_download('bench/big');print(time.perf_counter()-t)"
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=hf_env(srv.url, srv.token, work / "hf-big"),
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            ours_t = float(out.split()[-1])
            shutil.rmtree(work / "hf-big")
            fleet = run_fleet(srv, "bench/small", args.clients, work)
            rss = srv.peak_rss_mib()
        print(f"file: {size_mb:.0f} MB adapter; {os.cpu_count()} CPUs; loopback")
        print(f"{'step':<34}{'MB/s':>8}{'anchor MB/s':>13}{'ratio':>7}")
        print(
            f"{'snapshot_download (1 client)':<34}{size_mb / ours_t:>8.0f}{size_mb / anchor_t:>13.0f}{anchor_t / ours_t:>7.2f}"
        )
        print(
            f"fleet: {fleet['clients']} cold clients, {fleet['requests']} requests, {fleet['rps']:.0f} req/s, "
            f"{fleet['snapshots_per_s']:.1f} snapshots/s, snapshot p50 {fleet['p50_s']:.2f} s, "
            f"p99 {fleet['p99_s']:.2f} s, errors {fleet['errors']}"
        )
        print(f"peak server RSS: {rss:.0f} MiB (goal < 300 MB)")
        xet_dedupe(work, args.xet_mib)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
