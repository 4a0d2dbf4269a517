"""Weighted merges of LoRA adapters, computed on the factors (never a dense d x k delta for svd/cat).

With s_i an adapter's scaling (alpha/r, or alpha/sqrt(r) with rslora) and w_i its weight, the exact
merged update of a module is  D = sum_i w_i s_i B_i A_i  (a module missing from an adapter adds 0).

- ``cat``: exact. B = [w_1 s_1 B_1, ..., w_n s_n B_n], A = [A_1; ...; A_n]; rank = sum of ranks.
- ``svd``: the best rank-r approximation of D (Eckart-Young) without forming D: QR of the stacked
  B (d x R) and of the stacked A transposed (k x R), SVD of the R x R core R_B R_A^T, truncate.
  B = Q_B U_r S_r, A = V_r^T Q_A^T (PEFT's split: singular values on B). Rank: ``rank`` (default the
  largest input rank), or the smallest rank keeping ``energy`` of sum S^2 when rank == "auto".
- ``linear``, ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``: PEFT's
  ``add_weighted_adapter`` semantics, which act on A and B *separately*: with
  c_i = w_i s_i, A_i is weighted by sign(c_i) sqrt(|c_i|) and B_i by sqrt(|c_i|), then the stacked
  factors are combined by PEFT's merge_utils function of that name (task arithmetic; TIES: keep the
  top ``density`` fraction by magnitude per tensor, elect the sign by summed value ("total") or by
  count ("frequency"), average the agreeing entries; DARE: drop entries with probability
  1 - density and rescale by 1/density, then linear or TIES). All inputs must share one rank.
  These are *not* the weighted sum of the deltas (they add cross terms B_i A_j); the error report
  says by how much. DARE's randomness comes from a generator seeded per module with
  ``module_seed(seed, module)``, consuming A's draws then B's, so a merge reproduces exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from registry.errors import MergeRefused
from registry.tensors.lora import LoraAdapter, LoraModuleFactors

METHODS = ("svd", "cat", "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
FACTORWISE = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
Method = Literal["svd", "cat", "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"]


@dataclass(frozen=True)
class MergeOptions:
    method: str = "svd"
    rank: int | Literal["auto"] | None = None
    energy: float = 0.99
    density: float = 1.0
    majority_sign_method: Literal["total", "frequency"] = "total"
    seed: int = 0


@dataclass
class ModuleReport:
    rank: int
    rel_error: float
    """||D_merged - D_exact||_F / ||D_exact||_F, from the factors (float64)."""


@dataclass
class MergeResult:
    modules: dict[str, LoraModuleFactors]
    report: dict[str, ModuleReport] = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        return max((r.rel_error for r in self.report.values()), default=0.0)

    @property
    def mean_error(self) -> float:
        return sum(r.rel_error for r in self.report.values()) / max(1, len(self.report))


def module_seed(seed: int, module: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{module}".encode()).digest()[:8], "little") & (2**63 - 1)


def _stack(parts: list[tuple[LoraModuleFactors, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact factors of sum w s B A: B_cat [d, R] (weights and scalings folded in), A_cat [R, k]."""
    b = torch.cat([f.b * (w * f.scale) for f, w in parts], dim=1)
    a = torch.cat([f.a for f, _ in parts], dim=0)
    return b, a


def _apply_q(h: torch.Tensor, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Q @ y for the Householder Q stored by geqrf (m x k reduced), without forming Q."""
    padded = torch.zeros(h.shape[0], y.shape[1], dtype=y.dtype)
    padded[: y.shape[0]] = y
    return torch.ormqr(h, tau, padded)


def _svd(
    b: torch.Tensor, a: torch.Tensor, opts: MergeOptions, default_rank: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Truncated SVD of b @ a through QR of both factors; also returns the relative error.

    With B = Q_B R_B and A^T = Q_A R_A, B A = Q_B (R_B R_A^T) Q_A^T, and the R x R core has the
    singular values of B A. geqrf + ormqr apply Q without forming it (about half the work of qr).
    """
    hb, tau_b = torch.geqrf(b)  # d x R
    ha, tau_a = torch.geqrf(a.T)  # k x R
    rb = hb[: min(hb.shape)].triu()
    ra = ha[: min(ha.shape)].triu()
    u, s, vh = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    energy = torch.cumsum(s.double() ** 2, 0)
    total = float(energy[-1]) if energy.numel() else 0.0
    if opts.rank == "auto":
        keep = int(torch.searchsorted(energy, opts.energy * total).item()) + 1 if total > 0 else 1
    else:
        keep = opts.rank or default_rank
    keep = max(1, min(keep, s.shape[0]))
    new_b = _apply_q(hb, tau_b, u[:, :keep] * s[:keep])
    new_a = _apply_q(ha, tau_a, vh[:keep].T).T
    # Eckart-Young: the error of the best rank-keep approximation is the discarded energy.
    error = math.sqrt(max(total - float(energy[keep - 1]), 0.0) / total) if total > 0 else 0.0
    return new_b, new_a, error


def _factorwise(
    parts: list[tuple[LoraModuleFactors, float]], opts: MergeOptions, module: str
) -> tuple[torch.Tensor, torch.Tensor]:
    from peft.utils import merge_utils

    ranks = {f.rank for f, _ in parts}
    if len(ranks) != 1:
        raise MergeRefused(
            f"{opts.method} merges A and B separately and needs one rank; {module} has ranks {sorted(ranks)}; "
            "use svd or cat",
            module=module,
        )
    coeffs = [w * f.scale for f, w in parts]
    wa = torch.tensor([math.copysign(math.sqrt(abs(c)), c) for c in coeffs])
    wb = torch.tensor([math.sqrt(abs(c)) for c in coeffs])
    fns: dict[str, Callable[..., torch.Tensor]] = {
        "linear": lambda t, w: merge_utils.task_arithmetic(t, w),
        "ties": lambda t, w: merge_utils.ties(t, w, opts.density, opts.majority_sign_method),
        "dare_linear": lambda t, w: merge_utils.dare_linear(t, w, opts.density),
        "dare_ties": lambda t, w: merge_utils.dare_ties(t, w, opts.density, opts.majority_sign_method),
        "magnitude_prune": lambda t, w: merge_utils.magnitude_prune(t, w, opts.density),
    }
    fn = fns[opts.method]
    # merge_utils draws DARE masks from torch's global generator: fork it, seed it per module.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(module_seed(opts.seed, module))
        a = fn([f.a for f, _ in parts], wa)
        b = fn([f.b for f, _ in parts], wb)
    return b, a


def relative_error(b_exact: torch.Tensor, a_exact: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> float:
    """||B A - B_e A_e||_F / ||B_e A_e||_F via Gram matrices: O((d + k) R^2), no d x k product."""
    bd = torch.cat([b_exact, -b], dim=1).double()
    ad = torch.cat([a_exact, a], dim=0).double()
    diff2 = torch.sum((bd.T @ bd) * (ad @ ad.T)).item()
    be, ae = b_exact.double(), a_exact.double()
    ref2 = torch.sum((be.T @ be) * (ae @ ae.T)).item()
    if ref2 <= 0:
        return 0.0
    return math.sqrt(max(diff2, 0.0) / ref2)


def merge_loras(
    adapters: list[tuple[LoraAdapter, float]],
    opts: MergeOptions,
    on_module: Callable[[int, int], None] | None = None,
) -> MergeResult:
    """Merge adapters module by module over the union of their modules; float32 throughout.
    `on_module(done, total)` reports progress (a worker's heartbeat, cancellation checks)."""
    if opts.method not in METHODS:
        raise MergeRefused(f"unknown method {opts.method!r}; one of {', '.join(METHODS)}")
    if not adapters:
        raise MergeRefused("nothing to merge")
    if not 0.0 <= opts.density <= 1.0:
        raise MergeRefused(f"density must be in [0, 1], got {opts.density}")
    names = sorted({name for ad, _ in adapters for name in ad.modules})
    default_rank = max(f.rank for ad, _ in adapters for f in ad.modules.values())
    result = MergeResult(modules={})
    for done, name in enumerate(names):
        if on_module is not None:
            on_module(done, len(names))
        parts = [(ad.modules[name], w) for ad, w in adapters if name in ad.modules]
        _check_shapes(name, parts)
        b_exact, a_exact = _stack(parts)
        if opts.method == "cat":
            b, a = b_exact, a_exact
            error = relative_error(b_exact, a_exact, b, a)
        elif opts.method == "svd":
            b, a, error = _svd(b_exact, a_exact, opts, default_rank)
        else:
            b, a = _factorwise(parts, opts, name)
            error = relative_error(b_exact, a_exact, b, a)
        first = parts[0][0]
        result.modules[name] = LoraModuleFactors(
            a=a.contiguous(),
            b=b.contiguous(),
            scale=1.0,
            a_shape=first.a_shape,
            b_shape=first.b_shape,
            embedding=first.embedding,
        )
        result.report[name] = ModuleReport(rank=int(a.shape[0]), rel_error=error)
    return result


def _check_shapes(name: str, parts: list[tuple[LoraModuleFactors, float]]) -> None:
    ins = {f.a.shape[1] for f, _ in parts}
    outs = {f.b.shape[0] for f, _ in parts}
    if len(ins) > 1 or len(outs) > 1:
        raise MergeRefused(
            f"module {name} has in-features {sorted(ins)} and out-features {sorted(outs)} across adapters: "
            "they were trained on different architectures",
            module=name,
        )
