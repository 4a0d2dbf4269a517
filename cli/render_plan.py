"""How `adapters plan` prints for people (--json prints the documents themselves)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from cli.output import console, say

if TYPE_CHECKING:
    from registry.planning import Plan, PlanOptions, Recommendation


def _gb(n: int | None) -> str:
    from registry.planning import human

    return "-" if n is None else human(n)


def plan(base: str, p: Plan) -> None:
    o = p.options
    say(
        f"[bold]{p.method}[/] on {base}: {p.trainable_params:,} trainable parameters "
        f"({p.trainable_percent:g}% of {p.total_params:,}), {p.targeted_modules} modules targeted"
    )
    if p.targets is not None:
        say(f"targets: {p.targets if isinstance(p.targets, str) else ','.join(p.targets)}")
    say(
        f"seq-len {o.seq_len}, batch {o.batch}, {o.dtype}, {o.optimizer}"
        + (", gradient checkpointing" if o.gradient_checkpointing else "")
    )
    table = Table("part", "bytes", "")
    m = p.memory
    weights = f"{p.weights.format}"
    if p.weights.quantized_params:
        weights += f": {_gb(p.weights.packed)} packed + {_gb(p.weights.constants)} constants + "
        weights += f"{_gb(p.weights.high_precision)} kept in {o.dtype}"
    table.add_row("base weights", _gb(m.base_weights), weights)
    table.add_row("trainable weights", _gb(m.trainable_weights), "fp32")
    table.add_row("gradients", _gb(m.gradients), "fp32")
    table.add_row("optimizer states", _gb(m.optimizer_states), o.optimizer)
    act = p.activations
    detail = f"{_gb(act.per_layer)} per layer, {_gb(act.outside)} outside the layers"
    if act.checkpoints:
        detail += f", {_gb(act.checkpoints)} checkpoints"
    table.add_row("activations", _gb(m.activations), detail)
    table.add_row("[bold]total[/]", f"[bold]{_gb(m.total)}[/]", "")
    console.print(table)
    if o.gpu_memory is not None:
        verdict = "[green]fits[/]" if p.fits else "[red]does not fit[/]"
        say(f"{verdict} in {_gb(o.gpu_memory)} ({_gb(p.headroom)} headroom)")
    for note in p.notes:
        say(f"note: {note}")
    if p.adjusted is not None:
        a = p.adjusted
        say(f"[bold]fits with[/] {', '.join(a.changes)}: {_gb(a.total)} ({_gb(a.headroom)} to spare)")
        say(f"  plan it: adapters plan --base {base} {' '.join(a.flags)} --gpu-memory {_gb(o.gpu_memory)}")
    elif p.fits is False:
        say("no change of checkpointing, optimizer, batch or sequence length fits: use a larger GPU")


def recommendation(base: str, r: Recommendation, o: PlanOptions) -> None:
    table = Table("#", "method", "trainable", "total", "fits", "why")
    for row in r.ranking:
        fits = "-" if row.fits is None else ("yes" if row.fits else "no")
        trainable = "-" if row.trainable_params is None else f"{row.trainable_params:,}"
        table.add_row(str(row.rank), row.method, trainable, _gb(row.total), fits, row.reason)
    console.print(table)
    a = r.adjusted
    if a is not None:
        say(f"[bold]recommended: {r.recommended}[/] on {base} with {', '.join(a.changes)}")
        say(f"  plan it: adapters plan --base {base} {' '.join(a.flags)} --gpu-memory {_gb(o.gpu_memory)}")
    elif r.recommended:
        say(f"[bold]recommended: {r.recommended}[/] on {base}")
    else:
        say(
            "[bold]nothing recommended[/]: no method fits under any change of checkpointing, optimizer, batch or sequence length"
        )
    for reason in r.reasons:
        say(f"  because {reason}")
    for line in r.recipe:
        say(f"  {line}")
    others = r.adjustments[1:4]
    if others:
        say("also fits:")
        for other in others:
            say(f"  {' '.join(other.flags)} ({_gb(other.total)})")
