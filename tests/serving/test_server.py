"""AdapterServer against PEFT itself: each row of a mixed batch equals its adapter loaded alone with
`PeftModel.from_pretrained`; LRU by count and bytes, pins, alias moves, fit refusals, threads.

Tolerance: rows are compared with atol=1e-5 (float32 logits of magnitude ~1); PEFT's mixed-batch
path runs the same per-adapter matmuls on a row subset, measured equal to 0 on this model. The
adapters change the logits by ~1e-1, so a row served with the wrong adapter fails by 4 orders."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from registry.client.transfer import push_folder
from registry.errors import BadRequest, NotServable, ServingFull, ShapeMismatch
from registry.serving import AdapterServer, adapter_name
from tests.serving.conftest import BASE, Pushed

ATOL = 1e-5
IDS = torch.tensor([[5, 17, 33, 2, 90, 64, 7, 11], [1, 2, 3, 4, 5, 6, 7, 8], [100, 99, 98, 97, 3, 4, 5, 6]])


def alone(models: Path, adapter: str | None, ids: torch.Tensor) -> torch.Tensor:
    """The reference: a fresh base, the adapter loaded alone by PEFT (None: the base alone)."""
    base = AutoModelForCausalLM.from_pretrained(models / "base").eval()
    model = base if adapter is None else PeftModel.from_pretrained(base, models / adapter).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def left_pad(rows: list[list[int]], pad: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths as one batch, left-padded (pad 1 is the tokenizer's <pad>)."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def greedy_alone(models: Path, adapter: str | None, ids: list[int], n: int) -> list[int]:
    """The reference for generate: the adapter loaded alone, the prompt unpadded; the new tokens
    up to and including the first end-of-sequence token, as AdapterServer returns them."""
    base = AutoModelForCausalLM.from_pretrained(models / "base").eval()
    model = base if adapter is None else PeftModel.from_pretrained(base, models / adapter).eval()
    t = torch.tensor([ids])
    out = model.generate(
        input_ids=t, attention_mask=torch.ones_like(t), max_new_tokens=n, do_sample=False, pad_token_id=1
    )
    new: list[int] = out[0, len(ids) :].tolist()
    eos = base.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    return next((new[: i + 1] for i, tok in enumerate(new) if tok in eos_ids), new)


def loaded(srv: AdapterServer) -> list[str]:
    return [x.ref for x in srv.stats().loaded]


def test_mixed_batch_rows_equal_each_adapter_alone(embedded_any_db: Pushed) -> None:
    p = embedded_any_db
    rows = ["acme/a", "acme/b", None, "acme/c@" + p.digests["c"], "acme/a@production"]
    ids = torch.cat([IDS, IDS[:2]])
    with AdapterServer(BASE, client=p.client) as srv:
        assert srv.fingerprint == p.fingerprint
        logits = srv.forward(ids, adapters=rows).logits
        assert srv.load("acme/b:1") == adapter_name(p.digests["b"])
    base = alone(p.models, None, ids)
    for i, (row, name) in enumerate(zip(rows, ["a", "b", None, "c", "a"], strict=True)):
        want = alone(p.models, name, ids[i : i + 1])[0]
        assert torch.allclose(logits[i], want, atol=ATOL, rtol=0), (i, row)
        if name is not None:  # the check above can fail: each adapter moves the logits
            assert (want - base[i]).abs().max() > 1e-2
    stats = srv.stats()
    assert (stats.misses, stats.hits, stats.evictions) == (3, 2, 0)  # a twice in the batch: once
    assert loaded(srv) == ["acme/c:1", "acme/a:1", "acme/b:1"]  # a used again after c, then b


def test_base_from_a_folder_is_fingerprinted(embedded: Pushed) -> None:
    with AdapterServer(embedded.models / "base", client=embedded.client) as srv:
        assert srv.fingerprint == embedded.fingerprint
        logits = srv.forward(IDS[:2], adapters=[None, "acme/c"]).logits
    assert torch.allclose(logits[1], alone(embedded.models, "c", IDS[1:2])[0], atol=ATOL, rtol=0)
    assert torch.allclose(logits[0], alone(embedded.models, None, IDS[:1])[0], atol=ATOL, rtol=0)


def test_eviction_is_least_recently_used(embedded: Pushed) -> None:
    with AdapterServer(BASE, client=embedded.client, max_adapters=2) as srv:
        srv.load("acme/a")
        srv.load("acme/b")
        srv.load("acme/a")  # a is now the most recently used
        srv.load("acme/c")  # evicts b
        assert loaded(srv) == ["acme/a:1", "acme/c:1"]
        srv.forward(IDS[:1], adapters=["acme/b"])  # evicts a
        assert loaded(srv) == ["acme/c:1", "acme/b:1"]
        stats = srv.stats()
        assert (stats.hits, stats.misses, stats.evictions) == (1, 4, 2)
        # After reloads, rows are still right: b was deleted from PEFT and loaded again.
        logits = srv.forward(IDS, adapters=["acme/b", "acme/c", None]).logits
    assert torch.allclose(logits[0], alone(embedded.models, "b", IDS[:1])[0], atol=ATOL, rtol=0)
    assert torch.allclose(logits[2], alone(embedded.models, None, IDS[2:])[0], atol=ATOL, rtol=0)


def test_pinned_adapters_are_never_evicted(embedded: Pushed) -> None:
    with AdapterServer(BASE, client=embedded.client, max_adapters=2, pinned=["acme/a@production"]) as srv:
        assert loaded(srv) == ["acme/a:1"]  # loaded when the server starts
        srv.load("acme/b")
        srv.load("acme/c")  # a is least recently used, but pinned: b goes
        assert loaded(srv) == ["acme/a:1", "acme/c:1"]
        assert [x.pinned for x in srv.stats().loaded] == [True, False]
    with pytest.raises(ServingFull, match="pinned or in use"):
        AdapterServer(BASE, client=embedded.client, max_adapters=1, pinned=["acme/a", "acme/b"])


def test_byte_limit(embedded: Pushed) -> None:
    with AdapterServer(BASE, client=embedded.client) as probe:
        sizes = {n: probe.stats().loaded[-1].bytes for n in "abc" if probe.load(f"acme/{n}")}
    assert len(set(sizes.values())) == 3  # three sizes: the limit below decides what stays
    limit = sizes["b"] + sizes["c"]
    with AdapterServer(BASE, client=embedded.client, max_bytes=limit) as srv:
        srv.load("acme/b")
        srv.load("acme/c")
        assert srv.stats().bytes == limit and srv.stats().evictions == 0
        srv.load("acme/a")  # b is least recently used and must go; c + a fits
        assert loaded(srv) == ["acme/c:1", "acme/a:1"]
        assert srv.stats().bytes == sizes["a"] + sizes["c"] <= limit
    with AdapterServer(BASE, client=embedded.client, max_bytes=sizes["b"] - 1) as small:
        with pytest.raises(ServingFull, match="max_bytes"):
            small.load("acme/b")
        assert loaded(small) == []


def test_alias_move_is_followed_after_the_ttl(embedded: Pushed) -> None:
    client, models = embedded.client, embedded.models
    with (
        AdapterServer(BASE, client=client, alias_ttl_s=0, pinned=["acme/a@production"]) as fresh,
        AdapterServer(BASE, client=client, alias_ttl_s=3600) as slow,
    ):
        v1 = fresh.forward(IDS[:1], adapters=["acme/a@production"]).logits
        slow.forward(IDS[:1], adapters=["acme/a@production"])
        v2 = push_folder(client, models / "a2", "acme/a", base=BASE)
        client.set_alias("acme/a:2", "production")
        moved = fresh.forward(IDS[:1], adapters=["acme/a@production"]).logits
        kept = slow.forward(IDS[:1], adapters=["acme/a@production"]).logits
        # The pin follows the alias: version 2 is pinned now, version 1 evictable.
        assert [(x.ref, x.pinned) for x in fresh.stats().loaded] == [("acme/a:1", False), ("acme/a:2", True)]
        assert fresh.stats().loaded[-1].digest == v2.digest
    assert torch.allclose(v1[0], alone(models, "a", IDS[:1])[0], atol=ATOL, rtol=0)
    assert torch.allclose(moved[0], alone(models, "a2", IDS[:1])[0], atol=ATOL, rtol=0)
    assert torch.allclose(kept, v1, atol=ATOL, rtol=0)  # within its TTL, as documented


def test_refuses_an_adapter_for_another_base_before_loading(embedded: Pushed) -> None:
    client, models = embedded.client, embedded.models
    push_folder(client, models / "other", "acme/other")  # unlinked: push has no base to check
    with pytest.raises(ShapeMismatch) as pushed:
        push_folder(client, models / "other", "acme/other", base=BASE)
    with AdapterServer(BASE, client=client) as srv:
        with pytest.raises(ShapeMismatch) as served:
            srv.load("acme/other")
        assert served.value.code == pushed.value.code == "shape_mismatch"
        assert "q_proj" in served.value.message
        stats = srv.stats()
        assert (stats.loaded, stats.misses, srv._model.peft) == ([], 0, None)  # nothing loaded


def test_refuses_dora(embedded: Pushed) -> None:
    push_folder(embedded.client, embedded.models / "dora", "acme/dora", base=BASE)
    with AdapterServer(BASE, client=embedded.client) as srv, pytest.raises(NotServable, match="DoRA"):
        srv.load("acme/dora")


def test_a_call_never_evicts_adapters_in_use(embedded: Pushed) -> None:
    with AdapterServer(BASE, client=embedded.client, max_adapters=2) as srv:
        with pytest.raises(ServingFull, match="2 of the 2 loaded adapters are pinned or in use"):
            srv.forward(IDS, adapters=["acme/a", "acme/b", "acme/c"])
        assert [x.in_use for x in srv.stats().loaded] == [0, 0]  # released after the refusal
        logits = srv.forward(IDS[:2], adapters=["acme/c", "acme/a"]).logits
    assert torch.allclose(logits[0], alone(embedded.models, "c", IDS[:1])[0], atol=ATOL, rtol=0)


def test_threads_get_the_single_thread_results(embedded: Pushed) -> None:
    mixes: list[list[str | None]] = [
        ["acme/a", "acme/b", None],
        ["acme/c", None, "acme/c"],
        [None, "acme/b", "acme/a"],
        ["acme/b", "acme/c", "acme/b"],
    ]
    with AdapterServer(BASE, client=embedded.client, max_adapters=2) as srv:
        expected = [srv.forward(IDS, adapters=m).logits for m in mixes]
        got: dict[tuple[int, int], torch.Tensor] = {}
        errors: list[BaseException] = []
        start = threading.Barrier(len(mixes))

        def work(t: int) -> None:
            try:
                start.wait()
                for k in range(6):  # every thread runs every mix, in its own order
                    m = (t + k) % len(mixes)
                    got[(t, k)] = srv.forward(IDS, adapters=mixes[m]).logits
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(len(mixes))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert len(got) == 24
        for (t, k), logits in got.items():
            assert torch.equal(logits, expected[(t + k) % len(mixes)]), (t, k)
        stats = srv.stats()
        assert stats.evictions > 0 and all(x.in_use == 0 for x in stats.loaded)


@pytest.mark.slow
def test_generate_mixed_batch_equals_each_adapter_alone(embedded: Pushed) -> None:
    prompts = [[5, 17, 33, 40], [8, 9, 10, 11], [70, 71, 72, 73]]
    rows = ["acme/a", None, "acme/b"]
    with AdapterServer(BASE, client=embedded.client) as srv:
        out = srv.generate(prompts, adapters=rows, max_new_tokens=6, do_sample=False)
        texts = srv.generate(["Hello", "Hi"], adapters=["acme/c", None], max_new_tokens=3, do_sample=False)
    for prompt, name, got in zip(prompts, ["a", None, "b"], out, strict=True):
        base = AutoModelForCausalLM.from_pretrained(embedded.models / "base").eval()
        model = base if name is None else PeftModel.from_pretrained(base, embedded.models / name).eval()
        ids = torch.tensor([prompt])
        want = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False
        )
        assert got.token_ids == want[0, 4:].tolist()[: len(got.token_ids)]
        assert got.token_ids and got.text is not None
    assert all(isinstance(g.text, str) for g in texts) and all(1 <= len(g.token_ids) <= 3 for g in texts)


# Rows of different lengths: 8, 3, 5 and 1 tokens, each with a different adapter (or none).
RAGGED = [[5, 17, 33, 2, 90, 64, 7, 11], [100, 99, 98], [40, 41, 42, 43, 44], [77]]
RAGGED_ROWS: list[tuple[str | None, str | None]] = [
    ("acme/b", "b"),
    ("acme/a", "a"),
    (None, None),
    ("acme/c", "c"),
]


def test_left_padded_rows_equal_each_adapter_alone_unpadded(embedded: Pushed) -> None:
    ids, mask = left_pad(RAGGED)
    with AdapterServer(BASE, client=embedded.client) as srv:
        logits = srv.forward(ids, adapters=[r for r, _ in RAGGED_ROWS], attention_mask=mask).logits
        unmasked = srv.forward(ids, adapters=[r for r, _ in RAGGED_ROWS]).logits
    width = ids.shape[1]
    for i, (row, (_, name)) in enumerate(zip(RAGGED, RAGGED_ROWS, strict=True)):
        want = alone(embedded.models, name, torch.tensor([row]))[0]
        got = logits[i, width - len(row) :]  # the real tokens; the padding's logits mean nothing
        assert torch.allclose(got, want, atol=ATOL, rtol=0), (i, (got - want).abs().max())
    # The check above can fail: without its mask a padded row attends to the pad tokens and differs.
    short = alone(embedded.models, "a", torch.tensor([RAGGED[1]]))[0]
    assert (unmasked[1, width - len(RAGGED[1]) :] - short).abs().max() > 1e-3


def test_generate_left_padded_rows_equal_each_adapter_alone(embedded: Pushed) -> None:
    from transformers import AutoTokenizer

    models = embedded.models
    texts = ["Hello there, how are you", "Hi", "Bonjour"]
    text_rows = ["acme/a", "acme/b", None]
    with AdapterServer(BASE, client=embedded.client) as srv:
        out = srv.generate(RAGGED, adapters=[r for r, _ in RAGGED_ROWS], max_new_tokens=5, do_sample=False)
        said = srv.generate(texts, adapters=text_rows, max_new_tokens=5, do_sample=False)
    for prompt, (_, name), got in zip(RAGGED, RAGGED_ROWS, out, strict=True):
        assert got.token_ids == greedy_alone(models, name, prompt, 5), (prompt, name)
    tok = AutoTokenizer.from_pretrained(models / "base")
    for text, name, got in zip(texts, ["a", "b", None], said, strict=True):
        ids = tok(text)["input_ids"]
        assert got.token_ids == greedy_alone(models, name, ids, 5), (text, name)
        assert got.text == tok.decode(got.token_ids, skip_special_tokens=True)


def test_bad_dtype_or_device_is_refused_before_the_base_is_opened(embedded: Pushed) -> None:
    with pytest.raises(BadRequest, match="dtype 'int8' is not one of bf16, fp16, fp32"):
        AdapterServer("acme/no-such-base", client=embedded.client, dtype="int8")
    with pytest.raises(BadRequest, match="device 'nonsense' cannot be used here"):
        AdapterServer("acme/no-such-base", client=embedded.client, device="nonsense")
    with pytest.raises(BadRequest, match="max_adapters must be at least 1"):
        AdapterServer("acme/no-such-base", client=embedded.client, max_adapters=0)
    with AdapterServer(embedded.models / "base", client=embedded.client, dtype="bf16") as srv:
        assert next(srv._model.base.parameters()).dtype == torch.bfloat16


def test_text_prompts_on_a_base_without_tokenizer(embedded: Pushed, tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for f in (embedded.models / "base").iterdir():
        if f.name in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(f, bare / f.name)
    with AdapterServer(bare, client=embedded.client) as srv:
        with pytest.raises(BadRequest, match="this base has no tokenizer"):
            srv.generate(["Hi"], adapters=["acme/c"], max_new_tokens=2)
        [out] = srv.generate([[5, 6, 7]], adapters=["acme/c"], max_new_tokens=2, do_sample=False)
        assert out.text is None and out.token_ids
        assert all(x.in_use == 0 for x in srv.stats().loaded)  # released after the refusal
