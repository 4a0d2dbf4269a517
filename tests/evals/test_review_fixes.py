"""The review of issue 13's backend: a bounded history, name rules on datasets and splits, one
duplicate-key rule for push and `eval add`, one default-metric rule, split-aware rankings, DoRA as
its own evidence, `compare` of two or more, lineage claims checked at push time, and a migration
that does not depend on the services. Real adapters, SQLite and PostgreSQL, real HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from cli.plan import evidence
from registry.access.principal import OPERATOR, Principal
from registry.client.bases import add_base_folder
from registry.client.local import LocalClient
from registry.client.transfer import parse_eval, push_folder
from registry.config import Settings
from registry.entities import EvalInput, LeaderboardQuery, ParetoQuery, PushRequest
from registry.errors import BadRequest, NotFound, ValidationFailed
from registry.refs import parse_ref
from registry.services import evaluations, lineage, rankings, versions
from registry.services.context import Registry
from storage.local import LocalBlobStore
from tests.cli.conftest import Cli
from tests.conftest import ServerThread
from tests.evals.conftest import user

pytestmark = pytest.mark.server

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0007_evaluations.py"


@pytest.fixture
def client(reg: Registry, tmp_path: Path) -> LocalClient:
    return LocalClient(
        reg, "pusher", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("pusher")
    )


# ---------------------------------------------------------------- 1. a bounded history
def test_history_lists_the_newest_and_counts_all(
    client: LocalClient, reg: Registry, adapters_dir: Path
) -> None:
    push_folder(client, adapters_dir / "lora_a", "acme/legal", evals=[parse_eval("acc=0.1@mmlu:test")])
    ref = parse_ref("acme/legal")
    for i in range(2, 7):
        evaluations.add_scores(
            reg, ref, [parse_eval(f"acc=0.{i}@mmlu:test"), parse_eval(f"f1=0.{i}")], principal=OPERATOR
        )
    whole = evaluations.history(reg, ref, principal=OPERATOR)
    assert whole.total == 11 and len(whole.records) == 11
    page = evaluations.history(reg, ref, 3, principal=OPERATOR)
    assert page.total == 11
    assert page.records == whole.records[:3]
    assert [(r.metric, r.value) for r in page.records] == [("f1", 0.6), ("acc", 0.6), ("f1", 0.5)]
    # The current scores are complete whatever the limit.
    assert {(c.metric, c.value) for c in page.current} == {("acc", 0.6), ("f1", 0.6)}
    assert evaluations.history(reg, ref, 1, principal=OPERATOR).current == whole.current
    for bad in (0, 1001):
        with pytest.raises(BadRequest):
            evaluations.history(reg, ref, bad, principal=OPERATOR)
    assert client.eval_history("acme/legal", 2).records == page.records[:2]


def test_history_limit_over_http(
    reg: Registry, ev_settings: Settings, tmp_path: Path, adapters_dir: Path
) -> None:
    from registry.api import create_app
    from registry.client.http import HttpClient

    with ServerThread(create_app(ev_settings, reg)) as srv:
        http = HttpClient(srv.url, srv.admin, tmp_path / "http-cache", token=srv.token)
        push_folder(http, adapters_dir / "lora_a", "acme/legal", evals=[parse_eval("acc=0.1")])
        for v in (0.2, 0.3):
            http.add_evals("acme/legal", [parse_eval(f"acc={v}")])
        h = http.eval_history("acme/legal", 1)
        assert (h.total, [r.value for r in h.records], [c.value for c in h.current]) == (3, [0.3], [0.3])
        auth = {"Authorization": f"Bearer {srv.token}"}
        for limit in (0, 1001):
            resp = httpx.get(
                f"{srv.url}/v1/evals", params={"ref": "acme/legal", "limit": limit}, headers=auth
            )
            assert resp.status_code == 422, resp.text
        resp = httpx.get(f"{srv.url}/v1/repos/acme/legal/versions/1/evals", params={"limit": 2}, headers=auth)
        assert resp.status_code == 200 and len(resp.json()["records"]) == 2 and resp.json()["total"] == 3


def test_evals_cli_limit(embedded: Cli, adapters_dir: Path) -> None:
    embedded("push", str(adapters_dir / "lora_a"), "acme/legal", "--eval", "acc=0.1")
    for v in ("0.2", "0.3", "0.4"):
        embedded("eval", "add", "acme/legal", f"acc={v}")
    doc = embedded.json("evals", "acme/legal", "--limit", "2")
    assert (doc["total"], [r["value"] for r in doc["records"]]) == (4, [0.4, 0.3])
    assert "the newest 2 of 4 records" in embedded("evals", "acme/legal", "--limit", "2").stdout
    assert embedded("evals", "acme/legal", "--limit", "0", ok=False).exit_code != 0


# ---------------------------------------------------------------- 2. dataset and split names
def test_dataset_and_split_names(
    reg: Registry, ev_settings: Settings, tmp_path: Path, adapters_dir: Path
) -> None:
    for bad in ({"dataset": ""}, {"dataset": "a:b"}, {"dataset": "a@b"}, {"dataset": "d", "split": ""}):
        with pytest.raises(ValidationError):
            EvalInput(metric="acc", value=0.5, **bad)
    for bad in ({"dataset": "d", "split": "x:y"}, {"dataset": "d", "split": "x@y"}, {"split": "test"}):
        with pytest.raises(ValidationError):
            EvalInput(metric="acc", value=0.5, **bad)
    for text in ("acc=0.5@", "acc=0.5@mmlu:", "acc=0.5@:test", "acc=0.5@a:b:c", "acc=0.5@a@b"):
        with pytest.raises(BadRequest):
            parse_eval(text)
    ok = parse_eval("acc=0.5@mmlu:test")
    assert (ok.dataset, ok.split) == ("mmlu", "test")

    from registry.api import create_app

    with ServerThread(create_app(ev_settings, reg)) as srv:
        client = LocalClient(
            reg, "pusher", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("pusher")
        )
        push_folder(client, adapters_dir / "lora_a", "acme/legal")
        auth = {"Authorization": f"Bearer {srv.token}"}
        for score in ({"dataset": ""}, {"dataset": "a:b"}, {"dataset": "d", "split": "s@t"}):
            body = {"scores": [{"metric": "acc", "value": 0.5, **score}]}
            resp = httpx.post(f"{srv.url}/v1/evals", params={"ref": "acme/legal"}, json=body, headers=auth)
            assert resp.status_code == 422, resp.text
    assert evaluations.history(reg, parse_ref("acme/legal"), principal=OPERATOR).total == 0


# ---------------------------------------------------------------- 3. 0007 stands alone
def test_migration_0007_imports_nothing_of_the_registry() -> None:
    tree = ast.parse(MIGRATION.read_text("utf-8"))
    imported = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    ]
    assert imported and not [i for i in imported if i and i.split(".")[0] == "registry"], imported


# ---------------------------------------------------------------- 4. one duplicate-key rule
def test_a_key_twice_is_refused_at_push_and_at_eval_add(
    client: LocalClient, reg: Registry, adapters_dir: Path
) -> None:
    twice = [parse_eval("acc=0.5@d:s"), parse_eval("acc=0.6@d:s")]
    with pytest.raises(ValidationError, match="acc@d:s is given twice"):
        PushRequest.model_validate({"files": [{"path": "a", "size": 1, "sha256": "x"}], "evals": twice})
    with pytest.raises(ValidationError):
        push_folder(client, adapters_dir / "lora_a", "acme/legal", evals=twice)
    with pytest.raises(NotFound):
        versions.resolve(reg, parse_ref("acme/legal"), principal=OPERATOR)
    push_folder(client, adapters_dir / "lora_a", "acme/legal", evals=[twice[0], parse_eval("acc=0.6@d:t")])
    with pytest.raises(ValidationFailed, match="given twice"):
        evaluations.add_scores(reg, parse_ref("acme/legal"), twice, principal=OPERATOR)
    assert evaluations.history(reg, parse_ref("acme/legal"), principal=OPERATOR).total == 2


# ---------------------------------------------------------------- 5, 6, 8: rankings
@pytest.fixture
def ranked(client: LocalClient, adapters_dir: Path) -> LocalClient:
    """Three versions on tiny-llama: LoRA a (better on `test`), LoRA b (better on `val`), DoRA."""
    add_base_folder(client, adapters_dir / "base", ["tiny-llama"])
    push_folder(
        client,
        adapters_dir / "lora_a",
        "acme/a",
        task="legal",
        evals=[parse_eval("acc=0.9@mmlu:test"), parse_eval("acc=0.1@mmlu:val"), parse_eval("f1=0.3")],
        base="tiny-llama",
    )
    push_folder(
        client,
        adapters_dir / "lora_b",
        "acme/b",
        task="legal",
        evals=[parse_eval("acc=0.2@mmlu:test"), parse_eval("acc=0.8@mmlu:val")],
        base="tiny-llama",
    )
    push_folder(
        client,
        adapters_dir / "lora_dora",
        "acme/dora",
        task="med",
        evals=[parse_eval("f1=0.7")],
        base="tiny-llama",
    )
    return client


def test_common_metrics_most_common_first(ranked: LocalClient, reg: Registry) -> None:
    counts = [(c.metric, c.versions) for c in rankings.common_metrics(reg, "tiny-llama", principal=OPERATOR)]
    assert counts == [("f1", 2), ("acc", 2)] or counts == [("acc", 2), ("f1", 2)]
    assert counts == sorted(counts, key=lambda c: (-c[1], c[0]))  # ties by name: acc first
    assert [
        (c.metric, c.versions)
        for c in rankings.common_metrics(reg, "tiny-llama", "legal", principal=OPERATOR)
    ] == [
        ("acc", 2),
        ("f1", 1),
    ]
    assert [c.metric for c in ranked.common_metrics("tiny-llama", "med")] == ["f1"]
    outsider = user(reg, "olga", {"other": "write"})
    assert rankings.common_metrics(reg, "tiny-llama", principal=outsider) == []  # no readable version
    with pytest.raises(NotFound):
        rankings.common_metrics(reg, "no-such-base", principal=OPERATOR)
    # The plan's evidence and the UI take the first as the default metric.
    metric, rows = evidence(ranked, "tiny-llama", "legal", None)
    assert metric == "acc" and {r.ref for r in rows} == {"acme/a:1", "acme/b:1"}


def test_split_narrows_rankings(ranked: LocalClient, reg: Registry) -> None:
    def board(split: str | None) -> list[tuple[str, float, str | None]]:
        q = LeaderboardQuery(base="tiny-llama", metric="acc", dataset="mmlu", split=split)
        return [(r.repo, r.score, r.split) for r in rankings.leaderboard(reg, q, principal=OPERATOR).rows]

    # Without a split each repository's best over splits counts: a on test, b on val.
    assert board(None) == [("acme/a", 0.9, "test"), ("acme/b", 0.8, "val")]
    assert board("val") == [("acme/b", 0.8, "val"), ("acme/a", 0.1, "val")]
    assert board("test") == [("acme/a", 0.9, "test"), ("acme/b", 0.2, "test")]
    front = rankings.pareto(
        reg, ParetoQuery(base="tiny-llama", metric="acc", dataset="mmlu", split="val"), principal=OPERATOR
    )
    assert front.split == "val" and {(p.repo, p.score) for p in front.points} == {
        ("acme/a", 0.1),
        ("acme/b", 0.8),
    }
    assert (
        rankings.leaderboard(
            reg, LeaderboardQuery(base="tiny-llama", metric="acc", split="none"), principal=OPERATOR
        ).rows
        == []
    )


def test_dora_rows_are_dora_evidence(ranked: LocalClient, reg: Registry) -> None:
    rows = rankings.leaderboard(
        reg, LeaderboardQuery(base="tiny-llama", metric="f1"), principal=OPERATOR
    ).rows
    assert {(r.repo, r.use_dora) for r in rows} == {("acme/a", False), ("acme/dora", True)}
    metric, ev = evidence(ranked, "tiny-llama", None, "f1")
    assert metric == "f1" and {(e.ref, e.method) for e in ev} == {
        ("acme/a:1", "lora"),
        ("acme/dora:1", "dora"),
    }


def test_rankings_cli_split_and_compare_of_two(embedded: Cli, adapters_dir: Path) -> None:
    embedded("base", "add", str(adapters_dir / "base"), "--name", "tiny-llama")
    for folder, repo, evals in (
        ("lora_a", "acme/a", ["acc=0.9@mmlu:test", "acc=0.1@mmlu:val"]),
        ("lora_b", "acme/b", ["acc=0.2@mmlu:test", "acc=0.8@mmlu:val"]),
    ):
        embedded(
            "push", str(adapters_dir / folder), repo, "--base", "tiny-llama", *[f"--eval={e}" for e in evals]
        )
    doc = embedded.json(
        "leaderboard", "--base", "tiny-llama", "--metric", "acc", "--dataset", "mmlu", "--split", "val"
    )
    assert [(r["repo"], r["score"]) for r in doc["rows"]] == [("acme/b", 0.8), ("acme/a", 0.1)]
    doc = embedded.json(
        "pareto", "--base", "tiny-llama", "--metric", "acc", "--split", "test", "--all-points"
    )
    assert {(p["repo"], p["score"]) for p in doc["points"]} == {("acme/a", 0.9), ("acme/b", 0.2)}
    one = embedded("compare", "acme/a", ok=False)
    assert one.exit_code == 2 and "at least two versions" in one.output
    two = embedded.json("compare", "acme/a", "acme/b")
    assert [v["ref"] for v in two["versions"]] == ["acme/a:1", "acme/b:1"]


def test_compare_needs_two(
    client: LocalClient, reg: Registry, ev_settings: Settings, tmp_path: Path, adapters_dir: Path
) -> None:
    push_folder(client, adapters_dir / "lora_a", "acme/a")
    with pytest.raises(BadRequest, match="between 2 and"):
        rankings.compare(reg, [parse_ref("acme/a")], principal=OPERATOR)
    from registry.api import create_app

    with ServerThread(create_app(ev_settings, reg)) as srv:
        auth = {"Authorization": f"Bearer {srv.token}"}
        resp = httpx.get(f"{srv.url}/v1/compare", params={"ref": ["acme/a"]}, headers=auth)
        assert resp.status_code == 422, resp.text
        resp = httpx.get(f"{srv.url}/v1/compare", params={"ref": ["acme/a", "acme/a:1"]}, headers=auth)
        assert resp.status_code == 200, resp.text


def test_metrics_over_http_equal_local(
    ranked: LocalClient, reg: Registry, ev_settings: Settings, tmp_path: Path
) -> None:
    from registry.api import create_app
    from registry.client.http import HttpClient

    with ServerThread(create_app(ev_settings, reg)) as srv:
        http = HttpClient(srv.url, srv.admin, tmp_path / "http-cache", token=srv.token)
        assert http.common_metrics("tiny-llama", "legal") == ranked.common_metrics("tiny-llama", "legal")
        with pytest.raises(NotFound):
            http.common_metrics("no-such-base")


# ---------------------------------------------------------------- 7. lineage claims
def test_pushed_lineage_claims_are_checked(reg: Registry, tmp_path: Path, adapters_dir: Path) -> None:
    op = LocalClient(reg, "op", LocalBlobStore(tmp_path / "op-cache"), principal=Principal.operator("op"))
    victim = push_folder(op, adapters_dir / "lora_a", "secret/x")
    public = push_folder(op, adapters_dir / "lora_dora", "evil/ok")
    mallory = user(reg, "mallory", {"evil": "write"})
    evil = LocalClient(reg, "mallory", LocalBlobStore(tmp_path / "m-cache"), principal=mallory)
    claim = {
        "kind": "merge",
        "method": "linear",
        "unverified": [],  # a forged mark is replaced
        "parents": [
            {"ref": "secret/x:1", "digest": victim.digest, "weight": 0.5, "unverified": False},
            {"ref": "evil/ok:1", "digest": public.digest, "weight": 0.3},
            {"digest": "sha256:" + "0" * 64, "weight": 0.2},
        ],
    }
    pushed = push_folder(evil, adapters_dir / "lora_b", "evil/fake", lineage=claim)
    doc = pushed.info.lineage
    assert doc is not None
    # The claims stay, marked: the unreadable parent and the one that does not exist.
    assert sorted(doc["unverified"]) == sorted([victim.digest, "sha256:" + "0" * 64])
    assert [p.get("unverified", False) for p in doc["parents"]] == [True, False, True]
    # The victim's descendants do not list the pusher; the readable parent's do.
    below = lineage.graph(reg, "secret/x", principal=OPERATOR)
    assert "version:evil/fake:1" not in {n.id for n in below.nodes}
    assert "version:evil/fake:1" in {n.id for n in lineage.graph(reg, "evil/ok", principal=OPERATOR).nodes}
    # Upward the claim is shown as unverified.
    up = lineage.graph(reg, "evil/fake", principal=OPERATOR)
    assert {e.source: e.unverified for e in up.edges if e.kind == "merge"}["version:secret/x:1"] is True
    assert {e.source: e.unverified for e in up.edges if e.kind == "merge"}["version:evil/ok:1"] is False

    # The same claim by someone who may read the parent is recorded as an edge.
    both = user(reg, "rosa", {"evil": "write", "secret": "read"})
    honest = LocalClient(reg, "rosa", LocalBlobStore(tmp_path / "r-cache"), principal=both)
    real = {"kind": "merge", "parents": [{"ref": "secret/x:1", "digest": victim.digest, "weight": 1.0}]}
    made = push_folder(honest, adapters_dir / "lora_b", "evil/real", lineage=real)
    assert made.info.lineage is not None and "unverified" not in made.info.lineage
    assert "version:evil/real:1" in {n.id for n in lineage.graph(reg, "secret/x", principal=OPERATOR).nodes}


def test_export_claims_on_a_version_are_checked(reg: Registry, tmp_path: Path, adapters_dir: Path) -> None:
    op = LocalClient(reg, "op", LocalBlobStore(tmp_path / "op-cache"), principal=Principal.operator("op"))
    add_base_folder(op, adapters_dir / "base", ["secret/base"])
    victim = push_folder(op, adapters_dir / "lora_a", "secret/x")
    fingerprint = op.get_base("secret/base").fingerprint
    assert fingerprint is not None
    mallory = user(reg, "mallory", {"evil": "write"})
    evil = LocalClient(reg, "mallory", LocalBlobStore(tmp_path / "m-cache"), principal=mallory)
    claim = {"kind": "export", "adapter_digest": victim.digest, "base_fingerprint": fingerprint}
    pushed = push_folder(evil, adapters_dir / "lora_b", "evil/fake", lineage=claim)
    assert pushed.info.lineage is not None
    assert sorted(pushed.info.lineage["unverified"]) == sorted([victim.digest, fingerprint])
    assert "version:evil/fake:1" not in {
        n.id for n in lineage.graph(reg, "secret/x", principal=OPERATOR).nodes
    }
    assert "version:evil/fake:1" not in {
        n.id for n in lineage.graph(reg, "secret/base", principal=OPERATOR).nodes
    }


def test_ui_version_page_shows_the_newest_with_the_total(
    reg: Registry, ev_settings: Settings, tmp_path: Path, adapters_dir: Path
) -> None:
    from registry.api import create_app
    from registry.ui.session import TOKEN_COOKIE

    client = LocalClient(
        reg, "pusher", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("pusher")
    )
    push_folder(client, adapters_dir / "lora_a", "acme/legal")
    scores = [parse_eval(f"m{i:03d}=0.5") for i in range(evaluations.HISTORY_LIMIT + 1)]
    evaluations.add_scores(reg, parse_ref("acme/legal"), scores, principal=OPERATOR)
    with ServerThread(create_app(ev_settings, reg)) as srv:
        html = httpx.get(f"{srv.url}/ui/r/acme/legal/1", cookies={TOKEN_COOKIE: srv.token}).text
    history = html.split('id="evals-history"', 1)[1].split("</table>", 1)[0]
    current = html.split('id="evals-current"', 1)[1].split("</table>", 1)[0]
    assert "the newest 100 of 101 records" in html
    assert history.count("<tr>") == 1 + 100 and current.count("<tr>") == 1 + 101


def test_a_registered_base_claims_lineage_only_of_what_it_may_read(
    reg: Registry, tmp_path: Path, adapters_dir: Path
) -> None:
    """A base's export lineage is checked like a version's: registering a base that claims to be
    made from a version its registrant may not read puts nothing under that version."""
    from registry.client.bases import fingerprint_folder, registration

    op = LocalClient(reg, "op", LocalBlobStore(tmp_path / "op-cache"), principal=Principal.operator("op"))
    victim = push_folder(op, adapters_dir / "lora_a", "secret/x")
    mallory = user(reg, "mallory", {"evil": "write"})
    evil = LocalClient(reg, "mallory", LocalBlobStore(tmp_path / "m-cache"), principal=mallory)
    data = registration(fingerprint_folder(adapters_dir / "base"), ["evil/merged"], None)
    data.lineage = {"kind": "export", "adapter_digest": victim.digest, "adapter_ref": "secret/x:1"}
    made = evil.register_base(data)
    assert made.lineage is not None and made.lineage["unverified"] == [victim.digest]
    assert not any(n.kind == "base" for n in lineage.graph(reg, "secret/x", principal=OPERATOR).nodes)
