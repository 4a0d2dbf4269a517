"""What one merge job of two inputs asks the database, run by a worker on an embedded registry
(SQLite, adapters written as files): the version lookups (services.versions.resolve) and the SQL
statements of the whole run, heartbeats included (they vary by a few).

    python bench/job_lookups.py [--runs 3]

Here, at 43e3e09~1 (before jobs had one JobIO per claim: each input resolved, then looked up again
by `pull`; the caller loaded three times): 4 lookups, 94 statements in each of 3 runs; at 43e3e09:
2 lookups, 71 to 72 statements.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import event

from registry.access.principal import Principal
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.config import Settings
from registry.jobspec import JobRequest
from registry.services import versions
from registry.services.context import Registry
from registry.worker import Worker, WorkerSettings
from tests.adapter_files import adapter_set

MERGE = {
    "inputs": [{"ref": "acme/a", "weight": 0.5}, {"ref": "acme/b", "weight": 0.5}],
    "into": "acme/mix",
    "method": "cat",
}


def one_run() -> dict[str, int]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-job-lookups-"))
    files = adapter_set(tmp / "files")
    settings = Settings(home=tmp / "home", user="op")
    reg = Registry.from_settings(settings, migrate=True)
    client = LocalClient(reg, "op", reg.store, principal=Principal.operator("op"))
    push_folder(client, files / "lora_a", "acme/a")
    push_folder(client, files / "lora_b", "acme/b")
    client.submit_job(JobRequest(type="merge", params=MERGE))
    counts = {"lookups": 0, "statements": 0}

    def statement(*_: Any) -> None:
        counts["statements"] += 1

    event.listen(reg.engine, "before_cursor_execute", statement)
    resolve = versions.resolve

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts["lookups"] += 1
        return resolve(*args, **kwargs)

    versions.resolve = counted  # type: ignore[assignment]
    try:
        info = Worker(reg, WorkerSettings.from_settings(settings)).run_once()
    finally:
        versions.resolve = resolve  # type: ignore[assignment]
        reg.close()
    assert info is not None and info.status == "succeeded", info
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    for _ in range(ap.parse_args().runs):
        print(one_run())


if __name__ == "__main__":
    main()
