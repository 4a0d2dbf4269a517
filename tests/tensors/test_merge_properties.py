"""Property tests of the merge algebra on random factors (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.tensors.lora import LoraAdapter, LoraModuleFactors
from registry.tensors.merge import MergeOptions, merge_loras


def adapter(seed: int, rank: int, d: int, k: int, scale: float) -> LoraAdapter:
    g = torch.Generator().manual_seed(seed)
    f = LoraModuleFactors(
        a=torch.randn(rank, k, generator=g),
        b=torch.randn(d, rank, generator=g),
        scale=scale,
        a_shape=(rank, k),
        b_shape=(d, rank),
    )
    return LoraAdapter({}, {"m": f}, torch.float32)


def delta(ad: LoraAdapter) -> torch.Tensor:
    f = ad.modules["m"]
    return f.scale * f.b @ f.a


def merged_delta(adapters: list[tuple[LoraAdapter, float]], opts: MergeOptions) -> torch.Tensor:
    return delta(LoraAdapter({}, merge_loras(adapters, opts).modules, torch.float32))


shapes = st.tuples(st.integers(1, 8), st.integers(8, 40), st.integers(8, 40))
weights = st.floats(-2, 2, allow_nan=False).filter(lambda w: abs(w) > 1e-3)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), shape=shapes, scale=st.floats(0.1, 4))
def test_one_adapter_with_weight_one_merges_to_itself(
    seed: int, shape: tuple[int, int, int], scale: float
) -> None:
    ad = adapter(seed, *shape, scale)
    for method in ("cat", "svd"):
        got = merged_delta([(ad, 1.0)], MergeOptions(method=method))
        assert torch.allclose(got, delta(ad), rtol=1e-4, atol=1e-4 * float(delta(ad).abs().max()))


@settings(max_examples=40, deadline=None)
@given(
    seeds=st.lists(st.integers(0, 10_000), min_size=2, max_size=4, unique=True),
    shape=shapes,
    ws=st.lists(weights, min_size=4, max_size=4),
    c=weights,
)
def test_cat_is_linear_in_the_weights(
    seeds: list[int], shape: tuple[int, int, int], ws: list[float], c: float
) -> None:
    ads = [adapter(s, *shape, 1.5) for s in seeds]
    base = merged_delta(list(zip(ads, ws, strict=False)), MergeOptions(method="cat"))
    scaled = merged_delta([(a, c * w) for a, w in zip(ads, ws, strict=False)], MergeOptions(method="cat"))
    exact = sum(w * delta(a) for a, w in zip(ads, ws, strict=False))
    tol = 1e-4 * float(exact.abs().max()) * max(1.0, abs(c))
    assert torch.allclose(scaled, c * base, atol=tol)
    assert torch.allclose(base, exact, atol=tol)


@settings(max_examples=40, deadline=None)
@given(
    seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True),
    ranks=st.lists(st.integers(1, 6), min_size=4, max_size=4),
    dims=st.tuples(st.integers(4, 30), st.integers(4, 30)),
    target=st.integers(1, 10),
)
def test_rank_bounds(seeds: list[int], ranks: list[int], dims: tuple[int, int], target: int) -> None:
    ads = [(adapter(s, r, *dims, 1.0), 0.5) for s, r in zip(seeds, ranks, strict=False)]
    total = sum(a.modules["m"].rank for a, _ in ads)
    assert merge_loras(ads, MergeOptions(method="cat")).modules["m"].rank == total
    svd = merge_loras(ads, MergeOptions(method="svd", rank=target))
    assert svd.modules["m"].rank <= min(target, total, *dims)
    # Error never beats the optimum and is zero when the target rank covers the exact rank.
    if target >= total:
        assert svd.report["m"].rel_error < 1e-4
