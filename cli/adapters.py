"""`adapters push`, `pull`, `list`, `show`: adapter versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli import render
from cli.app import App, pass_app, with_client
from cli.output import RichProgress, emit, emit_json, err_console, json_option, jsonable
from cli.params import ALIAS, EVAL, REF, REPO, trust_key_option

if TYPE_CHECKING:
    from registry.client import RegistryClient
    from registry.client.bases import PushBase
    from registry.entities import EvalScoreIn


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo", type=REPO)
@click.option(
    "--base",
    help="Base model: a registered name, sha256:<fingerprint> or a model folder (fingerprinted on the fly). "
    "Default: adapter_config's base_model_name_or_path.",
)
@click.option("--task", help="Task this adapter is for, e.g. legal-qa.")
@click.option(
    "--eval",
    "evals",
    type=EVAL,
    multiple=True,
    metavar="METRIC=VALUE[@DATASET[:SPLIT]]",
    help="An eval score; repeatable.",
)
@click.option(
    "--alias",
    "aliases",
    type=ALIAS,
    multiple=True,
    help="Point this alias at the pushed version; repeatable.",
)
@click.option("-m", "--message", help="What changed.")
@click.option(
    "--force", is_flag=True, help="Push even if the adapter does not fit its known base (recorded)."
)
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Take files matching GLOB (gitignore syntax) even where a skip rule matches; repeatable.",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Skip files matching GLOB (gitignore syntax); repeatable.",
)
@click.option(
    "--ignore-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Skip what this gitignore-syntax file lists (default: FOLDER/.adaptersignore when present).",
)
@click.option(
    "--all-checkpoints",
    is_flag=True,
    help="Push each FOLDER/checkpoint-N as a version, in step order (aliases and --eval go to the last).",
)
@click.option(
    "--signer-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The public key (PEM) that signed FOLDER/model.sig: the server then checks the signature "
    "itself, not only the signer's fingerprint and the files it lists.",
)
@json_option
@with_client
def push(
    client: RegistryClient,
    folder: Path,
    repo: str,
    base: str | None,
    task: str | None,
    evals: tuple[EvalScoreIn, ...],
    aliases: tuple[str, ...],
    message: str | None,
    force: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    ignore_file: Path | None,
    all_checkpoints: bool,
    signer_key: Path | None,
    as_json: bool,
) -> None:
    """Validate FOLDER (a PEFT adapter, a Trainer output_dir or one of its checkpoint-N folders) and
    push it as a new version of REPO (namespace/name).

    Training artefacts (training_args.bin, optimizer and scheduler states, checkpoint-*/, runs/,
    wandb/, .git) are skipped and listed; trainer_state.json's evaluations and facts are recorded.
    A model-signing signature (FOLDER/model.sig) must list exactly the pushed files; its signer is
    recorded.
    """
    from registry.client.transfer import push_checkpoints, push_folder
    from registry.formats.selection import Rules

    progress = RichProgress(not as_json)
    chosen = _push_base(client, base, folder, progress)
    options: dict[str, Any] = dict(
        base=chosen.value,
        force=force,
        task=task,
        evals=list(evals),
        aliases=list(aliases),
        message=message,
        progress=progress,
        rules=Rules(include=include, exclude=exclude, ignore_file=ignore_file),
        signer_key=signer_key.read_text() if signer_key else None,
    )
    note = {"base_note": chosen.note}
    if all_checkpoints:
        results = push_checkpoints(client, folder, repo, **options)
        emit([r.model_copy(update=note) for r in results], as_json, render.pushed_all)
    else:
        emit(push_folder(client, folder, repo, **options).model_copy(update=note), as_json, render.pushed)


def _push_base(client: RegistryClient, base: str | None, folder: Path, progress: RichProgress) -> PushBase:
    """registry.client.bases.push_base; a --base that names nothing known is a usage error."""
    from registry.client.bases import push_base
    from registry.errors import UnknownBase

    try:
        return push_base(client, base, folder, progress)
    except UnknownBase as err:
        raise click.BadParameter(str(err), param_hint="--base") from err


@click.command(name="pull")
@click.argument("ref", type=REF)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Target folder (default ./NAME); may be '.'."
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty folder: the adapter's files replace those of the same name, "
    "every other file is kept.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Refuse the version unless its model.sig is by a trusted key and lists exactly its files.",
)
@trust_key_option
@json_option
@pass_app
def pull_cmd(
    app: App,
    ref: str,
    output: Path | None,
    force: bool,
    verify: bool,
    trust_key: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Download REF (ns/name, ns/name:3, ns/name@alias, ns/name@sha256:...) into a folder.

    Every file is verified before it is written; nothing the registry did not write is deleted.
    With --verify, the signature is checked against keys trusted here before a file is written.
    """
    progress = RichProgress(not as_json)
    if verify:
        from registry.client.verify import pull_verified, trusted_keys

        keys = trusted_keys(trust_key, app.settings.config_dir)
        info, out, verified = pull_verified(app.client, ref, output, keys, force=force, progress=progress)
        signed = {"signer": verified.signer.describe(), "fingerprint": verified.signer.fingerprint}
        verified_doc = {
            "repo": info.repo,
            "version": info.version,
            "digest": info.digest,
            "path": str(out),
            "files": jsonable(info.files),
            "verified": signed,
        }
        emit(verified_doc, as_json, render.pulled)
        return
    from registry.client.reads import pull_ref

    found, out = pull_ref(app.reads, ref, output, force=force, progress=progress)
    files = found.doc()["files"]  # what was written: an attached model.sig too
    doc = {
        "repo": found.repo,
        "version": found.version,
        "digest": found.digest,
        "path": str(out),
        "files": files,
    }
    emit(doc, as_json, render.pulled)


@click.command(name="list")
@click.option("--task")
@click.option("--base", help="Base model name.")
@click.option("--peft-type", help="LORA, IA3, PREFIX_TUNING, ...")
@click.option("--repo", type=REPO, help="Only versions of this repository.")
@click.option(
    "--all-versions",
    is_flag=True,
    help="Every version. Without filters, only each repository's latest is listed.",
)
@click.option("--limit", default=50, show_default=True)
@click.option("--cursor", help="Continue from a previous page's next_cursor.")
@json_option
@pass_app
def list_cmd(
    app: App,
    task: str | None,
    base: str | None,
    peft_type: str | None,
    repo: str | None,
    all_versions: bool,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List adapters, newest first: each repository's latest, or every version matching the filters."""
    latest_only = not (all_versions or repo or task or base or peft_type)
    query: dict[str, Any] = dict(
        repo=repo, task=task, peft_type=peft_type, base=base, latest_only=latest_only
    )
    doc = app.reads.list_versions(query, limit, cursor)
    if app.settings.url and not app.settings.api_token():
        # On stderr, so that --json's document stays the listing alone.
        err_console.print(
            "note: not logged in: only public namespaces are listed; "
            "log in with `adapters login` or set ADAPTERS_TOKEN to see yours",
            highlight=False,
        )
    emit(doc, as_json, render.version_table)


@click.command(name="verify")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--provenance",
    "provenance_ref",
    type=REF,
    help="Instead of a folder: check REF's provenance statement (made by a merge or export job), "
    "signed by a trusted worker key (`adapters worker key`) and about exactly REF's files.",
)
@trust_key_option
@json_option
@pass_app
def verify_cmd(
    app: App, folder: Path | None, provenance_ref: str | None, trust_key: tuple[Path, ...], as_json: bool
) -> None:
    """Check FOLDER/model.sig: signed by a trusted key, listing exactly the folder's files."""
    from registry.client.verify import trusted_keys, verify_folder

    if (folder is None) == (provenance_ref is None):
        raise click.UsageError("give a FOLDER or --provenance REF (one of them)")
    keys = trusted_keys(trust_key, app.settings.config_dir)
    if provenance_ref is not None:
        from registry.client.signing import verify_provenance

        info, predicate, fingerprint = verify_provenance(app.client, provenance_ref, keys)
        build = predicate.get("buildDefinition", {})
        doc: dict[str, Any] = {
            "ref": f"{info.repo}:{info.version}",
            "digest": info.digest,
            "fingerprint": fingerprint,
            "build_type": build.get("buildType"),
            "job": build.get("internalParameters"),
            "parameters": build.get("externalParameters"),
            "inputs": build.get("resolvedDependencies"),
            "builder": predicate.get("runDetails", {}).get("builder"),
        }
        emit(doc, as_json, render.provenance)
        return
    assert folder is not None
    verified = verify_folder(folder, keys)
    doc = {
        "path": str(folder),
        "signer": verified.signer.describe(),
        "fingerprint": verified.signer.fingerprint,
        "identity": verified.signer.identity,
    }
    emit(doc, as_json, render.verified)


@click.command(name="sign")
@click.argument("ref", type=REF)
@click.option(
    "--key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your private key (PEM, P-256/384/521, unencrypted); it never leaves this machine.",
)
@click.option(
    "--certificate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The key's certificate (PEM): the signature then names its identity.",
)
@json_option
@with_client
def sign_cmd(client: RegistryClient, ref: str, key: Path, certificate: Path | None, as_json: bool) -> None:
    """Sign a version already in the registry (model-signing format, over its files). Its digest
    does not change; the signature is attached, listed by `show` and pulled as model.sig."""
    from registry.client.signing import sign_stored

    info, sig = sign_stored(client, ref, key, certificate)
    doc = {**jsonable(sig), "ref": f"{info.repo}:{info.version}", "digest": info.digest}
    emit({**doc, "signature_digest": sig.digest}, as_json, render.signed)


@click.command()
@click.argument("ref", type=REF)
@json_option
@pass_app
def show(app: App, ref: str, as_json: bool) -> None:
    """Show one version: config, files, evals, aliases."""
    doc = app.reads.show(ref)
    if as_json:
        emit_json(doc)
        return
    from registry.entities import VersionInfo
    from registry.reads.entity import as_entity

    render.version(as_entity(VersionInfo, doc))


COMMANDS = [push, pull_cmd, list_cmd, show, verify_cmd, sign_cmd]
