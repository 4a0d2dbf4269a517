"""Malformed values are usage errors (exit 2, click's message naming the parameter), refused while
the command line is parsed: before any registry is opened. And `import cli.main` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.jobs import jobs
from tests.cli.conftest import Cli

pytestmark = pytest.mark.server

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "parameter", "says"),
    [
        (["merge", "acme/legal=oops", "--into", "acme/x"], "REF=WEIGHT...", "'oops' is not a finite number"),
        (["merge", "acme/legal", "--into", "acme/x"], "REF=WEIGHT...", "use REF=WEIGHT"),
        (["merge", "Acme/legal=0.5", "--into", "acme/x"], "REF=WEIGHT...", "is not a reference"),
        (["merge", "acme/legal=0.5", "--into", "acme/x", "--rank", "0"], "--rank", "'0' is not a positive"),
        (["merge", "acme/legal=0.5", "--into", "acme/x", "--rank", "two"], "--rank", "or 'auto'"),
        (["merge", "acme/legal=0.5", "--into", "x"], "--into", "is not a repository name"),
        (["push", "{dir}", "acme/x", "--eval", "acc=high"], "--eval", "'high' is not a finite number"),
        (["push", "{dir}", "acme/x", "--eval", "acc"], "--eval", "use --eval METRIC=VALUE"),
        (["push", "{dir}", "acme/x", "--eval", "acc=nan@mmlu"], "--eval", "not a finite number"),
        (["push", "{dir}", "acme/x", "--eval", "=1"], "--eval", "use --eval METRIC=VALUE"),
        (["push", "{dir}", "acme/x", "--alias", "latest"], "--alias", "not a valid alias"),
        (["push", "{dir}", "Bad Repo"], "REPO", "is not a repository name"),
        (["fit", "tiny-llama", "--min-score", "acc=x"], "--min-score", "'x' is not a finite number"),
        (["fit", "tiny-llama", "--min-score", "acc"], "--min-score", "use --min-score METRIC=VALUE"),
        (["export", "acme/x", "--base", "b", "--max-shard-size", "5XB"], "--max-shard-size", "not like 5GB"),
        (["export", "acme/x", "--base", "b", "-o", "out", "--no-wait"], "", "-o needs the export"),
        (["show", "Bad Ref"], "REF", "is not a reference"),
        (["pull", "acme/x:0"], "REF", "is not a reference"),
        (["alias", "set", "acme/x:1", "Prod"], "NAME", "not a valid alias"),
        (["alias", "rm", "acme", "prod"], "REPO", "is not a repository name"),
        (["list", "--repo", "nope"], "--repo", "is not a repository name"),
        (["base", "add", "--name", "x"], "", "give a model folder PATH or --config"),
        (["base", "add", "--config", "{dir}/config.json", "--name", "x", "--upload"], "", "--upload needs"),
    ],
)
def test_malformed_value_is_a_usage_error(
    embedded: Cli, tmp_path: Path, args: list[str], parameter: str, says: str
) -> None:
    (tmp_path / "config.json").write_text("{}")
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    for argv in (args, [*args, "--json"]):
        result = embedded(*argv, ok=False)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""  # no JSON document: the command never ran
        assert "Traceback" not in result.stderr
        assert (
            f"Invalid value for '{parameter}'" in result.stderr if parameter else "Error: " in result.stderr
        )
        assert says in result.stderr, result.stderr
    assert not (Path(embedded.env["ADAPTERS_HOME"]) / "registry.db").exists()  # nothing was opened


def test_a_command_invoked_without_the_root_group_opens_and_closes_its_client(embedded: Cli) -> None:
    result = CliRunner().invoke(jobs, ["list", "--json"], env=embedded.env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[]"


def test_import_stays_light() -> None:
    heavy = ["torch", "transformers", "uvicorn", "fastapi", "sqlalchemy", "httpx", "registry.worker"]
    code = f"import sys, cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
