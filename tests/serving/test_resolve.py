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


def test_remembers_at_most_max_refs_least_recently_asked_dropped(embedded: Pushed) -> None:
    client = embedded.client
    resolver = RefResolver(client, ttl_s=3600, max_refs=3)
    first = resolver.resolve("acme/a@production")
    resolver.resolve("acme/a")
    resolver.resolve("acme/b")
    resolver.resolve("acme/a")  # asked again: now the most recently asked
    resolver.resolve("acme/c")  # a fourth reference: the least recently asked (production) goes
    assert len(resolver) == 3
    v2 = push_folder(client, embedded.models / "a2", "acme/a", base=BASE)
    client.set_alias("acme/a:2", "production")
    # Well within the TTL: "acme/a" is still remembered (the old answer, as documented), while the
    # forgotten alias is asked again and sees the move.
    assert resolver.resolve("acme/a").digest == first.digest
    assert resolver.resolve("acme/a@production").digest == v2.digest
    assert len(resolver) == 3
    for n in range(1, 3):  # many distinct strings for the same versions: still three entries
        resolver.resolve(f"acme/a:{n}")
        resolver.resolve(f"acme/a@{resolver.resolve(f'acme/a:{n}').digest}")
    assert len(resolver) == 3
