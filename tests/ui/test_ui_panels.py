"""The version page's model card and "use this adapter" panel, the lineage's label boxes as
Chromium draws them, the scatter's width, an exported model's page, and `/`: in headless Chromium
against a real server. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

from registry.entities import BaseInfo, FitItem
from registry.ui import plot, render, svg
from registry.ui.pages_bases import _tiers, exported_from
from tests.cli.conftest import Cli
from tests.ui.conftest import Site
from tests.ui.test_svg import many_children, segment_hits_box

CARD = """---
license: mit
tags: [legal]
---
# Legal adapter

Trained on *lex*. <script>window.pwned=3</script>
<img src=x onerror="window.pwned=4"> <a href="javascript:window.pwned=5" onclick="window.pwned=6">bad link</a>
<div style="background:red" onmouseover="window.pwned=7">styled</div>

![tracker](https://tracker.example/pixel.png) ![missing](nothere.png)

| metric | value |
|---|---|
| accuracy | 0.71 |
"""


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _shot(tab: Any, tmp_path: Path, name: str, selector: str | None = None) -> Path:
    path = tmp_path / f"{name}.png"
    if selector:
        tab.locator(selector).screenshot(path=str(path))
    else:
        tab.screenshot(path=str(path), full_page=True)
    return path


def _push_carded(site: Site, adapters_dir: Path, tmp_path: Path) -> str:
    """acme/carded: lora_a with a hostile README, pushed to the server."""
    folder = tmp_path / "carded"
    shutil.copytree(adapters_dir / "lora_a", folder)
    (folder / "README.md").write_text(CARD)
    run = Cli({"ADAPTERS_URL": site.url, "ADAPTERS_TOKEN": site.token, "ADAPTERS_HOME": str(tmp_path / "h")})
    pushed = run.json("push", str(folder), "acme/carded", "--base", "acme/tiny-llama", "--alias", "stable")
    return str(pushed["digest"])


def test_model_card_is_rendered_sanitised_and_use_panel_names_it_exactly(
    page: Any, site: Site, adapters_dir: Path, tmp_path: Path
) -> None:
    expect = _expect()
    digest = _push_carded(site, adapters_dir, tmp_path)
    answer = page.goto("/ui/r/acme/carded/1")
    assert answer is not None and answer.status == 200
    card = page.locator("#model-card")
    expect(card.locator("h1")).to_have_text("Legal adapter")
    expect(card.locator("em")).to_have_text("lex")
    expect(card.locator("table")).to_contain_text("0.71")
    expect(card).not_to_contain_text("license: mit")  # the front matter is not the card's body
    # Nothing runs, nothing is styled inline, no handler survives; a javascript: link loses its href.
    assert card.locator("script, style, iframe, [style], [onerror], [onclick], [onmouseover]").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert not card.locator("a", has_text="bad link").get_attribute("href")
    # A remote image is a link, fetched by no one; a relative one (no such file) its alt text.
    remote = card.locator("a.remote-image")
    expect(remote).to_contain_text("tracker.example")
    assert remote.get_attribute("href") == "https://tracker.example/pixel.png"
    assert card.locator('img[src^="http"]').count() == 0
    expect(card).to_contain_text("[image: missing]")

    expect(page.locator("#use")).to_be_visible()
    expect(page.locator("#ref-pinned")).to_have_text(f"acme/carded@{digest}")
    expect(page.locator("#ref-number")).to_have_text("acme/carded:1")
    commit = digest.removeprefix("sha256:")[:40]
    expect(page.locator("#ref-commit")).to_have_text(commit)
    expect(page.locator("#ref-aliases")).to_contain_text("acme/carded@stable")
    peft = page.locator("#use-peft pre")
    expect(peft).to_contain_text(f'PeftModel.from_pretrained(base, "acme/carded", revision="{commit}")')
    expect(peft).to_contain_text(f"HF_ENDPOINT={site.url}")
    expect(peft).to_contain_text('revision="stable"')
    for panel, words in [
        ("#use-pull", [f"adapters pull acme/carded@{digest}", "adapters pull acme/carded@stable"]),
        ("#use-vllm", ["--lora-modules carded=", "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True", f'"model": "acme/carded@{digest}"']),
        ("#use-lorax", ["lorax-launcher --model-id acme/tiny-llama", '"adapter_source": "hub"', '"adapter_source": "local"']),
    ]:  # fmt: skip
        page.locator(f"{panel} summary").click()
        for word in words:
            expect(page.locator(f"{panel} pre")).to_contain_text(word)
    shown = _shot(page, tmp_path, "version-card-and-use", None)
    assert shown.stat().st_size > 10_000
    _shot(page, tmp_path, "use-panel", "#use")


def test_card_images_from_allowed_hosts_only() -> None:
    from registry.ui import card, session

    html = card.render(
        "![a](https://hf.co/a.png) ![b](https://other.org/b.png) ![c](http://hf.co/c.png)",
        frozenset({"hf.co"}),
    )
    assert '<img src="https://hf.co/a.png"' in html
    assert "other.org/b.png" in html and '<img src="https://other.org' not in html
    assert '<img src="http://hf.co' not in html  # plain http is never loaded
    assert "img-src 'self' data: https://hf.co;" in session.csp(frozenset({"hf.co"}))
    assert "img-src 'self' data:;" in session.csp()


def test_lineage_label_boxes_as_chromium_draws_them(page: Any, tmp_path: Path) -> None:
    """Many children: every label's real box (getBBox) clear of the other labels, of every line and
    of every edge's ends."""
    drawing = svg.lineage(many_children())
    macro = render.ENV.get_template("drawings.html").module.lineage  # type: ignore[attr-defined]
    page.set_content(f"<!doctype html><body>{macro(drawing)}</body>")
    boxes = page.locator("svg text.edge-label").evaluate_all(
        "ts => ts.map(t => { const b = t.getBBox(); return [t.firstChild.nodeValue, b.x, b.y, b.width, b.height]; })"
    )
    assert len(boxes) == 10
    drawn = [svg.LabelBox(text, x, y, w, h) for text, x, y, w, h in boxes]
    for i, a in enumerate(drawn):
        for b in drawn[i + 1 :]:
            assert not a.overlaps(b), (a, b)
        for arrow in drawing.arrows:
            for p, q in pairwise(arrow.points):
                assert not segment_hits_box(p, q, a), (a.text, arrow.label)
    planned = [a.label_box for a in drawing.arrows if a.label_box]  # in the order they are drawn
    for box, slot in zip(drawn, planned, strict=True):  # the measured text fits its reserved slot
        assert box.text == slot.text
        assert slot.x - 0.5 <= box.x and box.x + box.w <= slot.x + slot.w + 0.5, (box, slot)
        assert slot.y - 0.5 <= box.y and box.y + box.h <= slot.y + slot.h + 0.5, (box, slot)
    _shot(page, tmp_path, "lineage-many-children", "svg")


def test_scatter_fills_its_panel_with_round_ticks(page: Any, site: Site, tmp_path: Path) -> None:
    page.goto("/ui/base?ref=acme/tiny-llama")
    plot_box = page.locator("svg#pareto-plot").bounding_box()
    panel = page.locator("svg#pareto-plot").locator("xpath=..").bounding_box()
    assert plot_box["width"] >= panel["width"] - 20  # the panel's padding

    def values(kind: str) -> list[float]:
        return [
            float(v)
            for v in page.locator(f"svg#pareto-plot text.{kind}").evaluate_all(
                "ts => ts.map(t => t.dataset.value)"
            )
        ]

    def one_two_five(v: float) -> bool:
        return f"{v:e}".split("e")[0].rstrip("0").rstrip(".") in {"1", "2", "5"}

    ys, xs = values("y-tick"), values("x-tick")
    assert len(ys) >= 3 and len({round(b - a, 12) for a, b in pairwise(ys)}) == 1
    assert one_two_five(abs(ys[1] - ys[0]))
    log = "log scale" in (page.locator("svg#pareto-plot").text_content() or "")
    assert all(one_two_five(x) for x in xs) if log else one_two_five(xs[1] - xs[0])
    _shot(page, tmp_path, "scatter", "svg#pareto-plot")


def test_exported_model_shows_its_origin_and_not_its_adapter_as_compatible() -> None:
    now = datetime.now(UTC)
    exported = BaseInfo(
        id=9, names=[], fingerprint="sha256:" + "e" * 64, structure_signature="s", uploaded=True,
        module_count=1, created_at=now, param_count=1, architectures=[],
        lineage={"kind": "export", "adapter": "acme/legal:1", "adapter_digest": "sha256:" + "a" * 64,
                 "base": "acme/tiny-llama", "base_fingerprint": "sha256:" + "b" * 64},
    )  # fmt: skip
    origin = exported_from(exported)
    assert origin == {
        "adapter": "acme/legal:1", "adapter_digest": "sha256:" + "a" * 64,
        "base": "acme/tiny-llama", "base_fingerprint": "sha256:" + "b" * 64,
    }  # fmt: skip
    assert exported_from(exported.model_copy(update={"lineage": None})) is None

    def item(digest: str, tier: str) -> FitItem:
        return FitItem.model_construct(ref="acme/x:1", repo="acme/x", version=1, digest=digest, tier=tier)

    tiers = _tiers(
        [item("sha256:" + "a" * 64, "compatible"), item("sha256:" + "c" * 64, "compatible")],
        origin["adapter_digest"],
    )
    assert [i.digest for i in tiers["compatible"]] == ["sha256:" + "c" * 64]


def test_root_redirects_to_the_ui(site: Site) -> None:
    with httpx.Client(base_url=site.url) as http:
        answer = http.get("/")
        assert answer.status_code == 307 and answer.headers["location"] == "/ui"


def test_nice_ticks_are_1_2_5() -> None:
    for lo, hi in [(0.61, 0.83), (3, 97), (0, 12_345), (1.2e6, 9.9e6)]:
        step = plot.nice_step(hi - lo)
        assert f"{step:e}".split("e")[0].rstrip("0").rstrip(".") in {"1", "2", "5"}
