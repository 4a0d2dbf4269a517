"""A bounded load test of `adapters serve` on PostgreSQL: N concurrent clients for T seconds mixing
pulls, pushes, fit queries and Hub-protocol downloads, all on loopback.

    python bench/load.py [--clients 50] [--seconds 60] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Prints requests per second, p50/p99 per kind, errors (any non-2xx), and the server's peak RSS.
Then the cost of authentication: the same resolve request with a token and anonymously (on a
public namespace), interleaved on one connection, as the difference of their medians (the anchor
is the anonymous request, measured in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from push_pull import write_adapter  # noqa: E402
from serve import peak_rss_mib, start_serve  # noqa: E402

MODULE = "model.layers.0.self_attn.q_proj"


class Adapter:
    """A small LoRA adapter's files in memory; `variant` changes the README so a push is new."""

    def __init__(self, folder: Path) -> None:
        self.files = {p.name: p.read_bytes() for p in folder.iterdir()}

    def with_readme(self, variant: str) -> dict[str, bytes]:
        return {**self.files, "README.md": f"# load test {variant}\n".encode()}


async def push(http: httpx.AsyncClient, repo: str, files: dict[str, bytes]) -> int:
    manifest = []
    for path, data in files.items():
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        missing = (await http.post("/v1/blobs/missing", json={"digests": [digest]})).json()["missing"]
        if missing:
            r = await http.put(f"/v1/blobs/{digest}", content=data)
            if r.status_code != 201:
                return r.status_code
        manifest.append({"path": path, "size": len(data), "sha256": digest})
    r = await http.post(f"/v1/repos/{repo}/versions", json={"files": manifest, "base": "bench-base"})
    return r.status_code


async def pull(http: httpx.AsyncClient, repo: str) -> int:
    r = await http.get("/v1/resolve", params={"ref": repo})
    if r.status_code != 200:
        return r.status_code
    for f in r.json()["files"]:
        b = await http.get(f"/v1/blobs/{f['sha256']}")
        if b.status_code != 200 or hashlib.sha256(b.content).hexdigest() != f["sha256"][7:]:
            return b.status_code if b.status_code != 200 else 599
    return 200


async def fit(http: httpx.AsyncClient) -> int:
    return (await http.post("/v1/fit", json={"base": "bench-base", "limit": 20})).status_code


async def hub(http: httpx.AsyncClient, repo: str) -> int:
    r = await http.get(f"/{repo}/resolve/main/adapter_model.safetensors")
    return r.status_code


async def client_loop(
    url: str,
    token: str,
    adapter: Adapter,
    deadline: float,
    samples: dict[str, list[float]],
    errors: list[str],
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        while time.monotonic() < deadline:
            kind = random.choices(["pull", "push", "fit", "hub"], weights=[4, 1, 2, 3])[0]
            repo = f"load/a{random.randrange(8)}"
            t = time.perf_counter()
            try:
                if kind == "pull":
                    status = await pull(http, repo)
                elif kind == "push":
                    status = await push(http, repo, adapter.with_readme(uuid.uuid4().hex))
                elif kind == "fit":
                    status = await fit(http)
                else:
                    status = await hub(http, repo)
            except httpx.HTTPError as err:
                status = 0
                errors.append(f"{kind}: {type(err).__name__}")
            samples[kind].append((time.perf_counter() - t) * 1000)
            if status not in (200, 201):
                errors.append(f"{kind}: HTTP {status}")


async def auth_cost(url: str, token: str, rounds: int) -> tuple[float, float]:
    with_token, anonymous = [], []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for _ in range(rounds):
            for bucket, headers in ((with_token, {"Authorization": f"Bearer {token}"}), (anonymous, {})):
                t = time.perf_counter()
                r = await http.get("/v1/resolve", params={"ref": "load/a0"}, headers=headers)
                bucket.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
    return statistics.median(with_token), statistics.median(anonymous)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()

    db = f"adapters_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    db_url = args.pg.rsplit("/", 1)[0] + "/" + db
    home = Path(tempfile.mkdtemp(prefix="load-"))
    write_adapter(home / "adapter", 1)
    adapter = Adapter(home / "adapter")
    env = {**os.environ, "ADAPTERS_HOME": str(home), "ADAPTERS_DATABASE_URL": db_url}
    env.pop("ADAPTERS_URL", None)

    # The operator (direct database access) makes the token, as on a fresh server.
    from registry.access.principal import OPERATOR
    from registry.config import Settings
    from registry.entities import BaseRegistration, ModuleInfo
    from registry.services import accounts, bases
    from registry.services.context import Registry

    reg = Registry.from_settings(Settings(home=home, database_url=db_url), migrate=True)
    accounts.add_user(reg, "bench", admin=True, principal=OPERATOR)
    token, _ = accounts.create_token(reg, "bench", name="load", principal=OPERATOR)
    accounts.set_namespace_visibility(reg, "load", public=True, principal=OPERATOR)
    raw = (home / "adapter" / "adapter_model.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    shape = next(v for k, v in header.items() if k.endswith("lora_A.weight"))["shape"]  # [r, in]
    bases.register_base(
        reg,
        BaseRegistration(
            names=[{"name": "bench-base"}],
            structure_signature="sha256:" + "0" * 64,
            modules=[ModuleInfo(name=MODULE, kind="linear", in_features=shape[1], out_features=shape[1])],
        ),
        principal=OPERATOR,
    )
    reg.close()

    server, url = start_serve(env)
    try:

        async def seed() -> None:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
                for i in range(8):
                    assert await push(http, f"load/a{i}", adapter.with_readme("seed")) == 201

        asyncio.run(seed())
        samples: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []

        async def run() -> None:
            deadline = time.monotonic() + args.seconds
            await asyncio.gather(
                *(client_loop(url, token, adapter, deadline, samples, errors) for _ in range(args.clients))
            )

        t0 = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - t0
        with_token, anonymous = asyncio.run(auth_cost(url, token, 200))
        rss = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(30)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()

    total = sum(len(v) for v in samples.values())
    print(f"{args.clients} clients, {elapsed:.0f} s, PostgreSQL + file store, loopback")
    print(f"{'kind':<6}{'requests':>10}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for kind in ("pull", "push", "fit", "hub"):
        xs = sorted(samples[kind])
        if xs:
            p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
            print(f"{kind:<6}{len(xs):>10}{len(xs) / elapsed:>8.1f}{statistics.median(xs):>9.1f}{p99:>9.1f}")
    print(f"all   {total:>10}{total / elapsed:>8.1f}   errors: {len(errors)} {sorted(set(errors))[:5]}")
    print(f"server peak RSS: {rss:.0f} MiB")
    print(
        f"auth: resolve p50 with a token {with_token:.2f} ms, anonymous {anonymous:.2f} ms: "
        f"{with_token - anonymous:+.2f} ms per request ({with_token / anonymous:.2f}x)"
    )


if __name__ == "__main__":
    main()
