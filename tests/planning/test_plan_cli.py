"""`adapters plan` end to end: a base registered with `adapters base add --config`, planned with
--json (embedded, and against a real server over HTTP), refusals as one line and an exit code, and
a recommendation that follows the registry's eval scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peft import IA3Config, LoraConfig

from registry.planning import Layout
from registry.planning.trainable import trainable
from tests.adapters_factory import save_base, save_peft, tiny_llama
from tests.cli.conftest import Cli, open_cli
from tests.conftest import resource_params
from tests.planning.models import FIXTURES, build, with_method, write_config


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(
        {
            "ADAPTERS_HOME": str(tmp_path / "home"),
            "ADAPTERS_URL": "",
            "ADAPTERS_DATABASE_URL": "",
            "ADAPTERS_BLOB_URL": "",
        }
    )


def test_plan_one_method_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    cli("base", "add", "--config", str(write_config("mistral", tmp_path)), "--name", "t/mistral")
    doc = cli.json("plan", "--base", "t/mistral", "--method", "lora", "--targets", "all-linear", "--r", "4")
    peft = with_method(build("mistral"), "mistral", "lora", "all-linear")
    # r=4 in the command: PEFT's count scales with r.
    assert doc["trainable_params"] * 2 == peft.get_nb_trainable_parameters()[0]  # type: ignore[operator]
    m = doc["memory"]
    assert m["total"] == sum(
        m[k] for k in ("base_weights", "trainable_weights", "gradients", "optimizer_states", "activations")
    )
    assert doc["targeted_modules"] == 14 and doc["fits"] is None

    qlora = cli.json(
        "plan", "--base", "t/mistral", "--method", "qlora", "--gpu-memory", "1GB", "--no-double-quant"
    )
    assert qlora["weights"]["format"] == "nf4" and qlora["fits"] is True
    assert qlora["memory"]["base_weights"] < m["base_weights"]

    gc = cli.json(
        "plan", "--base", "t/mistral", "--method", "full", "--gradient-checkpointing", "--seq-len", "2048"
    )
    no_gc = cli.json("plan", "--base", "t/mistral", "--method", "full", "--seq-len", "2048")
    assert gc["memory"]["activations"] < no_gc["memory"]["activations"]
    # AdamW: two fp32 states per parameter and a 4-byte step per tensor (2 blocks x 9 + 3 others).
    states = 2 * gc["memory"]["gradients"] + 4 * (2 * 9 + 3)
    assert gc["memory"]["base_weights"] == 0 and gc["memory"]["optimizer_states"] == states

    text = cli("plan", "--base", "t/mistral", "--method", "dora", "--gpu-memory", "24GB").stdout
    assert "fits" in text and "activations" in text


def test_refusals_are_one_line(cli: Cli, tmp_path: Path) -> None:
    cli("base", "add", "--config", str(write_config("gpt2", tmp_path)), "--name", "t/gpt2")
    bad_size = cli("plan", "--base", "t/gpt2", "--gpu-memory", "lots", ok=False)
    assert bad_size.exit_code == 2 and "--gpu-memory" in bad_size.output
    missing = cli("plan", "--base", "t/nope", "--method", "lora", ok=False)
    assert missing.exit_code == 1 and "nope" in missing.output and "Traceback" not in missing.output
    nothing = cli("plan", "--base", "t/gpt2", "--method", "lora", "--targets", "q_proj", ok=False)
    assert nothing.exit_code == 1 and "matches no" in nothing.output


@pytest.mark.models
def test_without_a_method_every_method_is_ranked_and_evidence_decides(cli: Cli, tmp_path: Path) -> None:
    base = save_base(tiny_llama(), tmp_path / "base")
    cli("base", "add", "--config", str(base / "config.json"), "--name", "t/llama")
    prior = cli.json("plan", "--base", "t/llama", "--gpu-memory", "8GB")
    assert {r["method"] for r in prior["ranking"]} == {
        "lora",
        "qlora",
        "dora",
        "ia3",
        "prefix",
        "prompt",
        "full",
    }
    assert prior["recommended"] == "lora" and prior["metric"] is None
    assert any("no eval scores" in r for r in prior["reasons"])

    # The registry's own evidence: IA3 adapters for this base score higher than LoRA ones.
    lora = save_peft(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), tmp_path / "lora")
    ia3 = save_peft(
        tiny_llama(),
        IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
        tmp_path / "ia3",
    )
    cli("push", str(lora), "t/lora", "--base", "t/llama", "--task", "qa", "--eval", "accuracy=0.61")
    cli("push", str(ia3), "t/ia3", "--base", "t/llama", "--task", "qa", "--eval", "accuracy=0.74")
    doc = cli.json("plan", "--base", "t/llama", "--gpu-memory", "8GB", "--task", "qa")
    assert doc["metric"] == "accuracy" and doc["recommended"] == "ia3"
    assert doc["ranking"][0]["evidence"]["best"] == 0.74 and doc["ranking"][1]["method"] == "lora"
    assert any("registry evidence on accuracy" in r and "lora 0.61" in r for r in doc["reasons"])

    # What does not fit is never recommended, whatever its scores.
    tight = cli.json("plan", "--base", "t/llama", "--gpu-memory", "200KB", "--task", "qa")
    assert all(r["fits"] is False for r in tight["ranking"]) and tight["recommended"] is None
    assert "no method fits" in tight["reasons"][0]

    text = cli(
        "plan", "--base", "t/llama", "--gpu-memory", "8GB", "--task", "qa", "--latency-critical"
    ).stdout
    assert "recommended: ia3" in text and "recipe: latency critical -> ia3: agrees" in text


@pytest.mark.parametrize("mode", resource_params("sqlite-file", "postgresql-file", server=True))
def test_plan_over_http_equals_embedded(
    mode: str, cli: Cli, request: pytest.FixtureRequest, tmp_path: Path, layouts: dict[str, Layout]
) -> None:
    config = write_config("bert", tmp_path)
    args = ("plan", "--base", "t/bert", "--method", "ia3", "--seq-len", "128")
    cli("base", "add", "--config", str(config), "--name", "t/bert")
    embedded = cli.json(*args)
    with open_cli(mode, request, tmp_path) as remote:
        remote("base", "add", "--config", str(config), "--name", "t/bert")
        over_http = remote.json(*args)
    assert over_http == embedded
    assert embedded["trainable_params"] == trainable(layouts["bert"], "ia3").params
    assert json.dumps(embedded)  # one JSON document


def test_plan_recommends_the_change_that_fits_70b_on_48gb(cli: Cli) -> None:
    """The issue's case: 70B on 48 GB answered "nothing recommended"; now QLoRA with gradient
    checkpointing, with the flags that plan it, and that command says it fits."""
    cli("base", "add", "--config", str(FIXTURES / "llama-2-70b.json"), "--name", "meta/llama-2-70b")
    doc = cli.json("plan", "--base", "meta/llama-2-70b", "--gpu-memory", "48GB")
    assert doc["recommended"] == "qlora"
    assert doc["adjusted"]["flags"] == ["--method qlora", "--gradient-checkpointing"]
    text = cli("plan", "--base", "meta/llama-2-70b", "--gpu-memory", "48GB").stdout
    assert "recommended: qlora on meta/llama-2-70b with gradient checkpointing on" in text
    command = "adapters plan --base meta/llama-2-70b --method qlora --gradient-checkpointing --gpu-memory"
    assert command in text and "nothing recommended" not in text
    planned = cli.json(*command.split()[1:], "48GB")
    assert planned["fits"] is True and planned["adjusted"] is None
    # One method asked for that does not fit: the same search, for that method.
    lora = cli("plan", "--base", "meta/llama-2-70b", "--method", "qlora", "--gpu-memory", "48GB").stdout
    assert "does not fit" in lora and "fits with gradient checkpointing on" in lora
    assert "plan it: adapters plan --base meta/llama-2-70b --method qlora --gradient-checkpointing" in lora
