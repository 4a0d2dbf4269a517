"""The `cluster` fixture: two replicas and two workers behind nginx (tests/cluster/harness.py),
one per module: starting it takes about 10 s on two cores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.harness import NGINX, Cluster

CHUNK = 4096
"""Hub multipart part size of the cluster: a 20 KB file goes up in five parts."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from pathlib import Path

    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: apt-get install -y nginx (.ci/run does)")
    with Cluster(
        workdir=tmp_path_factory.mktemp("cluster"), settings={"hub_multipart_chunk_bytes": str(CHUNK)}
    ) as c:
        yield c
