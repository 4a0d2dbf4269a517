"""How promptly a server answers while slow clients trickle uploads at it (issue 9's slowloris).

    python bench/slow_clients.py [--uploads 60] [--rounds 20] [--checkout DIR]

`--checkout DIR` runs the server from another checkout of the project (e.g. a `git worktree` of an
older commit), to compare: requests that get no answer within 10 s count as 10,000 ms.

Starts `adapters serve` (the real CLI, SQLite + file store, no worker) on a loopback port, pushes a
small adapter, then measures the latency of `GET /healthz`, a listing and a blob download (a pull's
request) twice in the same run: idle (the anchor) and while N uploads send 1 byte per second each.
Prints the medians and p95s and the ratio loaded/idle. Traffic goes to 127.0.0.1 only, bounded in
count and time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import ROOT, start_serve  # noqa: E402

from registry.access.principal import OPERATOR

TIMEOUT_S = 10.0


def measure(http: httpx.Client, digest: str, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"healthz": [], "list": [], "blob": []}
    for _ in range(rounds):
        for name, call in (
            ("healthz", lambda: http.get("/healthz", timeout=TIMEOUT_S)),
            ("list", lambda: http.get("/v1/versions", timeout=TIMEOUT_S)),
            ("blob", lambda: http.get(f"/v1/blobs/{digest}", timeout=TIMEOUT_S)),
        ):
            t = time.perf_counter()
            try:
                resp = call()
            except httpx.TimeoutException:
                out[name].append(TIMEOUT_S * 1000)
                continue
            out[name].append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200, resp.text
    return out


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.95) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uploads", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--checkout", type=Path, help="run the server from this checkout instead")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="slow-clients-"))
    env = {**os.environ, "ADAPTERS_HOME": str(home), "ADAPTERS_UPLOAD_IDLE_TIMEOUT_S": "600"}
    env.pop("ADAPTERS_URL", None)
    headers = {}
    if args.checkout:  # an older server: no accounts (its schema may predate them)
        env["PYTHONPATH"] = str(args.checkout.resolve())
    else:  # the operator makes a token, as on a fresh server
        from registry.config import Settings
        from registry.services import accounts
        from registry.services.context import Registry

        reg = Registry.from_settings(Settings(home=home), migrate=True)
        accounts.add_user(reg, "bench", admin=True, principal=OPERATOR)
        headers["Authorization"] = "Bearer " + accounts.create_token(reg, "bench", principal=OPERATOR)[0]
        reg.close()
    server, url = start_serve(env, args.checkout.resolve() if args.checkout else ROOT)
    port = int(url.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            data = os.urandom(4 * 1024 * 1024)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert http.put(f"/v1/blobs/{digest}", content=data).status_code == 201
            idle = measure(http, digest, args.rounds)
            for i in range(args.uploads):
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.sendall(
                    f"PUT /v1/blobs/sha256:{i:064x} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode()
                )
                socks.append(s)

            def trickle() -> None:
                while not stop.wait(1.0):
                    for s in socks:
                        try:
                            s.sendall(b"x")
                        except OSError:
                            pass

            threading.Thread(target=trickle, daemon=True).start()
            time.sleep(2)
            loaded = measure(http, digest, args.rounds)
    finally:
        stop.set()
        for s in socks:
            s.close()
        server.terminate()
        server.wait(20)
    print(f"{args.uploads} uploads at 1 byte/s; {args.rounds} rounds; milliseconds")
    print(f"{'request':<10}{'idle p50':>10}{'idle p95':>10}{'slow p50':>10}{'slow p95':>10}{'p50 ratio':>11}")
    for name in idle:
        a, b = statistics.median(idle[name]), statistics.median(loaded[name])
        print(
            f"{name:<10}{a:>10.1f}{p95(idle[name]):>10.1f}{b:>10.1f}{p95(loaded[name]):>10.1f}{b / a:>10.2f}x"
        )


if __name__ == "__main__":
    main()
