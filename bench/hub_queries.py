"""Database statements per Hub `snapshot_download` of an adapter of N files (issue 22).

    python bench/hub_queries.py [--files 20] [--database-url postgresql+psycopg://...]

Seeds a registry (SQLite in a temp folder unless a URL is given) with one adapter of FILES files
(lora_folder's, then small JSON files up to FILES), serves it with
uvicorn in this process (the statements are counted on the server's own engine,
`before_cursor_execute`; queries: all but BEGIN/COMMIT), and runs huggingface_hub's `snapshot_download` in a
subprocess (HF_ENDPOINT at the server, a fresh HF_HOME each time) three times: at `main`, at the
commit id twice (the second time the server has resolved that commit before). Printed: the HTTP
requests the server answered and the statements it ran, per run and per file. Before issue 22 a
file's HEAD and GET each resolved the whole revision (eight statements).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(url: str, home: Path, revision: str | None) -> None:
    code = textwrap.dedent(
        f"""
        import huggingface_hub as hf
        hf.snapshot_download("acme/bench", revision={revision!r})
        """
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_TOKEN", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    import uvicorn
    from sqlalchemy import event

    from registry.access.principal import OPERATOR, Principal
    from registry.api import create_app
    from registry.client.local import LocalClient
    from registry.client.transfer import push_folder
    from registry.config import Settings
    from registry.services import accounts
    from registry.services.context import Registry
    from storage.local import LocalBlobStore
    from tests.adapter_files import lora_folder

    tmp = Path(tempfile.mkdtemp(prefix="hub-queries-"))
    url = args.database_url or f"sqlite:///{tmp / 'registry.db'}"
    settings = Settings(home=tmp / "home", database_url=url, user="tester")
    reg = Registry.from_settings(settings, migrate=True)
    folder = lora_folder(tmp / "adapter", seed=1)
    i = 0
    while len(list(folder.iterdir())) < args.files:
        (folder / f"notes-{i:03d}.json").write_text(json.dumps({"file": i}))
        i += 1
    pushed = push_folder(
        LocalClient(reg, "tester", LocalBlobStore(tmp / "cache"), principal=Principal.operator("tester")),
        folder,
        "acme/bench",
    )
    accounts.set_namespace_visibility(reg, "acme", True, principal=OPERATOR)
    commit = pushed.digest.removeprefix("sha256:")[:40]

    counted: dict[str, int] = {"statements": 0, "queries": 0}

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        counted["statements"] += 1
        # SQLite's BEGIN IMMEDIATE is sent as a statement; PostgreSQL's BEGIN is not.
        counted["queries"] += not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))

    event.listen(reg.engine, "before_cursor_execute", seen)
    requests: list[str] = []
    app = create_app(settings, reg)

    async def access(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            requests.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    port = _port()
    server = uvicorn.Server(uvicorn.Config(access, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    out = []
    try:
        for label, revision in [("main", None), ("commit, cold", commit), ("commit, warm", commit)]:
            counted["statements"], counted["queries"], requests[:] = 0, 0, []
            _client(f"http://127.0.0.1:{port}", tmp / f"hf-{len(out)}", revision)
            n = counted["queries"]
            out.append(
                {
                    "revision": label,
                    "files": args.files,
                    "requests": len(requests),
                    "statements": counted["statements"],
                    "queries": n,
                    "queries_per_file": round(n / args.files, 2),
                }
            )
    finally:
        server.should_exit = True
        thread.join(10)
        reg.close()
    for row in out:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
