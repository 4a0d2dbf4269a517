"""`adapters generate`: try an adapter from the shell (issue 14)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cli.app import current_app, with_client
from cli.output import RichProgress, emit, err_console, json_option
from cli.params import DTYPE, REF

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
    type=DTYPE,
    help="Load the base in this dtype (default: as its folder says).",
)
@click.option(
    "--tokenizer",
    help="Where to take the tokenizer from when the base holds none: a folder or a registered base.",
)
@click.option(
    "--token-ids",
    is_flag=True,
    help="PROMPT is token ids (comma or space separated), for a base without a tokenizer.",
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
    tokenizer: str | None,
    token_ids: bool,
    as_json: bool,
) -> None:
    """Generate from PROMPT with adapter REF on a base (greedy), through the AdapterServer that
    serving code uses: the adapter is fit-checked against the base before anything loads."""
    from registry.serving import AdapterServer

    ids = _token_ids(prompt) if token_ids else None

    if not as_json:
        err_console.print(f"loading {base} and {ref}", highlight=False)
    # The pulled base stays in the cache folder (one copy per fingerprint): the next call reuses it.
    work_dir = current_app().settings.effective_cache_dir / "serving"
    with AdapterServer(
        base,
        client=client,
        device=device,
        dtype=dtype,
        work_dir=work_dir,
        progress=RichProgress(not as_json),
        tokenizer=tokenizer,
    ) as srv:
        name = srv.load(ref)
        prompts: list[Any] = [prompt] if ids is None else [ids]
        [out] = srv.generate(prompts, adapters=[ref], max_new_tokens=max_new_tokens, do_sample=False)
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


def _token_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(
            "with --token-ids, PROMPT is integers separated by commas or spaces"
        ) from None
    if not ids or min(ids) < 0:
        raise click.BadParameter("with --token-ids, PROMPT is one or more non-negative integers")
    return ids


COMMANDS: list[click.Command] = [generate]
