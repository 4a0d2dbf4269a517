"""UI fixtures: one populated registry served by real uvicorn, and one headless Chromium (Debian's
`chromium`, driven by Playwright) per test module. Screenshots go to test-artifacts/ui/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.access.principal import OPERATOR
from registry.config import Settings
from registry.services.context import Registry
from tests.cli.conftest import Cli
from tests.conftest import ServerThread, resource_params

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
HOSTILE_TASK = "<img src=x onerror=window.pwned=1>"
HOSTILE_MESSAGE = "</pre><script>window.pwned=2</script>"


@dataclass
class Site:
    """The registry behind the UI: what the tests expect to see."""

    url: str
    token: str
    """The admin's (`tester`) token."""
    reg: Registry
    digests: dict[str, str]
    base_fingerprint: str
    queued_job: int
    cancel_job: int


def _push(run: Cli, folder: Path, repo: str, *args: str) -> Any:
    return run.json("push", str(folder), repo, *args)


@pytest.fixture(scope="module", params=resource_params("sqlite", "postgresql"))
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database per module and kind (tests/conftest.py's pg_url is per test: too many setups)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ui-db') / 'registry.db'}"
        return
    from tests.conftest import PG_ADMIN_URL

    # From the session's pool, which copies ahead and drops in the background: a DROP DATABASE
    # here (a checkpoint in PostgreSQL 15) took 14 s of teardown under CI's load.
    pool = request.getfixturevalue("pg_pool")
    name = pool.take()
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    pool.give_back(name)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, adapters_dir: Path, database: str) -> Iterator[Site]:
    """Adapters pushed, scored, merged and checked through the CLI as the operator (the server's
    database, no server in between), then served with no job worker (queued jobs stay queued)."""
    from registry.api import create_app
    from registry.entities import EvalInput
    from registry.jobspec import JobRequest
    from registry.refs import parse_ref
    from registry.services import accounts, evaluations, jobs, qlora

    root = tmp_path_factory.mktemp("ui")
    db = database
    settings = Settings(home=root / "home", database_url=db, user="tester")
    reg = Registry.from_settings(settings, migrate=True)
    run = Cli(
        {
            "ADAPTERS_HOME": str(root / "home"),
            "ADAPTERS_DATABASE_URL": db,
            "ADAPTERS_BLOB_URL": "",
            "ADAPTERS_URL": "",
            "ADAPTERS_USER": "tester",
        }
    )
    base = run.json("base", "add", str(adapters_dir / "base"), "--name", "acme/tiny-llama")
    digests = {}
    for folder, repo, extra in [
        ("lora_a", "acme/legal", ["--task", "legal", "--eval", "accuracy=0.71@lex", "--alias", "production"]),
        ("lora_b", "acme/medical", ["--task", "medical", "--eval", "accuracy=0.80@lex", "--eval", "f1=0.5"]),
        ("lora_dora", "acme/dora", ["--task", "legal", "--eval", "accuracy=0.65@lex"]),
        ("lora_a", "secret/hidden", ["--task", "classified", "--eval", "accuracy=0.99@lex"]),
        ("lora_b", "acme/hostile", ["--task", HOSTILE_TASK, "-m", HOSTILE_MESSAGE]),
    ]:
        base_args = [] if repo == "acme/dora" else ["--base", "acme/tiny-llama"]  # dora: unlinked
        digests[repo] = _push(run, adapters_dir / folder, repo, *base_args, *extra)["digest"]
    merged = run.json(
        "merge",
        "acme/legal=0.7",
        "acme/medical=0.3",
        "--into",
        "acme/mix",
        "--method",
        "cat",
        "--task",
        "legal",
    )
    digests["acme/mix"] = merged["digest"]
    evaluations.add_scores(
        reg,
        parse_ref("acme/legal:1"),
        [EvalInput(metric="accuracy", value=0.73, dataset="lex")],
        principal=OPERATOR,
    )
    evaluations.add_scores(
        reg,
        parse_ref("acme/mix:1"),
        [EvalInput(metric="accuracy", value=0.78, dataset="lex")],
        note="after merge",
        principal=OPERATOR,
    )
    qlora.record_verdict(
        reg,
        parse_ref("acme/legal:1"),
        base["id"],
        {"verdict": "warn", "reasons": ["drift 3% on q_proj"]},
        None,
        principal=OPERATOR,
    )
    accounts.set_namespace_visibility(reg, "acme", True, principal=OPERATOR)  # secret/ stays private
    # Two merges for the jobs page: one a test moves forward, one it cancels through the form.
    req = JobRequest(
        type="merge", params={"inputs": [{"ref": "acme/legal", "weight": 1.0}], "into": "acme/q"}
    )
    queued = jobs.submit(reg, req, "tester", principal=OPERATOR).id
    to_cancel = jobs.submit(reg, req, "tester", principal=OPERATOR).id
    with ServerThread(create_app(settings, reg, worker=False)) as srv:
        yield Site(srv.url, srv.token, reg, digests, base["fingerprint"], queued, to_cancel)
    reg.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    missing = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
    if chromium is None:
        # .ci/run installs it: in CI a missing browser is a failure, never a silent skip.
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the `test` extra")
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A fresh browser context (no cookies) per test, anonymous until it logs in."""
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda err: errors.append(str(err)))
    # A CSP violation is reported on the console; a 404 page's own status is not a defect.
    tab.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    yield tab
    context.close()
    assert not errors, errors


def shot(tab: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


def shot_between(tab: Any, name: str, first: str, last: str) -> Path:
    """A screenshot of the page from element `first` down to element `last` (the README's)."""
    top, bottom = tab.locator(first).bounding_box(), tab.locator(last).bounding_box()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    y = max(top["y"] - 48, 0)
    clip = {"x": 0, "y": y, "width": 1280, "height": bottom["y"] + bottom["height"] + 16 - y}
    tab.screenshot(path=str(path), full_page=True, clip=clip)
    return path


def log_in(tab: Any, site: Site) -> None:
    tab.goto("/ui/login")
    tab.fill("#token", site.token)
    tab.click("#login")
    tab.wait_for_selector("#whoami")
