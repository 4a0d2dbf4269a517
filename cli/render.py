"""How results look to people: rich tables, key/value listings, a job's progress bar. Each renderer
takes what the command's `--json` document is made of; none calls the registry."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from cli.output import console, err_console, human_bytes, say

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from registry.access.entities import GrantInfo, NamespaceInfo, TokenInfo, UserInfo, WhoAmI
    from registry.entities import (
        AliasInfo,
        BaseInfo,
        FitResult,
        PushResult,
        VersionInfo,
    )
    from registry.jobspec import ExportResult, JobInfo


def rows(items: list[tuple[str, Any]], width: int) -> None:
    """`key  value` lines, keys bold and right-aligned to `width`."""
    for key, value in items:
        say(f"[bold]{key:>{width}}[/bold]  {value}")


# ---------------------------------------------------------------- adapters and aliases
def pushed(result: PushResult) -> None:
    mark = "[green]pushed[/green]" if result.created else "[yellow]unchanged[/yellow]"
    say(f"{mark} {result.repo}:{result.version} {result.digest}  ({result.detail})")
    for s in result.skipped:
        count = f", {s.files} files" if s.path.endswith("/") else ""
        say(f"  skipped {escape(s.path)}  ({escape(s.reason)}{count})")
    for path, source in result.borrowed.items():
        say(f"  {escape(path)} taken from {escape(source)}")
    if result.base_note:
        say(f"  base: {escape(result.base_note)}")
    if result.created and result.info.training:
        say(f"  training: {training_line(result.info.training)}")


def pushed_all(results: list[PushResult]) -> None:
    """`push --all-checkpoints`: one block per checkpoint, in step order."""
    for result in results:
        pushed(result)


def training_line(facts: dict[str, Any]) -> str:
    """The training facts of a version in one line (formats/training.py's keys)."""
    names = {
        "global_step": "step",
        "epoch": "epoch",
        "best_metric": "best metric",
        "best_model_checkpoint": "best checkpoint",
        "learning_rate": "lr",
        "train_batch_size": "batch",
        "per_device_train_batch_size": "batch/device",
        "reported_scores": "eval records",
    }
    parts = [
        f"{label} {facts[key]:g}" if isinstance(facts[key], float) else f"{label} {facts[key]}"
        for key, label in names.items()
        if key in facts
    ]
    return escape(", ".join(parts) or "-")


def pulled(doc: dict[str, Any]) -> None:
    """`adapters pull`'s JSON document (repo, version, digest, path, files; verified)."""
    say(f"[green]pulled[/green] {doc['repo']}:{doc['version']} {doc['digest']} -> {doc['path']}")
    if doc.get("verified"):
        say(f"  signature verified: {escape(doc['verified']['signer'])}")


def signed(doc: dict[str, Any]) -> None:
    """`adapters sign`'s JSON document."""
    who = doc.get("identity") or doc["fingerprint"]
    say(f"[green]signed[/green] {doc['ref']} by {escape(who)}; its digest is unchanged ({doc['digest']})")


def provenance(doc: dict[str, Any]) -> None:
    """`adapters verify --provenance`'s JSON document."""
    say(
        f"[green]verified provenance[/green] of {doc['ref']} ({doc['digest']}), signed by {doc['fingerprint']}"
    )
    say(f"  made by {doc['build_type']} {doc.get('job') or ''}")
    for dep in doc.get("inputs") or []:
        say(f"  from {escape(str(dep.get('name')))} sha256:{dep.get('digest', {}).get('sha256')}")


def policy(doc: Any) -> None:
    """A namespace's signing policy."""
    say(
        f"{doc.namespace}: signatures {'required' if doc.require_signature else 'not required'}"
        + (f"; signed-only aliases: {', '.join(doc.signed_aliases)}" if doc.signed_aliases else "")
    )
    for k in doc.trusted_keys:
        state = f"[red]revoked {k.revoked_at:%Y-%m-%d %H:%M}[/red]" if k.revoked_at else "trusted"
        say(f"  {k.fingerprint}  {state} (added by {escape(k.added_by)})")


def verified(doc: dict[str, Any]) -> None:
    """`adapters verify`'s JSON document."""
    say(f"[green]verified[/green] {escape(doc['path'])}: signed by {escape(doc['signer'])}")


def version_table(page: dict[str, Any]) -> None:
    """A page of VersionSummary as its JSON document (registry.client.reads returns it in every mode)."""
    table = Table("ref", "peft", "r", "task", "base", "params", "aliases", "created")
    for v in page["items"]:
        table.add_row(
            v["ref"],
            v["peft_type"],
            str(v["r"] or ""),
            v["task"] or "",
            v["base_model"]["name"] or "",
            f"{v['trainable_params']:,}",
            ",".join(v["aliases"]),
            v["created_at"][:16].replace("T", " "),  # ISO 8601: YYYY-MM-DD HH:MM
        )
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


def version(v: VersionInfo) -> None:
    base = f"{v.base_model.name or '-'}" + (f" @ {v.base_model.revision}" if v.base_model.revision else "")
    lines: list[tuple[str, Any]] = [
        ("ref", v.ref),
        ("digest", v.digest),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("peft_type", v.peft_type),
        ("task_type", v.task_type or "-"),
        ("task", v.task or "-"),
        ("r / alpha", f"{v.r} / {v.lora_alpha}" if v.r else "-"),
        ("target_modules", str(v.target_modules)),
        ("rslora / dora", f"{v.use_rslora} / {v.use_dora}"),
        ("base", base),
        ("params", f"{v.trainable_params:,} ({human_bytes(v.adapter_bytes)})"),
        ("pushed", f"{v.created_at:%Y-%m-%d %H:%M:%S} by {v.pushed_by}"),
        ("message", v.message or "-"),
    ]
    for e in v.evals:
        where = f" ({e.dataset}{':' + e.split if e.split else ''})" if e.dataset else ""
        lines.append(("eval", f"{e.metric} = {e.value}{where}"))
    if v.training:
        lines.append(("training", training_line(v.training)))
    for sig in v.signatures:
        who = f"certificate {sig.identity} ({sig.fingerprint})" if sig.identity else f"key {sig.fingerprint}"
        # Say what was checked and no more (a review found claims shown as verified): a key bundle
        # names its key by fingerprint only, and a certificate here is checked against no CA.
        if sig.checked and sig.identity:
            how = "signature checked against its own certificate; the identity is the certificate's claim"
        elif sig.checked:
            how = "signature checked by the server with the key sent at push"
        else:
            how = "UNVERIFIED signer: the files match its list, the key was not sent (pull --verify checks)"
        if sig.attached:
            how = f"attached by {sig.created_by}" + (f", job {sig.job_id}" if sig.job_id else "")
        if sig.revoked:
            how += "; KEY REVOKED: satisfies no policy"
        label = "provenance" if sig.purpose == "provenance" else "signed"
        lines.append((label, escape(f"{who}  [{sig.path}; {how}]")))
    lines += _merge_lineage(v.lineage)
    for c in v.qlora_checks:
        why = f" ({'; '.join(c.reasons)})" if c.reasons else ""
        lines.append(
            ("4-bit check", f"{c.verdict} on {c.base}, {c.variant} ({c.checked_at:%Y-%m-%d %H:%M}){why}")
        )
    for f in v.files:
        lines.append(("file", f"{f.path}  {human_bytes(f.size)}  {f.sha256[:19]}"))
    rows(lines, 15)


def alias_set(info: AliasInfo) -> None:
    say(f"{info.repo}@{info.alias} -> {info.repo}:{info.version}")


def alias_removed(info: AliasInfo) -> None:
    say(f"removed {info.repo}@{info.alias} (was {info.repo}:{info.version})")


# ---------------------------------------------------------------- bases and fit
def base(b: BaseInfo) -> None:
    lines: list[tuple[str, Any]] = [
        ("names", ", ".join(n.name + (f"@{n.revision}" if n.revision else "") for n in b.names) or "-"),
        ("fingerprint", b.fingerprint or "unknown (structure only)"),
        ("structure", b.structure_signature),
        ("architecture", f"{','.join(b.architectures) or '-'} ({b.model_type})"),
        (
            "shape",
            f"hidden {b.hidden_size}, layers {b.num_layers}, heads {b.num_heads}/{b.num_kv_heads} kv, "
            f"vocab {b.vocab_size}",
        ),
        ("params", f"{b.param_count:,} {b.dtype or ''}"),
        ("modules", str(b.module_count)),
        ("uploaded", "yes" if b.uploaded else "no"),
    ]
    lines += _export_lineage(b.lineage)
    rows(lines, 13)


def base_table(items: list[BaseInfo]) -> None:
    table = Table("names", "fingerprint", "architecture", "hidden", "layers", "params", "uploaded")
    for b in items:
        table.add_row(
            ", ".join(n.name for n in b.names) or "-",
            (b.fingerprint or "structure only")[:19],
            ",".join(b.architectures) or (b.model_type or "-"),
            str(b.hidden_size or "-"),
            str(b.num_layers or "-"),
            f"{b.param_count:,}",
            "yes" if b.uploaded else "no",
        )
    console.print(table)


def base_pulled(ref: str, info: BaseInfo, out: Path) -> None:
    say(f"[green]pulled[/green] {ref} {info.fingerprint} -> {out}")


def fit(result: FitResult, sort_metric: str | None) -> None:
    label = ", ".join(n.name for n in result.base.names) or result.base.fingerprint or "?"
    table = Table(
        "ref",
        "tier",
        "peft",
        "r",
        "task",
        "trained on",
        *([sort_metric] if sort_metric else []),
        title=f"adapters that fit {label}",
    )
    for it in result.items:
        table.add_row(
            it.ref,
            it.tier,
            it.peft_type,
            str(it.r or ""),
            it.task or "",
            it.base_model or "",
            *([f"{it.score:g}" if it.score is not None else "-"] if sort_metric else []),
        )
    console.print(table)
    for rej in result.rejected or []:
        for line in misfit_lines(rej.ref, rej.reasons):
            say(line)


MISFIT_SHOWN = 3


def misfit_lines(ref: str, reasons: list[str]) -> list[str]:
    """One misfit, readable at any size: up to MISFIT_SHOWN reasons on one line; more as a headline
    that counts them by kind and by module name (q_proj x32), the first few, and where the rest are."""
    head = f"[red]does not fit[/red] {ref}"
    if len(reasons) <= MISFIT_SHOWN:
        return [f"{head}: " + "; ".join(reasons)]
    kinds: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for reason in reasons:
        module, sep, rest = reason.removeprefix("module ").partition(" ")
        if not (reason.startswith("module ") and sep):
            kinds["other"] += 1
            continue
        kinds["not in the base" if rest == "is not in the base" else "other shapes"] += 1
        leaves[module.rsplit(".", 1)[-1]] += 1
    counted = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    by_name = ", ".join(f"{leaf} x{n}" for leaf, n in leaves.most_common(8))
    more = len(leaves) - 8
    lines = [f"{head}: {len(reasons)} modules differ ({counted})"]
    if by_name:
        lines.append(f"  modules: {by_name}" + (f" and {more} more names" if more > 0 else ""))
    lines += [f"  {reason}" for reason in reasons[:MISFIT_SHOWN]]
    lines.append(f"  ... and {len(reasons) - MISFIT_SHOWN} more (--json lists every one)")
    return lines


# ---------------------------------------------------------------- jobs
class JobBar:
    """A job's progress as a bar with its stage on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and err_console.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, job: JobInfo) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("", total=100)
        assert self.task is not None
        desc = f"job {job.id} {job.type}: {job.stage or job.status}"
        self.progress.update(self.task, completed=job.progress * 100, description=desc)
        if job.done:
            self.progress.stop()


def job_submitted(job: JobInfo) -> None:
    console.print(f"submitted job {job.id} ({job.type}); follow it with `adapters jobs watch {job.id}`")


def job(j: JobInfo) -> None:
    lines: list[tuple[str, Any]] = [
        ("job", f"{j.id} ({j.type})"),
        ("status", j.status + (" (cancel requested)" if j.cancel_requested and not j.done else "")),
        ("progress", f"{j.progress:.0%}  {j.stage or ''}"),
        ("attempts", f"{j.attempts} of {j.max_attempts}"),
        ("lease", f"{j.lease_owner} until {j.lease_expires_at:%H:%M:%S}" if j.lease_expires_at else "-"),
        ("submitted", f"{j.created_at:%Y-%m-%d %H:%M:%S} by {j.created_by}"),
        ("params", j.params),
    ]
    if j.result:
        lines.append(("result", j.result.get("ref") or j.result))
    if j.error:
        lines.append(("error", f"({j.error.get('code')}) {j.error.get('message')}"))
    rows(lines, 10)


def job_table(found: list[JobInfo]) -> None:
    table = Table("id", "type", "status", "progress", "stage", "attempts", "by", "created")
    for j in found:
        table.add_row(
            str(j.id),
            j.type,
            j.status,
            f"{j.progress:.0%}",
            j.stage or "",
            f"{j.attempts}/{j.max_attempts}",
            j.created_by,
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


def job_cancelled(j: JobInfo) -> None:
    what = "cancelled" if j.status == "cancelled" else "cancellation requested for"
    say(f"{what} job {j.id} ({j.type})")


# ---------------------------------------------------------------- tensor jobs
def merged(info: VersionInfo, job_id: int) -> None:
    from registry.jobspec.lineage import MergeLineage, read_lineage

    lin = read_lineage(info.lineage)
    err = lin.error if isinstance(lin, MergeLineage) else None
    say(
        f"[green]merged[/green] {info.ref} {info.digest}  (job {job_id}; "
        f"max relative error {_g(err.max if err else None)}, mean {_g(err.mean if err else None)})"
    )


def _g(x: float | None) -> str:
    """A merge error as `merge` always printed it (0 where none was recorded)."""
    return f"{x or 0:.3g}"


def _merge_lineage(doc: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """`show`'s lines for a derived version: how, from which parents, with what error."""
    from registry.jobspec.lineage import MergeLineage, read_lineage

    lin = read_lineage(doc)
    if not doc or lin is None:
        return []
    merge = lin if isinstance(lin, MergeLineage) else None
    how = f"{merge.method} {merge.parameters}" if merge else "None {}"
    lines: list[tuple[str, Any]] = [("derived", f"{lin.kind} by {how}")]
    for p in merge.parents if merge else []:
        weight = f" x {p.weight:g}" if p.weight is not None else ""
        lines.append(("parent", f"{p.ref}{weight}  {p.digest}"))
    err = merge.error if merge else None
    if err is not None and (err.max is not None or err.mean is not None):
        lines.append(
            ("merge error", f"max {_g3(err.max)}, mean {_g3(err.mean)} (relative Frobenius, per module)")
        )
    return lines


def _export_lineage(doc: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """`base show`'s lines for an exported model: the adapter and the base it was made from."""
    from registry.jobspec.lineage import ExportLineage, read_lineage

    lin = read_lineage(doc)
    if not doc or lin is None:
        return []
    ex = lin if isinstance(lin, ExportLineage) else None
    return [
        ("derived", f"{lin.kind} of {ex and ex.adapter} ({ex and ex.adapter_digest})"),
        ("from base", str(ex and ex.base_fingerprint)),
    ]


def _g3(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g}"


def exported(ref: str, result: ExportResult, job_id: int, output: Path | None) -> None:
    where = f" -> {output}" if output else ""
    say(
        f"[green]exported[/green] {ref} into {', '.join(result.names)} "
        f"{result.fingerprint}{where}  (job {job_id})"
    )


def report_4bit(r: dict[str, Any]) -> None:
    """The `check-4bit` verdict, its reasons, and the measurements behind them."""
    color = {"pass": "green", "warn": "yellow", "fail": "red"}[r["verdict"]]
    say(
        f"[bold {color}]{r['verdict'].upper()}[/bold {color}]  {r['adapter']['ref']} on "
        f"{r.get('variant', {}).get('name', 'nf4-float32')} {', '.join(r['base']['names']) or r['base']['fingerprint']}"
    )
    for reason in r["reasons"]:
        say(f"  - {reason}")
    for note in r.get("notes", []):
        say(f"  note: {note}")
    s = r["structure"]
    say(
        f"quantized to 4 bits: {len(s['quantized'])} target modules; high precision: "
        f"{', '.join(s['high_precision']) or 'none'}"
    )
    b = r.get("behaviour")
    if b:
        say(
            f"behaviour ({b['probe']} probes x {b['probe_length']} tokens): with adapter KL "
            f"{b['adapted']['kl']:.3g}, top-1 {b['adapted']['top1_agreement']:.1%}; base alone KL "
            f"{b['base']['kl']:.3g}, top-1 {b['base']['top1_agreement']:.1%}; adapter effect KL "
            f"{b['adapter_effect_kl']:.3g}"
        )
    modules = [m for m in r["modules"] if m.get("update_norm") is not None]
    if modules:
        worst = min(modules, key=lambda m: m["update_to_noise"])
        say(
            f"update / 4-bit noise: lowest {worst['update_to_noise']:.3g} ({worst['module']}); "
            f"{sum(m['drowned'] for m in modules)} of {len(modules)} modules drowned"
        )
    m = r["merge"]
    if m["max_rel_error"] is not None:
        verdict = "safe" if m["safe"] else "not safe: keep the adapter unmerged on a 4-bit base"
        say(
            f"merge into 4-bit weights: requantizing loses up to {m['max_rel_error']:.1%} of the update "
            f"({verdict})"
        )


# ---------------------------------------------------------------- access: users, grants, tokens, namespaces
def _when(moment: datetime | None, never: str = "") -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else never


def _grants(grants: dict[str, str]) -> str:
    return ", ".join(f"{ns}:{role}" for ns, role in grants.items())


def user_added(u: UserInfo) -> None:
    say(f"[green]added[/green] user {u.name}{' (global admin)' if u.admin else ''}")


def user_table(users: list[UserInfo]) -> None:
    table = Table("name", "admin", "grants", "created")
    for u in users:
        table.add_row(u.name, "yes" if u.admin else "", _grants(u.grants), _when(u.created_at))
    console.print(table)


def grant_set(g: GrantInfo) -> None:
    if g.role is None:
        say(f"[yellow]removed[/yellow] {g.user}'s role in {g.namespace}")
    else:
        say(f"[green]granted[/green] {g.user} {g.role} in {g.namespace}")


def _scope(t: TokenInfo) -> str:
    parts = ["read-only" if t.read_only else "read-write"]
    if t.namespaces is not None:
        parts.append(",".join(t.namespaces) or "no namespace")
    return " ".join(parts)


def token_created(created: dict[str, Any]) -> None:
    """The secret alone on stdout (so it can be piped); what it is on stderr. `created` is the
    `--json` document: the secret and the token's TokenInfo as JSON values."""
    expires = created["expires_at"]
    namespaces = created["namespaces"]
    about = (
        f"token {created['id']} ({created['prefix']}...) for {created['user']}: "
        f"{'read-only' if created['read_only'] else 'read-write'}"
        f"{', namespaces ' + ','.join(namespaces) if namespaces is not None else ''}, "
        f"{'expires ' + _when(datetime.fromisoformat(expires)) + ' UTC' if expires else 'no expiry'}. "
        "It is shown this once: keep it (`adapters login` stores it)."
    )
    click.echo(created["token"])
    err_console.print(about, highlight=False, markup=False)


def token_table(found: list[TokenInfo]) -> None:
    table = Table("id", "user", "name", "prefix", "scope", "expires", "last used", "status")
    now = datetime.now(UTC)
    for t in found:
        if t.revoked_at is not None:
            status = f"[red]revoked[/red] {_when(t.revoked_at)}"
        elif t.expires_at is not None and t.expires_at <= now:
            status = "[yellow]expired[/yellow]"
        else:
            status = "[green]active[/green]"
        table.add_row(
            str(t.id),
            t.user,
            t.name or "",
            t.prefix + "...",
            _scope(t),
            _when(t.expires_at, "never"),
            _when(t.last_used_at, "never"),
            status,
        )
    console.print(table)


def token_revoked(t: TokenInfo) -> None:
    say(f"[yellow]revoked[/yellow] token {t.id} ({t.prefix}...) of {t.user}")


def whoami(w: WhoAmI) -> None:
    if w.kind == "operator":
        say(f"operator ({w.name}): direct database access, every right")
        return
    scope = []
    if w.read_only:
        scope.append("read-only token")
    if w.namespaces is not None:
        scope.append(f"token limited to {','.join(w.namespaces) or 'no namespace'}")
    rows(
        [
            ("user", f"{w.name}{' (global admin)' if w.admin else ''}"),
            ("grants", _grants(w.grants) or "none"),
            ("token", f"{w.token_id}{' (' + '; '.join(scope) + ')' if scope else ''}"),
        ],
        6,
    )


def namespace_set(n: NamespaceInfo) -> None:
    say(f"{n.name} is now {'[green]public[/green]' if n.public else '[yellow]private[/yellow]'}")


def namespace_table(found: list[NamespaceInfo]) -> None:
    table = Table("namespace", "visibility")
    for n in found:
        table.add_row(n.name, "public" if n.public else "private")
    console.print(table)
    say("every other namespace is private")
