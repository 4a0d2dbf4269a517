"""Issue 23, "clear words": what the CLI says to someone without a token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, open_cli


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    with open_cli("sqlite-file", request, tmp_path) as run:
        yield run


def test_no_token_names_the_login_command(server: Cli, adapters_dir: Path, tmp_path: Path) -> None:
    anonymous = Cli({**server.env, "ADAPTERS_TOKEN": "", "XDG_CONFIG_HOME": str(tmp_path / "config")})
    refused = anonymous("push", str(adapters_dir / "lora_a"), "bob/legal", ok=False)
    assert refused.exit_code == 1
    assert "adapters login" in refused.stderr and "ADAPTERS_TOKEN" in refused.stderr
    assert "Authorization" not in refused.stderr


def _as(server: Cli, tmp_path: Path, who: str, token: str) -> Cli:
    return Cli({**server.env, "ADAPTERS_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / f"{who}-config")})


def test_a_push_where_you_may_not_write_names_the_namespace(
    server: Cli, adapters_dir: Path, tmp_path: Path
) -> None:
    """May read, not write: 'you may not write namespace X'. May not even read (a private
    namespace, or one that does not exist): the same not-found answer for both, no existence leak,
    still saying what is true of both."""
    server("user", "add", "carol")
    server("grant", "carol", "carol", "write")
    server("grant", "carol", "team", "read")
    server("push", str(adapters_dir / "lora_a"), "secret/x")  # bob's private namespace, now exists
    carol = _as(server, tmp_path, "carol", server.json("token", "create", "--user", "carol")["token"])

    readable = carol("push", str(adapters_dir / "lora_a"), "team/legal", ok=False)
    assert readable.exit_code == 1
    assert "error (forbidden): you (carol) may not write namespace team" in readable.stderr
    assert "does not exist" not in readable.stderr

    private = carol("push", str(adapters_dir / "lora_a"), "secret/x", ok=False)
    ghost = carol("push", str(adapters_dir / "lora_a"), "ghost/x", ok=False)
    assert private.exit_code == ghost.exit_code == 1
    assert "you may not write namespace secret" in private.stderr
    assert private.stderr.replace("secret", "ghost") == ghost.stderr  # no existence leak
    assert "(not_found)" in ghost.stderr
    assert server.json("list", "--all-versions")["items"][0]["repo"] == "secret/x"
    assert len(server.json("list", "--all-versions")["items"]) == 1  # nothing stored


def test_an_anonymous_list_says_it_shows_public_namespaces_only(
    server: Cli, adapters_dir: Path, tmp_path: Path
) -> None:
    server("push", str(adapters_dir / "lora_a"), "pub/x")
    server("namespace", "set", "pub", "--public")
    anonymous = _as(server, tmp_path, "anonymous", "")
    listed = anonymous("list", "--json")
    assert [v["repo"] for v in json.loads(listed.stdout)["items"]] == ["pub/x"]  # --json: data only
    assert "only public namespaces" in listed.stderr and "adapters login" in listed.stderr
    assert "only public namespaces" in anonymous("list").stderr
    assert "public namespaces" not in server("list").stderr  # with a token: no note


LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _llama_config(folder: Path, hidden: int, layers: int) -> Path:
    folder.mkdir(parents=True)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 128,
        "max_position_embeddings": 64,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "config.json"


def _lora_files(folder: Path, hidden: int, layers: int) -> Path:
    """A LoRA adapter on every linear layer of a `layers`-layer Llama of width `hidden`, written as
    files (no training: the registry reads shapes)."""
    import numpy as np
    from safetensors.numpy import save_file

    inter = 2 * hidden
    shapes = {"gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}
    tensors = {}
    for i in range(layers):
        for leaf in LLAMA_MODULES:
            part = "mlp" if leaf in shapes else "self_attn"
            fan_in, fan_out = shapes.get(leaf, (hidden, hidden))
            key = f"base_model.model.model.layers.{i}.{part}.{leaf}"
            tensors[f"{key}.lora_A.weight"] = np.zeros((1, fan_in), dtype=np.float32)
            tensors[f"{key}.lora_B.weight"] = np.zeros((fan_out, 1), dtype=np.float32)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": 1,
        "lora_alpha": 2,
        "target_modules": list(LLAMA_MODULES),
        "base_model_name_or_path": "elsewhere/llama-wide",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_fit_explain_summarises_a_misfit_of_224_modules(embedded: Cli, tmp_path: Path) -> None:
    embedded("base", "add", "--config", str(_llama_config(tmp_path / "narrow", 32, 32)), "--name", "narrow")
    embedded("push", str(_lora_files(tmp_path / "wide", 64, 32)), "acme/wide")
    out = embedded("fit", "narrow", "--explain").stdout
    lines = [line for line in out.splitlines() if line.strip()]
    misfit = [i for i, line in enumerate(lines) if "does not fit acme/wide:1" in line]
    assert len(misfit) == 1, out
    first = misfit[0]
    assert "224 modules differ (224 other shapes)" in lines[first]
    assert "q_proj x32" in lines[first + 1] and "down_proj x32" in lines[first + 1]
    assert all(" expects " in line and ", base has " in line for line in lines[first + 2 : first + 5])
    assert "221 more (--json lists every one)" in lines[first + 5]
    assert len(lines) - first == 6  # the misfit in six lines, not 224 reasons on one
    rejected = embedded.json("fit", "narrow", "--explain")["rejected"]
    assert len(rejected[0]["reasons"]) == 224  # the document keeps every reason


def test_rankings_never_mix_datasets_and_all_points_show_in_the_table(
    embedded: Cli, adapters_dir: Path
) -> None:
    embedded("base", "add", str(adapters_dir / "base"), "--name", "tiny-llama")
    for folder, repo, evals in (
        ("lora_a", "acme/a", ["acc=0.9@mmlu:test", "acc=0.2@arc:test"]),
        ("lora_b", "acme/b", ["acc=0.3@mmlu:test", "acc=0.8@arc:test"]),
        ("lora_dora", "acme/c", ["acc=0.1@mmlu:test"]),
    ):
        embedded(
            "push", str(adapters_dir / folder), repo, "--base", "tiny-llama", *[f"--eval={e}" for e in evals]
        )
    ranking = ("--base", "tiny-llama", "--metric", "acc")
    for command in ("leaderboard", "pareto"):
        asked = embedded(command, *ranking, ok=False)
        assert asked.exit_code == 2, asked.output
        assert "acc was scored on 2 datasets (arc, mmlu)" in asked.output and "--dataset arc" in asked.output
        assert embedded(command, *ranking, "--json", ok=False).exit_code == 2
    board = embedded.json("leaderboard", *ranking, "--dataset", "arc")
    assert [(r["repo"], r["score"], r["dataset"]) for r in board["rows"]] == [
        ("acme/b", 0.8, "arc"),
        ("acme/a", 0.2, "arc"),
    ]
    # --all-points: the table lists every point, the front marked (it listed the front only).
    doc = embedded.json("pareto", *ranking, "--dataset", "mmlu", "--all-points")
    assert doc["total"] == 3 and doc["datasets"] == ["mmlu"]
    off = [p["ref"] for p in doc["points"] if not p["on_front"]]
    assert off
    text = embedded("pareto", *ranking, "--dataset", "mmlu", "--all-points").stdout
    assert all(p["ref"] in text for p in doc["points"]) and "front" in text
    front_only = embedded("pareto", *ranking, "--dataset", "mmlu").stdout
    shown = doc["total"] - len(off)
    assert f"{shown} of 3 points (--all-points lists the others)" in front_only


def test_library_noise_is_kept_off_stderr_unless_asked(qlora_dir: Path, tmp_path: Path) -> None:
    """The real `adapters` process (libraries imported fresh, stderr as a user sees it): check-4bit
    without -v prints no bitsandbytes kernels message, no FutureWarning, no PEFT warning; -v runs
    the same; an error is always printed. Whether the libraries speak at all on this path depends on
    their versions (bitsandbytes 0.50 and transformers 5.25 are silent here even with -v, where
    older ones were not), so what -v lets through is pinned in-process below, against the real
    warnings and logging machinery."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "ADAPTERS_HOME": str(tmp_path / "home"),
        "ADAPTERS_URL": "",
        "ADAPTERS_DATABASE_URL": "",
        "ADAPTERS_BLOB_URL": "",
        "ADAPTERS_DEBUG": "",
        "PYTHONWARNINGS": "",
    }
    exe = str(Path(sys.executable).parent / "adapters")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=300, check=False)

    base = str(qlora_dir / "base")
    assert run("push", str(qlora_dir / "lora"), "acme/legal", "--base", base).returncode == 0
    quiet = run("check-4bit", "acme/legal", "--base", base, "--probe", "2")
    assert quiet.returncode == 0, quiet.stderr
    loud = run("-v", "check-4bit", "acme/legal", "--base", base, "--probe", "2")
    assert loud.returncode == 0, loud.stderr
    noise = ("kernels-community", "Warning", "warnings.warn")
    assert not [n for n in noise if n in quiet.stderr], quiet.stderr
    failed = run("check-4bit", "acme/missing", "--base", base)
    assert failed.returncode == 1 and "error (not_found)" in failed.stderr


def test_quiet_libraries_hides_library_warnings_and_logs_until_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `adapters` without -v installs (cli/quiet.py): a warning attributed to a library module
    and a library's log record below ERROR are dropped; the CLI's own warnings, a library's
    ERROR and, after restore() (what -v leaves in place), everything is shown again."""
    import logging
    import warnings

    from cli.quiet import quiet_libraries

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    # quiet_libraries sets TRANSFORMERS_VERBOSITY when unset, for the process: keep this one's.
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "warning")
    handler = Keep()
    # On the libraries' own loggers: transformers, once imported, stops propagating to the root.
    speakers = [logging.getLogger("bitsandbytes"), logging.getLogger("transformers")]
    for logger in speakers:
        logger.addHandler(handler)

    def speak() -> list[str]:
        records.clear()
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn_explicit(
                "rank_pattern is ignored", UserWarning, "config.py", 1, module="peft.config"
            )
            warnings.warn_explicit("our own", UserWarning, "render.py", 1, module="cli.render")
            logging.getLogger("bitsandbytes.cextension").warning("kernels-community: no kernel")
            logging.getLogger("transformers.modeling_utils").error("a library error")
        return [str(w.message) for w in seen] + [r.getMessage() for r in records]

    try:
        restore = quiet_libraries()
        try:
            assert speak() == ["our own", "a library error"]
        finally:
            restore()
        assert speak() == [
            "rank_pattern is ignored",
            "our own",
            "kernels-community: no kernel",
            "a library error",
        ]
    finally:
        for logger in speakers:
            logger.removeHandler(handler)
