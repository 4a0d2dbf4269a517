"""Run the real Hugging Face clients (huggingface_hub, transformers, PEFT) in a subprocess whose
HF_ENDPOINT is a registry server: their constants are read from the environment at import time,
and each run gets a cache of its own in HF_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PRELUDE = """
import json, sys
import huggingface_hub as hf
from huggingface_hub import errors as hf_errors
def out(value):
    print("\\n@@RESULT@@" + json.dumps(value, default=str))
"""


def run_client(endpoint: str, hf_home: Path, code: str, timeout: float = 300, **env: str) -> Any:
    """Run `code` (which calls `out(value)` once) and return that value; a failure raises with
    the subprocess's output."""
    inherited = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    environ = {
        **inherited,
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        **env,
    }
    for name in [k for k, v in env.items() if v == ""]:
        environ.pop(name, None)  # an empty value removes the variable (HF_HUB_DISABLE_XET="")
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
        raise AssertionError(f"client failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1].strip())
