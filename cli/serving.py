"""`adapters generate`: try an adapter from the shell (issue 14)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cli.app import current_app, with_client
from cli.output import RichProgress, emit, err_console, json_option
from cli.params import REF

if TYPE_CHECKING:
    from registry.client import RegistryClient


@click.command()
@click.argument("ref", type=REF)
@click.argument("prompt")
@click.option(
    "--base",
    required=True,
    help="A registered base whose files were uploaded (name or fingerprint), or a model folder.",
)
@click.option("--max-new-tokens", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
@click.option(
    "--dtype",
    # The names `plan` and `export` take, and torch's; registry.tensors.multi_lora.DTYPES maps them
    # (not imported here: it would import torch when the CLI starts).
    type=click.Choice(["bf16", "fp16", "fp32", "bfloat16", "float16", "float32"]),
    help="Load the base in this dtype (default: as its folder says).",
)
@json_option
@with_client
def generate(
    client: RegistryClient,
    ref: str,
    prompt: str,
    base: str,
    max_new_tokens: int,
    device: str,
    dtype: str | None,
    as_json: bool,
) -> None:
    """Generate from PROMPT with adapter REF on a base (greedy), through the AdapterServer that
    serving code uses: the adapter is fit-checked against the base before anything loads."""
    from registry.serving import AdapterServer

    if not as_json:
        err_console.print(f"loading {base} and {ref}", highlight=False)
    # The pulled base stays in the cache folder (one copy per fingerprint): the next call reuses it.
    work_dir = current_app().settings.effective_cache_dir / "serving"
    with AdapterServer(
        base, client=client, device=device, dtype=dtype, work_dir=work_dir, progress=RichProgress(not as_json)
    ) as srv:
        name = srv.load(ref)
        [out] = srv.generate([prompt], adapters=[ref], max_new_tokens=max_new_tokens, do_sample=False)
        entry = next(x for x in srv.stats().loaded if x.name == name)
    doc: dict[str, Any] = {
        "ref": ref,
        "version": entry.ref,
        "digest": entry.digest,
        "base": base,
        "base_fingerprint": srv.fingerprint,
        "prompt": prompt,
        "text": out.text,
        "token_ids": out.token_ids,
    }
    emit(doc, as_json, lambda d: click.echo(d["text"] if d["text"] is not None else d["token_ids"]))


COMMANDS: list[click.Command] = [generate]
