"""Each kind of job is declared once (registry/jobspec/kinds.py) and everything else derives from
it: the API's enum, the parameter and result tables, the worker's bodies, the CLI's options.
These tests read the declarations, no job runs."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import click
import pytest

from cli.job_options import JobCommand
from cli.tensor_jobs import COMMANDS
from registry.jobspec import KINDS, PARAMS_BY_TYPE, RESULTS_BY_TYPE, JobAccess, JobRequest, JobType, kind_of
from registry.worker.kinds import BODIES

ROOT = Path(__file__).resolve().parents[2]
NOT_ON_THE_CLI = {"base_path"}
"""Set by the CLI itself (a model folder given as --base, embedded: cli/tensor_jobs.base_params)."""


def test_every_kind_has_its_tables_its_body_and_its_name_in_the_api() -> None:
    assert set(KINDS) == set(typing.get_args(JobType)) == set(PARAMS_BY_TYPE) == set(RESULTS_BY_TYPE)
    assert set(BODIES) == set(KINDS)
    for name, kind in KINDS.items():
        assert BODIES[name].kind is kind
    assert JobRequest.model_json_schema()["properties"]["type"]["enum"] == list(KINDS)


def _command(kind: str) -> JobCommand:
    found = [c for c in COMMANDS if isinstance(c, JobCommand) and c.kind == kind]
    assert len(found) == 1, kind
    return found[0]


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_cli_takes_every_parameter_with_the_models_choices_and_defaults(kind: str) -> None:
    command = _command(kind)
    model = kind_of(kind).params
    params = {p.name: p for p in command.get_params(click.Context(command))}
    assert set(model.model_fields) - NOT_ON_THE_CLI <= set(params)
    for name, info in model.model_fields.items():
        param = params.get(name)
        if param is None or not isinstance(param, click.Option) or info.is_required():
            continue
        if isinstance(param.type, click.Choice) and typing.get_origin(info.annotation) is typing.Literal:
            # every value the model takes is offered (cli.params.Dtype offers both spellings of each)
            assert set(typing.get_args(info.annotation)) <= set(param.type.choices)
        default = info.get_default(call_default_factory=True)
        if param.is_flag or isinstance(param.type, click.types.FuncParamType | click.Choice):
            continue
        if name not in ("max_shard_size", "aliases"):  # given as text (5GB), as a tuple
            assert param.default == default, name


def test_the_client_imports_no_torch() -> None:
    """The tensor work a client command needs (`base add --config`) lives in registry/tensors."""
    for path in sorted((ROOT / "registry" / "client").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] in ("torch", "transformers") for n in names), path


@pytest.mark.parametrize(
    ("kind", "params", "access"),
    [
        (
            "merge",
            {"inputs": [{"ref": "a/x", "weight": 1}, {"ref": "b/y:2", "weight": -1}], "into": "c/z"},
            JobAccess(reads=("a/x", "b/y:2"), writes_repo="c/z"),
        ),
        (
            "export",
            {"ref": "a/x@prod", "base": "llama"},
            JobAccess(reads=("a/x@prod",), base="llama", writes_repo="a/x"),
        ),
        (
            "export",
            {"ref": "a/x", "base": "llama", "into": "team/merged"},
            JobAccess(reads=("a/x",), base="llama", writes_base_name="team/merged"),
        ),
        (
            "check-4bit",
            {"ref": "a/x:3", "base": "llama"},
            JobAccess(reads=("a/x:3",), base="llama", writes_repo="a/x"),
        ),
    ],
)
def test_each_kind_says_what_it_reads_and_writes(
    kind: str, params: dict[str, object], access: JobAccess
) -> None:
    """What services/jobs.py checks at submission and scopes a narrowed token by, for every kind."""
    assert kind_of(kind).parse(params).access() == access
