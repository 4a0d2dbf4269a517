"""RefResolver: an alias (or a bare repository) is trusted for ttl_s, then asked again; a version
number or a digest names one version for ever. A clock the test moves stands in for time."""

from __future__ import annotations

from registry.client.transfer import push_folder
from registry.serving.resolve import RefResolver
from tests.serving.conftest import BASE, Pushed


def test_aliases_expire_after_the_ttl_and_fixed_references_never(embedded: Pushed) -> None:
    client = embedded.client
    now = [1000.0]
    resolver = RefResolver(client, ttl_s=30, clock=lambda: now[0])
    first = resolver.resolve("acme/a@production")
    latest = resolver.resolve("acme/a")
    pinned = resolver.resolve("acme/a:1")
    v2 = push_folder(client, embedded.models / "a2", "acme/a", base=BASE)
    client.set_alias("acme/a:2", "production")

    now[0] += 29.9  # within the TTL: the answer of 29.9 s ago
    assert resolver.resolve("acme/a@production").digest == first.digest
    assert resolver.resolve("acme/a").digest == latest.digest
    now[0] += 0.1  # the TTL has passed: asked again, the move is seen
    assert resolver.resolve("acme/a@production").digest == v2.digest
    assert resolver.resolve("acme/a").digest == v2.digest
    assert resolver.resolve("acme/a:1").digest == pinned.digest == first.digest
