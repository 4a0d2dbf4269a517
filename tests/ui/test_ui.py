"""Every UI page in real headless Chromium against a real server, with real adapters, evaluations,
a merge and jobs: what a person sees, logged out and logged in. Screenshots: test-artifacts/ui/."""

from __future__ import annotations

import re
from typing import Any

import httpx

from registry.access.principal import ANONYMOUS, OPERATOR
from registry.refs import parse_ref
from registry.services import jobs, lineage, versions
from tests.ui.conftest import HOSTILE_MESSAGE, HOSTILE_TASK, Site, log_in, shot, shot_between


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _repos(tab: Any) -> list[str]:
    return [
        str(r)
        for r in tab.locator("#repos tbody tr[data-repo]").evaluate_all("rs => rs.map(r => r.dataset.repo)")
    ]


def test_repositories_search_and_filters(page: Any, site: Site) -> None:
    expect = _expect()
    page.goto("/ui")
    expect(page.locator("h1")).to_have_text("Repositories")
    # Anonymous: the public namespace only; secret/ is private.
    assert _repos(page) == ["acme/dora", "acme/hostile", "acme/legal", "acme/medical", "acme/mix"]
    row = page.locator('#repos tr[data-repo="acme/legal"]')
    expect(row).to_contain_text("production")
    expect(row).to_contain_text("tiny-llama")
    shot(page, "repos")

    page.select_option("#filter-task", "medical")
    page.click("#filters button")
    assert _repos(page) == ["acme/medical"]
    assert "task=medical" in page.url

    page.fill("#search", "medi")
    page.press("#search", "Enter")
    assert _repos(page) == ["acme/medical"]
    page.goto("/ui/repos?q=leg")  # names and tasks
    assert _repos(page) == ["acme/dora", "acme/legal", "acme/mix"]
    page.goto("/ui/repos?task=legal&base=acme/tiny-llama")
    assert _repos(page) == ["acme/legal", "acme/mix"]  # dora has the task but no linked base
    page.goto("/ui/repos?peft_type=LORA&q=nothing-like-this")
    expect(page.locator("#no-repos")).to_be_visible()


def test_private_repository_needs_login_then_logout_hides_it(page: Any, site: Site) -> None:
    expect = _expect()
    anonymous = page.goto("/ui/r/secret/hidden/1")
    assert anonymous is not None and anonymous.status == 404  # as the API: not found, not forbidden
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).not_to_contain_text("classified")

    log_in(page, site)
    expect(page.locator("#whoami")).to_have_text("tester")
    cookie = next(c for c in page.context.cookies() if c["name"] == "adreg_ui_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert page.evaluate("document.cookie") == ""  # no script on the page can read the token
    page.goto("/ui")
    assert "secret/hidden" in _repos(page)
    shown = page.goto("/ui/r/secret/hidden/1")
    assert shown is not None and shown.status == 200
    expect(page.locator("#task")).to_have_text("classified")

    page.click("#logout")
    expect(page.locator(".who")).to_contain_text("anonymous")
    assert not [c for c in page.context.cookies() if c["name"] == "adreg_ui_token"]
    again = page.goto("/ui/r/secret/hidden/1")
    assert again is not None and again.status == 404


def test_a_wrong_token_is_refused_at_login(page: Any, site: Site) -> None:
    expect = _expect()
    page.goto("/ui/login")
    page.fill("#token", "adreg_" + "x" * 43)
    page.click("#login")
    expect(page.locator("#login-error")).to_have_text("invalid token")
    assert not [c for c in page.context.cookies() if c["name"] == "adreg_ui_token"]


def test_version_page_shows_config_files_evals_fits_and_lineage(page: Any, site: Site) -> None:
    expect = _expect()
    page.goto("/ui/r/acme/mix")  # the repository's page is its latest version
    assert page.url.endswith("/ui/r/acme/mix/1")
    expect(page.locator("#version-title")).to_contain_text("acme/mix")
    expect(page.locator("#config")).to_contain_text('"peft_type": "LORA"')
    stored = versions.resolve(site.reg, parse_ref("acme/mix:1"), principal=OPERATOR)
    shown = page.locator("#files tbody tr").evaluate_all(
        "rs => rs.map(r => [r.cells[0].textContent, r.cells[2].textContent])"
    )
    assert shown == [[f.path, f.sha256] for f in stored.files]
    expect(page.locator("#files")).to_contain_text("adapter_model.safetensors")
    expect(page.locator("#files code.digest").first).to_contain_text("sha256:")
    history = page.locator("#evals-history tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("after merge")
    expect(page.locator("#evals-current")).to_contain_text("0.78")
    expect(page.locator("#fits")).to_contain_text("tiny-llama")
    expect(page.locator("#fits")).to_contain_text("exact")
    # Lineage drawn as SVG: the merged version and its two parents, joined by two merge edges.
    graph = page.locator("svg#lineage-graph")
    expect(graph).to_be_visible()
    expect(graph.locator("g.edge-merge")).to_have_count(2)
    expect(graph.locator("g.node-version")).to_have_count(3)
    expect(graph.locator("g.node-base")).to_contain_text("acme/tiny-llama")  # trained on it
    data = lineage.graph(site.reg, "acme/mix:1", principal=ANONYMOUS)
    drawn = graph.locator("g.node").evaluate_all("gs => gs.map(g => g.dataset.node)")
    assert sorted(drawn) == sorted(n.id for n in data.nodes)
    assert graph.locator("g.edge").count() == len(data.edges)
    expect(graph.locator("g.node-root")).to_contain_text("acme/mix")
    expect(graph.locator("g.edge-merge").first).to_contain_text("cat")
    shot(page, "version-mix")

    page.goto("/ui/r/acme/legal/1")
    expect(page.locator("#aliases")).to_contain_text("production")
    expect(page.locator("#qlora")).to_contain_text("warn")
    expect(page.locator("#qlora")).to_contain_text("nf4-float32")
    expect(page.locator("#qlora")).to_contain_text("drift 3% on q_proj")
    expect(page.locator("#evals-history tbody tr")).to_have_count(2)  # push-time, then a later one
    expect(page.locator("#evals-current")).to_contain_text("0.73")  # the latest is current
    # Its lineage: the merge made from it, a link to the child's page.
    page.locator("svg#lineage-graph a").filter(has_text="acme/mix").click()
    assert page.url.endswith("/ui/r/acme/mix/1")


def test_hostile_names_are_shown_as_text(page: Any, site: Site) -> None:
    expect = _expect()
    page.goto("/ui/r/acme/hostile/1")
    expect(page.locator("#task")).to_have_text(HOSTILE_TASK)
    expect(page.locator("#message")).to_have_text(HOSTILE_MESSAGE)
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    page.goto("/ui")
    expect(page.locator('#repos tr[data-repo="acme/hostile"]')).to_contain_text(HOSTILE_TASK)
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_base_page_facts_tiers_leaderboard_and_pareto_scatter(page: Any, site: Site) -> None:
    expect = _expect()
    page.goto("/ui/bases")
    page.locator("#bases a").filter(has_text="tiny-llama").click()
    expect(page.locator("#base-title")).to_have_text("acme/tiny-llama")
    facts = page.locator("#base-facts")
    expect(facts).to_contain_text("LlamaForCausalLM")
    expect(facts).to_contain_text(site.base_fingerprint)
    expect(page.locator("#tier-exact")).to_contain_text("acme/legal:1")
    expect(page.locator("#tier-compatible")).to_contain_text("acme/dora:1")  # unlinked, same shapes
    # The default metric is the most common one; rows are ranked best first.
    expect(page.locator("#metric")).to_have_value("accuracy")
    board = page.locator("#leaderboard tbody tr")
    refs = board.evaluate_all("rs => rs.map(r => r.dataset.ref)")
    assert refs[:3] == ["acme/medical:1", "acme/mix:1", "acme/legal:1"]
    assert "secret/hidden:1" not in refs  # anonymous: the private 0.99 is not on the board
    # The scatter: one circle per version with a score, the front highlighted and joined.
    plot = page.locator("svg#pareto-plot")
    expect(plot).to_be_visible()
    points = plot.locator("circle.point")
    front = plot.locator("circle.on-front")
    assert points.count() == len(refs)
    front_refs = sorted(front.evaluate_all("cs => cs.map(c => c.dataset.ref)"))
    table_refs = sorted(
        page.locator("#pareto-front tbody tr").evaluate_all("rs => rs.map(r => r.dataset.ref)")
    )
    assert front_refs == table_refs and "acme/medical:1" in front_refs
    assert "acme/mix:1" not in front_refs  # medical scores higher with fewer parameters
    assert {c.get_attribute("fill") for c in front.all()} == {"#c05000"}
    assert plot.locator("polyline.front-line").count() == 1
    expect(page.locator('#pareto-front tr[data-ref="acme/medical:1"]')).to_contain_text("acme/mix:1")
    shot(page, "base")
    shot_between(page, "base-ranking", "#board-form", "#pareto-front")  # docs/ui-base.png

    page.select_option("#metric", "f1")
    page.click("#board-form button")
    assert "metric=f1" in page.url
    assert page.locator("#leaderboard tbody tr").evaluate_all("rs => rs.map(r => r.dataset.ref)") == [
        "acme/medical:1"
    ]


def test_jobs_show_live_progress_and_cancel_through_the_form(page: Any, site: Site) -> None:
    expect = _expect()
    denied = page.goto("/ui/jobs")
    assert denied is not None and denied.status == 401
    log_in(page, site)
    page.goto("/ui/jobs")
    row = page.locator(f'#jobs tr[data-job="{site.queued_job}"]')
    expect(row.locator(".status")).to_have_text("queued")
    expect(page.locator("#jobs")).to_contain_text("succeeded")  # the merge run by the CLI
    # A worker takes the job and reports progress: the open page follows without a reload.
    claim = jobs.claim(site.reg, "ui-test-worker", 60)
    assert claim is not None and claim.job_id == site.queued_job
    jobs.heartbeat(site.reg, claim, 60, 0.42, "merging q_proj")
    expect(row.locator(".status")).to_have_text("running")
    expect(row.locator(".pct")).to_have_text("42%")
    expect(row.locator(".stage")).to_have_text("merging q_proj")
    shot(page, "jobs")

    other = page.locator(f'#jobs tr[data-job="{site.cancel_job}"]')
    other.locator("button.cancel").click()
    expect(page.locator(f'#jobs tr[data-job="{site.cancel_job}"] .status')).to_have_text("cancelled")


# ---------------------------------------------------------------- forms, cookies, headers (HTTP)
def _form_token(http: httpx.Client) -> str:
    html = http.get("/ui/login").text
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert match is not None
    return match.group(1)


def test_forms_without_the_right_csrf_token_are_refused(site: Site) -> None:
    with httpx.Client(base_url=site.url) as http:
        token = _form_token(http)  # also sets this client's nonce cookie
        form = {"token": site.token, "next": "/ui"}
        for sent in [{}, {"csrf_token": "0" * 64}, {"csrf_token": token[:-1] + "x"}]:
            refused = http.post("/ui/login", data={**form, **sent})
            assert refused.status_code == 403, sent
            assert "adreg_ui_token" not in refused.cookies
            assert "CSRF" in refused.text
        # The right token from another site's page (a forged form): refused on its Origin.
        forged = http.post(
            "/ui/login", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.test"}
        )
        assert forged.status_code == 403
        # Another browser's token (its own nonce) does not pass with this browser's cookie.
        with httpx.Client(base_url=site.url) as other:
            theirs = _form_token(other)
        assert http.post("/ui/login", data={**form, "csrf_token": theirs}).status_code == 403
        ok = http.post("/ui/login", data={**form, "csrf_token": token}, headers={"Origin": site.url})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        assert "secure" not in cookie  # plain http on loopback; Secure when the request is https
        # Logged in: logout and job cancel without a token are refused and change nothing.
        assert http.get("/ui/jobs").status_code == 200
        assert http.post("/ui/logout", data={}).status_code == 403
        assert http.post(f"/ui/jobs/{site.queued_job}/cancel", data={"csrf_token": "nope"}).status_code == 403
        assert http.get("/ui/jobs").status_code == 200  # still logged in
        assert jobs.get(site.reg, site.queued_job, principal=OPERATOR).status in ("queued", "running")


def test_pages_carry_csp_and_frame_headers(site: Site) -> None:
    with httpx.Client(base_url=site.url) as http:
        for path in [
            "/ui",
            "/ui/r/acme/legal/1",
            "/ui/bases",
            "/ui/login",
            "/ui/r/secret/hidden/1",
            "/ui/static/ui.css",
        ]:
            answer = http.get(path)
            csp = answer.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert answer.headers["x-frame-options"] == "DENY", path
        assert http.get("/ui/r/secret/hidden/1").status_code == 404
        api = http.get("/v1/resolve", params={"ref": "secret/hidden"})
        assert api.status_code == 404  # the same answer as the API's
        bad = http.get("/ui/base", params={"ref": "acme/tiny-llama", "cost": "everything"})
        assert bad.status_code == 400 and "text/html" in bad.headers["content-type"]


def test_a_revoked_tokens_cookie_browses_anonymously(site: Site) -> None:
    from registry.services import accounts

    secret, info = accounts.create_token(site.reg, "tester", name="to revoke", principal=OPERATOR)
    cookies = {"adreg_ui_token": secret}
    with httpx.Client(base_url=site.url, cookies=cookies) as http:
        assert http.get("/ui/r/secret/hidden/1").status_code == 200
        accounts.revoke_token(site.reg, info.id, principal=OPERATOR)
        page = http.get("/ui/r/secret/hidden/1")
        assert page.status_code == 404 and "no longer works" in page.text
