"""A page costs a constant number of queries: every listing and page of /v1, the UI and the Hub
protocol is asked for on a small registry and again after it grew (more versions, repositories,
aliases, evals and linked bases), counting the statements the real engine executes
(`before_cursor_execute`), and the counts must be the same. On SQLite and PostgreSQL.

Each phase builds a fresh Registry and app on the database (cold per-process caches), asks each
page twice and compares the cold and the warm counts separately."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from registry.access.principal import OPERATOR, Principal
from registry.api import create_app
from registry.client.bases import add_base_folder
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.config import Settings
from registry.entities import EvalScoreIn
from registry.services import accounts
from registry.services.context import Registry
from storage.local import LocalBlobStore
from tests.adapter_files import llama_base, lora_folder
from tests.ui.conftest import database  # noqa: F401 (the fixture: one database per module and kind)

SMALL = {"bases": 1, "repos": 2, "versions": 3}
LARGE = {"bases": 3, "repos": 5, "versions": 12}


class Counter:
    """The statements the engine runs while `counting()` is open."""

    def __init__(self, reg: Registry) -> None:
        self.n: int | None = None
        self.statements: list[str] = []
        event.listen(reg.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.n is not None:
            self.n += 1
            self.statements.append(statement)

    @contextmanager
    def counting(self) -> Iterator[None]:
        self.n, self.statements = 0, []
        try:
            yield
        finally:
            pass

    def stop(self) -> int:
        n, self.n = self.n or 0, None
        return n


def _populate(client: LocalClient, tmp: Path, size: dict[str, int], have: dict[str, int]) -> None:
    """Grow the registry to `size`: bases acme/base-K (distinct weights, one structure), versions
    pushed round-robin over repositories acme/rN (those of even N linked to a base, those of odd N
    not), every one with an alias and evals, and a private repository secret/hidden beside them.
    acme/r0 and acme/r1 exist at both sizes with the same kinds of versions (more of them once
    grown), so that their pages differ in rows only."""
    for k in range(have["bases"], size["bases"]):
        add_base_folder(client, llama_base(tmp / f"base-{k}", seed=100 + k), [f"acme/base-{k}"], upload=True)
    for i in range(have["versions"], size["versions"]):
        n = i % size["repos"]
        push_folder(
            client,
            lora_folder(tmp / f"lora-{i}", seed=i),
            f"acme/r{n}",
            base=None if n % 2 else f"acme/base-{i % size['bases']}",
            task=f"task{n % 3}",
            evals=[
                EvalScoreIn(metric="accuracy", value=0.5 + i / 100, dataset="lex"),
                EvalScoreIn(metric="f1", value=0.4),
            ],
            aliases=[f"a{i}"],
        )
    if have["versions"] == 0:
        push_folder(client, lora_folder(tmp / "secret", seed=999), "secret/hidden", task="task0")
        accounts.set_namespace_visibility(client.registry, "acme", True, principal=OPERATOR)
    have.update(size)


ADAPTER = "adapter_model.safetensors"
PAGES: dict[str, Callable[[httpx.Client, str], httpx.Response]] = {
    "v1 versions": lambda h, c: h.get("/v1/versions"),
    "v1 versions latest": lambda h, c: h.get("/v1/versions", params={"latest_only": "true"}),
    "v1 repos": lambda h, c: h.get("/v1/repos"),
    "v1 bases": lambda h, c: h.get("/v1/bases"),
    "ui index": lambda h, c: h.get("/ui"),
    "ui repos filtered": lambda h, c: h.get("/ui/repos", params={"task": "task0"}),
    "ui repos searched": lambda h, c: h.get("/ui/repos", params={"q": "r1"}),
    "ui repository": lambda h, c: h.get("/ui/r/acme/r0"),
    "ui version linked": lambda h, c: h.get("/ui/r/acme/r0/1"),
    "ui version unlinked": lambda h, c: h.get("/ui/r/acme/r1/1"),
    "ui bases": lambda h, c: h.get("/ui/bases"),
    "ui base": lambda h, c: h.get("/ui/base", params={"ref": "acme/base-0"}),
    "hub model info": lambda h, c: h.get("/api/models/acme/r0"),
    "hub model info at a number": lambda h, c: h.get("/api/models/acme/r0/revision/1"),
    "hub tree": lambda h, c: h.get("/api/models/acme/r0/tree/main"),
    "hub paths-info": lambda h, c: h.post(
        "/api/models/acme/r0/paths-info/main", data={"paths": [ADAPTER, "adapter_config.json"]}
    ),
    "hub HEAD main": lambda h, c: h.head(f"/acme/r0/resolve/main/{ADAPTER}"),
    "hub GET main": lambda h, c: h.get(f"/acme/r0/resolve/main/{ADAPTER}"),
    "hub HEAD alias": lambda h, c: h.head(f"/acme/r0/resolve/a0/{ADAPTER}"),
    "hub GET number": lambda h, c: h.get(f"/acme/r0/resolve/1/{ADAPTER}"),
    "hub HEAD commit": lambda h, c: h.head(f"/acme/r0/resolve/{c}/{ADAPTER}"),
    "hub GET commit": lambda h, c: h.get(f"/acme/r0/resolve/{c}/{ADAPTER}"),
    "hub list models": lambda h, c: h.get("/api/models", params={"author": "acme", "full": "true"}),
    "hub list models searched": lambda h, c: h.get("/api/models", params={"search": "r"}),
    "hub refs": lambda h, c: h.get("/api/models/acme/r0/refs"),
    "hub commits": lambda h, c: h.get("/api/models/acme/r0/commits/main"),
    "hub paths-info expanded": lambda h, c: h.post(
        "/api/models/acme/r0/paths-info/main", data={"paths": [ADAPTER], "expand": "true"}
    ),
    "hub HEAD base": lambda h, c: h.head("/acme/base-0/resolve/main/config.json"),
}
"""Every page asked for: the same URLs at both sizes (`c`: the commit id of acme/r0:1)."""


def _measure(settings: Settings) -> dict[str, tuple[int, int]]:
    """(cold, warm) statements per page, on a fresh Registry and app."""
    reg = Registry.from_settings(settings)
    counter = Counter(reg)
    out: dict[str, tuple[int, int]] = {}
    try:
        http = TestClient(create_app(settings, reg), follow_redirects=False)
        commit = http.get("/api/models/acme/r0/revision/1").json()["sha"]
        for name, ask in PAGES.items():
            counts = []
            for _ in range(2):
                with counter.counting():
                    answer = ask(http, commit)
                counts.append(counter.stop())
                assert answer.status_code < 400, (name, answer.status_code, answer.text[:300])
            out[name] = (counts[0], counts[1])
    finally:
        reg.close()
    return out


@pytest.fixture(scope="module")
def measured(
    database: str,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """page -> ((cold, warm) on the small registry, (cold, warm) once grown); one database per
    module and kind (tests/ui/conftest.py's `database`)."""
    tmp = tmp_path_factory.mktemp("query-counts")
    settings = Settings(home=tmp / "home", database_url=database, user="tester")
    reg = Registry.from_settings(settings, migrate=True)
    try:
        client = LocalClient(
            reg, "tester", LocalBlobStore(tmp / "cache"), principal=Principal.operator("tester")
        )
        have = {"bases": 0, "repos": 0, "versions": 0}
        _populate(client, tmp / "folders", SMALL, have)
        small = _measure(settings)
        _populate(client, tmp / "folders", LARGE, have)
        large = _measure(settings)
    finally:
        reg.close()
    return {page: (small[page], large[page]) for page in small}


@pytest.mark.parametrize("page", PAGES)
def test_a_page_costs_the_same_queries_small_and_grown(
    page: str, measured: dict[str, tuple[tuple[int, int], tuple[int, int]]]
) -> None:
    (cold_small, warm_small), (cold_large, warm_large) = measured[page]
    assert (cold_large, warm_large) == (cold_small, warm_small), (
        f"{page}: {cold_small} then {warm_small} statements on {SMALL}, "
        f"{cold_large} then {warm_large} on {LARGE}"
    )
