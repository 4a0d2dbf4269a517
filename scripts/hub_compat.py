"""`make hub-compat`: the same Hub read checks with each huggingface_hub generation.

    python scripts/hub_compat.py [--versions 0.36.2]

Seeds a registry (SQLite + file store in a temp ADAPTERS_HOME: an admin, a token, acme/legal:1
with alias production and acme/legal:2), starts `adapters serve --no-worker` on loopback, then runs
the checks in a subprocess of each client: the project venv's huggingface_hub (2.x, httpx) and one
venv per older version (.venv-hubcompat-<v>, `pip install huggingface_hub==<v>`; 0.36 is the last
requests-based generation). Prints one line per check and a table; exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hub import seeded_server, write_small_adapter  # noqa: E402

CHECKS = r"""
import hashlib, json, os, sys
import huggingface_hub as hf
from huggingface_hub import errors as E
expect = json.loads(sys.argv[1])
api = hf.HfApi()
res = {}
def check(name, fn):
    try:
        res[name] = "pass" if fn() else "FAIL: wrong answer"
    except Exception as err:
        res[name] = f"FAIL: {type(err).__name__}: {str(err)[:200]}"
def raises(cls, fn):
    try:
        fn()
    except cls:
        return True
    return False
def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
check("model_info", lambda: api.model_info("acme/legal").sha == expect["v2"]
      and {s.rfilename for s in api.model_info("acme/legal", files_metadata=True).siblings} == set(expect["files"]))
check("model_info@alias", lambda: api.model_info("acme/legal", revision="production").sha == expect["v1"])
check("list_repo_tree", lambda: sorted(e.path for e in api.list_repo_tree("acme/legal", recursive=True))
      == sorted(expect["files"]))
check("hf_hub_download", lambda: sha(hf.hf_hub_download("acme/legal", "adapter_model.safetensors", revision="production"))
      == expect["files"]["adapter_model.safetensors"]["v1"])
def snap():
    d = hf.snapshot_download("acme/legal")
    return {p: sha(os.path.join(d, p)) for p in expect["files"]} == {p: h["v2"] for p, h in expect["files"].items()}
check("snapshot_download", snap)
check("list_models", lambda: [m.id for m in api.list_models(author="acme", search="legal", cardData=True)]
      == ["acme/legal"])
check("list_repo_commits", lambda: [c.commit_id for c in api.list_repo_commits("acme/legal")]
      == [expect["v2"], expect["v1"]])
check("get_paths_info", lambda: [e.path for e in api.get_paths_info("acme/legal", ["adapter_config.json", "nope"],
                                                                    revision="production")] == ["adapter_config.json"])
check("error:repo", lambda: raises(E.RepositoryNotFoundError, lambda: api.model_info("acme/nothing")))
check("error:revision", lambda: raises(E.RevisionNotFoundError, lambda: hf.hf_hub_download("acme/legal", "adapter_config.json", revision="staging")))
check("error:entry", lambda: raises(E.EntryNotFoundError, lambda: hf.hf_hub_download("acme/legal", "missing.json")))
print("@@" + json.dumps({"version": hf.__version__, "checks": res}))
"""


def venv_python(version: str) -> Path:
    venv = ROOT / f".venv-hubcompat-{version}"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"huggingface_hub=={version}"], check=True)
    return py


def run_checks(
    python: Path, url: str, token: str, expect: dict[str, object], home: Path
) -> dict[str, object]:
    env = {
        **os.environ,
        "HF_ENDPOINT": url,
        "HF_TOKEN": token,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    proc = subprocess.run(
        [str(python), "-c", CHECKS, json.dumps(expect)], env=env, capture_output=True, text=True, timeout=300
    )
    if "@@" not in proc.stdout:
        return {"version": "?", "checks": {"client": f"FAIL: {proc.stderr.strip()[-300:]}"}}
    return json.loads(proc.stdout.rsplit("@@", 1)[1])  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", default="0.36.2", help="older huggingface_hub versions, comma-separated")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hub-compat-") as tmp:
        work = Path(tmp)
        v1 = write_small_adapter(work / "v1", seed=1)
        v2 = write_small_adapter(work / "v2", seed=2)
        with seeded_server(
            work / "home", [("acme/legal", work / "v1", ["production"]), ("acme/legal", work / "v2", [])]
        ) as srv:
            expect = {
                "v1": srv.commits[0],
                "v2": srv.commits[1],
                "files": {p: {"v1": v1[p], "v2": v2[p]} for p in v2},
            }
            pythons = [(f"{sys.executable} (project venv)", Path(sys.executable))]
            pythons += [(f".venv-hubcompat-{v}", venv_python(v)) for v in args.versions.split(",")]
            results = [
                (label, run_checks(py, srv.url, srv.token, expect, work / f"hf-{i}"))
                for i, (label, py) in enumerate(pythons)
            ]
    failed = False
    print(f"{'huggingface_hub':<18}{'checks passed':>14}  where")
    for label, res in results:
        checks = res["checks"]
        assert isinstance(checks, dict)
        bad = {k: v for k, v in checks.items() if v != "pass"}
        failed |= bool(bad)
        print(f"{res['version']!s:<18}{len(checks) - len(bad):>7}/{len(checks):<6}  {label}")
        for name, why in bad.items():
            print(f"    {name}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
