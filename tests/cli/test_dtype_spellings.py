"""One dtype vocabulary (registry.dtypes): every command that names a dtype takes both spellings in
any case, keeps the spelling its records use, and lists every spelling in its help; the job
parameters accept the same spellings, so the API and the CLI agree."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from cli.main import cli
from cli.params import DTYPE, TORCH_DTYPE
from registry.jobspec import Check4bitParams, ExportParams
from registry.planning import PlanOptions


@pytest.mark.parametrize(
    ("text", "short", "long"),
    [("bf16", "bf16", "bfloat16"), ("BFloat16", "bf16", "bfloat16"), ("FP32", "fp32", "float32")],
)
def test_both_spellings_any_case(text: str, short: str, long: str) -> None:
    assert DTYPE.convert(text, None, None) == short
    assert TORCH_DTYPE.convert(text, None, None) == long
    assert ExportParams(ref="a/b", base="x", dtype=text).dtype == short
    assert Check4bitParams(ref="a/b", base="x", compute_dtype=text).compute_dtype == long
    assert PlanOptions(dtype=text).dtype == short  # type: ignore[arg-type]


def test_unknown_dtype_is_refused_as_before() -> None:
    with pytest.raises(ValidationError, match="'bf16', 'fp16' or 'fp32'"):
        ExportParams(ref="a/b", base="x", dtype="int3")


@pytest.mark.parametrize("command", [["plan"], ["export"], ["check-4bit"], ["generate"]], ids=lambda c: c[0])
def test_help_lists_every_spelling(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "bf16|fp16|fp32|bfloat16|float16|float32" in result.output
