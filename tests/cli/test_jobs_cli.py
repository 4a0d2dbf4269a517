"""`adapters jobs ...`, `--no-wait` and `adapters worker --once`, embedded."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli


def test_no_wait_then_a_worker_then_watch_show_and_cancel(embedded: Cli, adapters_dir: Path) -> None:
    embedded("base", "add", "--config", str(adapters_dir / "base" / "config.json"), "--name", "tiny-llama")
    embedded("push", str(adapters_dir / "lora_a"), "acme/legal", "--base", "tiny-llama")
    embedded("push", str(adapters_dir / "lora_b"), "acme/medical", "--base", "tiny-llama")
    queued = embedded.json("merge", "acme/legal=0.5", "acme/medical=0.5", "--into", "acme/mix", "--no-wait")
    assert queued["status"] == "queued" and queued["type"] == "merge"
    job_id = str(queued["id"])
    assert embedded.json("jobs", "show", job_id)["status"] == "queued"  # nobody ran it
    ran = embedded.json("worker", "--once", "--device", "cpu")
    assert ran["jobs_run"] == 1
    done = embedded.json("jobs", "watch", job_id)
    assert done["status"] == "succeeded" and done["result"]["ref"] == "acme/mix:1" and done["progress"] == 1.0
    assert "succeeded" in embedded("jobs", "show", job_id).stdout
    finished = embedded("jobs", "cancel", job_id, "--json", ok=False)
    assert finished.exit_code == 1 and json.loads(finished.stdout)["error"]["code"] == "job_finished"

    second = embedded.json("merge", "acme/legal=1", "--into", "acme/copy", "--no-wait")
    cancelled = embedded.json("jobs", "cancel", str(second["id"]))
    assert cancelled["status"] == "cancelled"
    watched = embedded("jobs", "watch", str(second["id"]), "--json", ok=False)
    assert watched.exit_code == 1 and json.loads(watched.stdout)["error"]["code"] == "job_cancelled"
    listed = embedded.json("jobs", "list")
    assert [(j["id"], j["status"]) for j in listed] == [
        (second["id"], "cancelled"),
        (queued["id"], "succeeded"),
    ]
    assert [j["id"] for j in embedded.json("jobs", "list", "--status", "cancelled")] == [second["id"]]
    missing = embedded("jobs", "show", "999", ok=False)
    assert missing.exit_code == 1 and "not_found" in missing.stderr
