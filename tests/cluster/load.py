"""A small steady mixed load through the cluster's load balancer, and the consistency check that
follows a fault: used by tests/cluster/test_faults.py and bench/cluster.py.

Each client thread loops over one kind of operation (push, pull, Hub download). An operation is
retried until it succeeds or its deadline passes; every failed attempt is counted by kind (HTTP
status and problem code, or the exception's class), every success recorded. An operation that
never succeeds is *lost*: the pass condition is that none is."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.lora_file import data_bytes, file_digests, seeded, write_lora
from tests.cluster.harness import Cluster

OP_DEADLINE_S = 45.0
"""How long one operation may keep retrying before it counts as lost."""
RETRY_PAUSE_S = 0.2


def write_adapter(folder: Path, seed: int) -> dict[str, str]:
    """A 16 KiB LoRA adapter whose bytes depend on `seed` (no torch); {file name: sha256 hex}."""
    folder.mkdir(parents=True)  # a fresh folder each time: a reused one is a bug of the caller
    write_lora(folder, r=4, n=512, data=seeded(seed, data_bytes(4, 512)))
    return file_digests(folder)


def error_kind(err: BaseException) -> str:
    """`502`, `503 server_unavailable`, or the exception's class: how a client saw a failure."""
    from registry.errors import RegistryError

    if isinstance(err, httpx.HTTPStatusError):
        code = ""
        try:
            code = " " + str(err.response.json().get("code", ""))
        except ValueError:
            pass
        return f"{err.response.status_code}{code}".strip()
    if isinstance(err, RegistryError):
        status = getattr(err, "status", "")
        return f"{status} {err.code}".strip()
    return type(err).__name__


@dataclass
class Pushed:
    repo: str
    version: int
    files: dict[str, str]
    """file name -> sha256 hex, as the client wrote them."""


@dataclass
class Tally:
    """What the load saw: successes by operation, failed attempts by kind, lost operations."""

    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    pushed: list[Pushed] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def attempts_failed(self) -> int:
        return sum(self.failed.values())

    def summary(self) -> str:
        ok = ", ".join(f"{k} {v}" for k, v in sorted(self.ok.items()))
        bad = ", ".join(f"{k}: {v}" for k, v in self.failed.most_common()) or "none"
        return f"succeeded: {ok}; failed attempts: {bad}; lost: {len(self.lost)}"


class Load:
    """`with Load(cluster, workdir) as load:` runs the client threads until the block ends."""

    def __init__(
        self, cluster: Cluster, workdir: Path, pushers: int = 1, pullers: int = 1, hub: int = 1
    ) -> None:
        self.cluster = cluster
        self.dir = workdir
        self.tally = Tally()
        self._stop = threading.Event()
        self._seed = 0
        self._seed_lock = threading.Lock()
        self.repo = "load/steady"
        op: dict[str, Callable[[int], None]] = {"push": self._push, "pull": self._pull, "hub": self._hub}
        kinds = ["push"] * pushers + ["pull"] * pullers + ["hub"] * hub
        self._threads = [
            threading.Thread(
                target=self._loop, args=(name, op[name], i), name=f"load-{name}-{i}", daemon=True
            )
            for i, name in enumerate(kinds)
        ]

    def __enter__(self) -> Load:
        self._retry("push", self._push, -1)  # something to pull from the start
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(OP_DEADLINE_S + 30)

    # ------------------------------------------------------------ the loop
    def _loop(self, name: str, op: Callable[[int], None], i: int) -> None:
        while not self._stop.is_set():
            self._retry(name, op, i)
            time.sleep(0.05)

    def _retry(self, name: str, op: Callable[[int], None], i: int) -> None:
        deadline = time.monotonic() + OP_DEADLINE_S
        while True:
            try:
                op(i)
            except Exception as err:
                with self.tally.lock:
                    self.tally.failed[f"{name}: {error_kind(err)}"] += 1
                if time.monotonic() > deadline:
                    with self.tally.lock:
                        self.tally.lost.append(f"{name}: {error_kind(err)}: {err}")
                    return
                time.sleep(RETRY_PAUSE_S)
                continue
            with self.tally.lock:
                self.tally.ok[name] += 1
            return

    def _http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.cluster.url, headers={"Authorization": f"Bearer {self.cluster.token}"}, timeout=30
        )

    # ------------------------------------------------------------ operations
    def _push(self, i: int) -> None:
        from registry.client.http import HttpClient
        from registry.client.transfer import push_folder

        with self._seed_lock:
            self._seed += 1
            seed = self._seed
        folder = self.dir / f"push-{seed}"
        files = write_adapter(folder, seed) if not folder.exists() else _hashes(folder)
        client = HttpClient(self.cluster.url, "admin", self.dir / f"cache-{i}", token=self.cluster.token)
        try:
            result = push_folder(client, folder, self.repo)
        finally:
            client.http.close()
        with self.tally.lock:
            self.tally.pushed.append(Pushed(self.repo, result.version, files))

    def _pull(self, i: int) -> None:
        with self._http() as http:
            shown = http.get("/v1/resolve", params={"ref": self.repo}).raise_for_status().json()
            for f in shown["files"]:
                digest = _hex(f["sha256"])
                body = http.get(f"/v1/blobs/sha256:{digest}").raise_for_status().content
                assert hashlib.sha256(body).hexdigest() == digest, f

    def _hub(self, i: int) -> None:
        with self._http() as http:
            body = http.get(f"/{self.repo}/resolve/main/adapter_model.safetensors").raise_for_status().content
            assert len(body) > 16_000


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def check_consistency(cluster: Cluster, tally: Tally) -> list[str]:
    """Nothing lost: fsck --verify finds no problem (every version's blobs present, bytes that hash
    to their digests; strays, the uploads of pushes cut short, are reclaimable by gc), and every
    push a client saw succeed is readable byte for byte through each replica directly."""
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {cluster.token}"}
    report = httpx.get(f"{cluster.url}/v1/fsck", params={"verify": "true"}, headers=headers, timeout=120)
    report.raise_for_status()
    fsck = report.json()
    problems += [f"fsck: {p}" for p in fsck["problems"]]
    for replica in cluster.replicas:
        with httpx.Client(base_url=f"http://127.0.0.1:{replica.port}", headers=headers, timeout=30) as http:
            for p in tally.pushed:
                shown = http.get(f"/v1/repos/{p.repo}/versions/{p.version}")
                if shown.status_code != 200:
                    problems.append(f"{replica.name}: {p.repo}:{p.version} answered {shown.status_code}")
                    continue
                listed = {f["path"]: _hex(f["sha256"]) for f in shown.json()["files"]}
                if listed != p.files:
                    problems.append(f"{replica.name}: {p.repo}:{p.version} lists {listed}, pushed {p.files}")
                for digest in listed.values():
                    body = http.get(f"/v1/blobs/sha256:{digest}").content
                    if hashlib.sha256(body).hexdigest() != digest:
                        problems.append(f"{replica.name}: blob {digest} of {p.repo}:{p.version} differs")
    return problems
