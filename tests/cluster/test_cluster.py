"""Through a load balancer that alternates between two replicas (nginx, round-robin, no
stickiness): CLI push and pull, a Hub multipart upload whose parts land on both replicas, a UI
session made on one replica used on the other, and a job submitted through one replica and run by
a worker. Nothing a request needs may live only on the replica that took an earlier one."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import CHUNK
from tests.cluster.harness import Cluster
from tests.hub.clients import run_client

pytestmark = pytest.mark.slow


def _adapter(out: Path, seed: int, r: int = 4) -> Path:
    from peft import LoraConfig

    from tests.adapters_factory import save_peft, tiny_llama

    config = LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return save_peft(tiny_llama(seed), config, out)


def _cli(cluster: Cluster, home: Path, *args: str, timeout: float = 120) -> dict:
    proc = subprocess.run(
        [str(Path(cluster.replicas[0].argv[0])), *args, "--json"],
        env=cluster.client_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"adapters {' '.join(args)}: {proc.stdout}\n{proc.stderr}\n{cluster.logs()}"
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _since(cluster: Cluster, mark: int) -> list[tuple[str, str, int, str]]:
    return cluster.routed()[mark:]


def test_cli_push_and_pull_alternate_between_replicas(cluster: Cluster, tmp_path: Path) -> None:
    folder = _adapter(tmp_path / "a", seed=1)
    mark = len(cluster.routed())
    pushed = _cli(cluster, tmp_path / "home", "push", str(folder), "acme/cluster-a")
    _cli(cluster, tmp_path / "home", "pull", "acme/cluster-a", "-o", str(tmp_path / "out"))
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "out" / name).read_bytes() == (folder / name).read_bytes()
    routed = _since(cluster, mark)
    assert {r for *_, r in routed} == {"replica1", "replica2"}, routed
    assert all(status < 400 for _, _, status, _ in routed), routed
    assert pushed["version"] == 1


def test_hub_multipart_parts_land_on_both_replicas(cluster: Cluster, tmp_path: Path) -> None:
    folder = _adapter(tmp_path / "hub", seed=4, r=16)
    weights = (folder / "adapter_model.safetensors").read_bytes()
    assert len(weights) > 3 * CHUNK
    mark = len(cluster.routed())
    got = run_client(
        cluster.url,
        tmp_path / "hf",
        f"""
        api = hf.HfApi()
        api.create_repo("acme/cluster-hub", exist_ok=True)
        api.upload_folder(folder_path={str(folder)!r}, repo_id="acme/cluster-hub")
        path = hf.hf_hub_download("acme/cluster-hub", "adapter_model.safetensors")
        out(open(path, "rb").read().hex())
        """,
        HF_TOKEN=cluster.token,
    )
    assert bytes.fromhex(got) == weights
    routed = _since(cluster, mark)

    def segments(uri: str) -> int:
        return len(uri.split("?")[0].removeprefix("/api/lfs-upload/").split("/"))

    parts = [
        r
        for m, uri, _, r in routed
        if m == "PUT" and uri.startswith("/api/lfs-upload/") and segments(uri) == 5
    ]
    assert len(parts) == -(-len(weights) // CHUNK), routed
    assert set(parts) == {"replica1", "replica2"}, parts
    done = [r for m, uri, _, r in routed if m == "POST" and "/api/lfs-upload/" in uri]
    assert len(done) == 1, routed


def _next_on(cluster: Cluster, replica: str, http: httpx.Client) -> None:
    """Make the next request through the balancer go to `replica` (round-robin: the one that did
    not answer the last)."""
    if cluster.routed()[-1][3] == replica:
        http.get("/healthz")
    assert cluster.routed()[-1][3] != replica


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


def test_ui_session_made_on_one_replica_works_on_the_other(cluster: Cluster) -> None:
    http = httpx.Client(base_url=cluster.url, timeout=30)
    http.get("/healthz")
    _next_on(cluster, "replica1", http)
    form = http.get("/ui/login")  # replica1 makes the nonce and its CSRF token
    assert form.status_code == 200
    login = http.post(
        "/ui/login", data={"token": cluster.token, "csrf_token": _csrf(form.text), "next": "/ui"}
    )
    assert login.status_code == 303, login.text  # replica2 checked replica1's token
    page = http.get("/ui")  # replica1 reads replica2's login cookie
    assert page.status_code == 200 and "admin" in page.text
    out = http.post("/ui/logout", data={"csrf_token": _csrf(page.text)})
    assert out.status_code == 303, out.text
    steps = [(m, u.split("?")[0], r) for m, u, _, r in cluster.routed()[-4:]]
    assert steps == [
        ("GET", "/ui/login", "replica1"),
        ("POST", "/ui/login", "replica2"),
        ("GET", "/ui", "replica1"),
        ("POST", "/ui/logout", "replica2"),
    ]


def test_a_job_submitted_through_the_balancer_runs_on_a_worker(cluster: Cluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name, seed in (("acme/cluster-m1", 2), ("acme/cluster-m2", 3)):
        _cli(cluster, home, "push", str(_adapter(tmp_path / name.split("/")[1], seed)), name)
    mark = len(cluster.routed())
    started = time.monotonic()
    job = _cli(
        cluster,
        home,
        "merge",
        "acme/cluster-m1=0.5",
        "acme/cluster-m2=0.5",
        "--into",
        "acme/cluster-merged",
        "--method",
        "linear",
        "--no-wait",
    )
    job_id = str(job.get("id") or job.get("job_id"))
    http = httpx.Client(
        base_url=cluster.url, headers={"Authorization": f"Bearer {cluster.token}"}, timeout=30
    )
    while True:
        shown = http.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if shown["status"] in ("succeeded", "failed", "cancelled"):
            break
        assert time.monotonic() - started < 90, shown
        time.sleep(0.2)
    assert shown["status"] == "succeeded", shown
    ran = [w.name for w in cluster.workers if f"runs job {job_id} " in w.log.read_text()]
    assert len(ran) == 1, cluster.logs()  # one of the two workers took it, exactly once
    assert {r for *_, r in _since(cluster, mark)} == {"replica1", "replica2"}
    _cli(cluster, home, "pull", "acme/cluster-merged", "-o", str(tmp_path / "merged"))
    assert (tmp_path / "merged" / "adapter_model.safetensors").stat().st_size > 0
