"""The heaviest requests one ordinary writer may send (issue 21), each against a live server, with
the server's time, its peak RSS and how promptly it answered everyone else meanwhile.

    python bench/abuse.py [--database-url postgresql+psycopg://...] [--only batch,commit,...]

Starts `adapters serve --no-worker` (the real CLI; SQLite + file store unless a database URL is
given) on a loopback port. Mallory has write on `evil`; the operator makes her token, as on a fresh
server. Each scenario runs while a thread asks `GET /healthz` every 10 ms; the anchor is the same
probe on the idle server, measured first in the same run. Printed per scenario: what the server
answered, its wall time, the server's peak RSS during it (VmHWM, reset before each through
/proc/PID/clear_refs) and the /healthz p50, p99 and worst, with the p99's ratio to the idle one.
Targets (issue 21): /healthz under 100 ms p99 and RSS under 500 MB throughout.

Scenarios:
- batch:   one LFS batch of the most objects a batch may hold (every one 20 GiB, so all in parts),
           and one of 10,000 (the probe's: 35.6 s, 808 MiB answered, +2.6 GB RSS);
- commit:  one Hub commit of 150,000 inline files (the probe's: 8.6 s, +380 MB never given back);
- header:  a push of the widest adapter header accepted (ADAPTER_TENSORS_MAX tensors), and one of
           100,000 empty modules (the probe's: 50 s in the commit transaction);
- body:    an anonymous /v1 push whose JSON body is 64 MiB of zeros (parsed on the event loop
           before issue 21: 1.7 s for 60 MB);
- trickle: 16 uploads from Mallory sending one byte every 5 s, while Alice PUTs 100 bytes and a Hub
           LFS object (the probe's: Alice waited 35 s).
Traffic goes to 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import start_serve  # noqa: E402

from registry.access.principal import OPERATOR
from registry.bounds import ADAPTER_TENSORS_MAX, LFS_BATCH_OBJECTS  # noqa: E402

MIB = 1024 * 1024


PROBE = """
import json, sys, threading, time, httpx
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
samples = []
with httpx.Client(base_url=sys.argv[1], timeout=60) as http:
    while not stop.is_set():
        t = time.perf_counter()
        http.get("/healthz")
        samples.append((time.perf_counter() - t) * 1000)
        if len(samples) == 1:
            print("ready", flush=True)
        stop.wait(0.01)
print(json.dumps(samples[1:]))
"""


class Probe:
    """GET /healthz every 10 ms from a process of its own (the bench's own threads building
    payloads would otherwise delay it on this process's GIL); latencies in ms."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[float] = []

    def __enter__(self) -> Probe:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, self.url], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._proc.stdout is not None and self._proc.stdout.readline() == b"ready\n"
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._proc.communicate(b"", timeout=120)
        self.samples = json.loads(out)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def lora_file(modules: int, empty: bool = False) -> bytes:
    """A LoRA safetensors file of `modules` q_proj modules of rank 1 (or with empty factors)."""
    header: dict[str, Any] = {}
    offset = 0
    for i in range(modules):
        prefix = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        for kind, shape in (("lora_A", [1, 0] if empty else [1, 1]), ("lora_B", [0, 1] if empty else [1, 1])):
            size = 0 if empty else 4
            header[f"{prefix}.{kind}.weight"] = {
                "dtype": "F32",
                "shape": shape,
                "data_offsets": [offset, offset + size],
            }
            offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


CONFIG = json.dumps(
    {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 1, "lora_alpha": 2, "target_modules": ["q_proj"]}
).encode()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


Run = Callable[[], str]
"""A scenario's requests, their payloads built beforehand (outside the measured window)."""


def push(http: httpx.Client, repo: str, weights: bytes) -> Run:
    files = {"adapter_config.json": CONFIG, "adapter_model.safetensors": weights}
    listed = [{"path": p, "size": len(d), "sha256": digest(d)} for p, d in files.items()]
    body = json.dumps({"files": listed}).encode()

    def run() -> str:
        for data in files.values():
            http.put(f"/v1/blobs/{digest(data)}", content=data).raise_for_status()
        return answer(
            http.post(
                f"/v1/repos/{repo}/versions", content=body, headers={"content-type": "application/json"}
            )
        )

    return run


def lfs_batch(http: httpx.Client, count: int) -> Run:
    objects = [
        {"oid": hashlib.sha256(str(i).encode()).hexdigest(), "size": 20 * 1024**3} for i in range(count)
    ]
    body = json.dumps(
        {"operation": "upload", "transfers": ["multipart", "basic"], "objects": objects}
    ).encode()
    return lambda: answer(
        http.post(
            "/evil/x.git/info/lfs/objects/batch", content=body, headers={"content-type": "application/json"}
        )
    )


def hub_commit(http: httpx.Client, files: int) -> Run:
    lines = [json.dumps({"key": "header", "value": {"summary": "many"}})]
    content = base64.b64encode(b"x").decode()
    lines += [
        json.dumps({"key": "file", "value": {"path": f"f/{i}.txt", "content": content, "encoding": "base64"}})
        for i in range(files)
    ]
    body = "\n".join(lines).encode()
    return lambda: answer(
        http.post(
            "/api/models/evil/x/commit/main", content=body, headers={"content-type": "application/x-ndjson"}
        )
    )


def zeros_body(url: str) -> Run:
    """An anonymous push of ADAPTERS_MAX_REQUEST_BYTES (64 MiB) of JSON: a 30M-element array."""
    body = b'{"files":[],"lineage":[' + b"0," * (32 * MIB - 16) + b"0]}"
    return lambda: answer(
        httpx.post(
            f"{url}/v1/repos/evil/x/versions",
            content=body,
            headers={"content-type": "application/json"},
            timeout=600,
        )
    )


def trickle(url: str, port: int, mallory: str, alice: str) -> str:
    """16 of Mallory's uploads at one byte every 5 s while Alice uploads through /v1 and the Hub."""
    socks = []
    for i in range(16):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(
            f"PUT /v1/blobs/sha256:{i:064x} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {mallory}\r\n"
            "Content-Length: 1000000\r\n\r\n".encode()
        )
        socks.append(s)
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(5.0):
            for s in socks:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass

    threading.Thread(target=drip, daemon=True).start()
    try:
        time.sleep(1)
        with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {alice}"}) as http:
            data = os.urandom(100)
            t = time.perf_counter()
            put = http.put(f"/v1/blobs/{digest(data)}", content=data)
            v1_ms = (time.perf_counter() - t) * 1000
            data = os.urandom(100)
            batch = http.post(
                "/acme/x.git/info/lfs/objects/batch",
                json={"operation": "upload", "objects": [{"oid": digest(data)[7:], "size": 100}]},
            ).json()
            href = batch["objects"][0]["actions"]["upload"]["href"]
            t = time.perf_counter()
            hub = httpx.put(href, content=data, timeout=120)
            hub_ms = (time.perf_counter() - t) * 1000
        return f"Alice: /v1 PUT {put.status_code} in {v1_ms:.0f} ms, Hub LFS PUT {hub.status_code} in {hub_ms:.0f} ms"
    finally:
        stop.set()
        for s in socks:
            s.close()


@contextmanager
def measured(name: str, pid: int, url: str, idle_p99: float, rows: list[str]) -> Any:
    reset_peak(pid)
    outcome: list[str] = []
    with Probe(url) as probe:
        t = time.perf_counter()
        yield outcome
        wall = time.perf_counter() - t
    xs = probe.samples
    p99 = pct(xs, 0.99)
    rows.append(
        f"{name:<28}{wall:>8.2f}{rss_peak_mib(pid):>10.0f}{pct(xs, 0.5):>9.1f}{p99:>9.1f}{max(xs):>9.1f}"
        f"{p99 / idle_p99:>8.1f}x  {'; '.join(outcome)}"
    )


def answer(resp: httpx.Response) -> str:
    code = resp.headers.get("x-error-code") or (resp.json().get("code") if resp.status_code >= 400 else "")
    return f"{resp.status_code} {code or ''} {len(resp.content) / 1024:.0f} KiB".replace("  ", " ")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", help="default: SQLite in a temporary ADAPTERS_HOME")
    ap.add_argument("--only", default="batch,commit,header,body,trickle")
    args = ap.parse_args()
    wanted = set(args.only.split(","))
    home = Path(tempfile.mkdtemp(prefix="abuse-"))
    env = {**os.environ, "ADAPTERS_HOME": str(home)}
    env.pop("ADAPTERS_URL", None)
    if args.database_url:
        env["ADAPTERS_DATABASE_URL"] = args.database_url
    from registry.config import Settings
    from registry.services import accounts
    from registry.services.context import Registry

    reg = Registry.from_settings(Settings(home=home, database_url=args.database_url), migrate=True)
    for user, namespace in (("mallory", "evil"), ("alice", "acme")):
        accounts.add_user(reg, user, principal=OPERATOR)
        accounts.grant(reg, user, namespace, "write", principal=OPERATOR)
    mallory = accounts.create_token(reg, "mallory", principal=OPERATOR)[0]
    alice = accounts.create_token(reg, "alice", principal=OPERATOR)[0]
    reg.close()
    server, url = start_serve(env)
    port = int(url.rsplit(":", 1)[1])
    rows: list[str] = []
    try:
        with Probe(url) as idle:
            time.sleep(3)
        idle_p99 = pct(idle.samples, 0.99)
        rows.append(
            f"{'idle (anchor)':<28}{3.0:>8.2f}{rss_peak_mib(server.pid):>10.0f}{pct(idle.samples, 0.5):>9.1f}"
            f"{idle_p99:>9.1f}{max(idle.samples):>9.1f}{1.0:>8.1f}x"
        )
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mallory}"}, timeout=600)
        scenarios: list[tuple[str, str, Callable[[], Run]]] = [
            ("batch", f"LFS batch, {LFS_BATCH_OBJECTS} x 20 GiB", lambda: lfs_batch(http, LFS_BATCH_OBJECTS)),
            ("batch", "LFS batch, 10,000 x 20 GiB", lambda: lfs_batch(http, 10_000)),
            ("commit", "Hub commit, 150,000 files", lambda: hub_commit(http, 150_000)),
            (
                "header",
                f"push, {ADAPTER_TENSORS_MAX:,} tensors",
                lambda: push(http, "evil/wide", lora_file(ADAPTER_TENSORS_MAX // 2)),
            ),
            (
                "header",
                "push, 100,000 empty modules",
                lambda: push(http, "evil/empty", lora_file(100_000, True)),
            ),
            ("body", "anonymous 64 MiB JSON body", lambda: zeros_body(url)),
            ("trickle", "16 trickling uploads", lambda: lambda: trickle(url, port, mallory, alice)),
        ]
        for key, name, prepare in scenarios:
            if key not in wanted:
                continue
            run = prepare()
            with measured(name, server.pid, url, idle_p99, rows) as outcome:
                outcome.append(run())
    finally:
        server.terminate()
        server.wait(20)
    print(
        f"adapters serve --no-worker on {'PostgreSQL' if args.database_url else 'SQLite'}; /healthz every 10 ms"
    )
    print(
        f"{'request':<28}{'wall s':>8}{'RSS MiB':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p99/idle':>9}  answer"
    )
    for row in rows:
        print(row)
    print("targets: /healthz p99 < 100 ms, RSS < 500 MB throughout")


if __name__ == "__main__":
    main()
