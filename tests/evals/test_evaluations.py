"""Evaluations as history, through the services and over real HTTP, with real PEFT adapters:
append-only with who and when, push-time scores in the same history, refusals, permissions."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from registry.access.principal import OPERATOR, Principal
from registry.client.local import LocalClient
from registry.client.transfer import parse_eval, push_folder
from registry.config import Settings
from registry.entities import EvalInput
from registry.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from registry.refs import parse_ref
from registry.services import evaluations
from registry.services.context import Registry
from storage.local import LocalBlobStore
from tests.conftest import ServerThread
from tests.evals.conftest import user

pytestmark = pytest.mark.server


@pytest.fixture
def client(reg: Registry, tmp_path: Path) -> LocalClient:
    return LocalClient(
        reg, "pusher", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("pusher")
    )


def test_history_is_append_only_with_who_and_when(
    client: LocalClient, reg: Registry, adapters_dir: Path
) -> None:
    pushed = push_folder(
        client, adapters_dir / "lora_a", "acme/legal", evals=[parse_eval("accuracy=0.80@mmlu:test")]
    )
    ref = parse_ref("acme/legal:1")
    first = evaluations.history(reg, ref, principal=OPERATOR)
    assert [(r.metric, r.value, r.dataset, r.split, r.recorded_by) for r in first.records] == [
        ("accuracy", 0.80, "mmlu", "test", "pusher")
    ]
    assert first.records[0].created_at == pushed.info.created_at  # push-time scores: the push's moment

    ana = user(reg, "ana", {"acme": "write"})
    after = evaluations.add_scores(
        reg,
        ref,
        [parse_eval("accuracy=0.85@mmlu:test"), parse_eval("f1=0.7")],
        "re-run with the fixed tokenizer",
        principal=ana,
    )
    assert [(r.metric, r.value, r.recorded_by) for r in after.records] == [
        ("f1", 0.7, "ana"),
        ("accuracy", 0.85, "ana"),
        ("accuracy", 0.80, "pusher"),
    ]
    assert after.records[0].note == "re-run with the fixed tokenizer" and after.records[2].note is None
    assert after.records[0].created_at >= first.records[0].created_at
    assert {(c.metric, c.value) for c in after.current} == {("accuracy", 0.85), ("f1", 0.7)}
    # What a version shows (and fit reads) is the current value; the history keeps the old one.
    assert {(e.metric, e.value) for e in client.resolve("acme/legal").evals} == {
        ("accuracy", 0.85),
        ("f1", 0.7),
    }
    # A later push of other content starts its own history.
    push_folder(client, adapters_dir / "lora_b", "acme/legal")
    assert evaluations.history(reg, parse_ref("acme/legal"), principal=OPERATOR).records == []
    assert len(evaluations.history(reg, ref, principal=OPERATOR).records) == 3


def test_refusals_store_nothing(client: LocalClient, reg: Registry, adapters_dir: Path) -> None:
    push_folder(client, adapters_dir / "lora_a", "acme/legal")
    ref = parse_ref("acme/legal")
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValidationError):
            EvalInput(metric="accuracy", value=value)
    for text in ("accuracy=nan", "accuracy=inf", "accuracy=1e999", "=0.5", "accuracy"):
        with pytest.raises(BadRequest):
            parse_eval(text)
    for bad in ("acc\u202euracy", "a" * 129, "", "line\nbreak"):
        with pytest.raises(ValidationError):
            EvalInput(metric=bad, value=0.5)
    with pytest.raises(ValidationError):
        EvalInput(metric="accuracy", value=0.5, dataset="mm\x00lu")
    with pytest.raises(ValidationFailed):
        evaluations.add_scores(reg, ref, [], principal=OPERATOR)
    with pytest.raises(ValidationFailed):
        evaluations.add_scores(
            reg, ref, [parse_eval("acc=0.5@d"), parse_eval("acc=0.6@d")], principal=OPERATOR
        )
    with pytest.raises(NotFound):
        evaluations.add_scores(reg, parse_ref("acme/legal:9"), [parse_eval("acc=0.5")], principal=OPERATOR)
    assert evaluations.history(reg, ref, principal=OPERATOR).records == []


def test_permissions(client: LocalClient, reg: Registry, adapters_dir: Path) -> None:
    push_folder(client, adapters_dir / "lora_a", "acme/legal")
    ref = parse_ref("acme/legal")
    reader = user(reg, "rita", {"acme": "read"})
    read_only_token = user(reg, "wes", {"acme": "write"}, read_only=True)
    outsider = user(reg, "olga", {"other": "write"})
    with pytest.raises(Forbidden):
        evaluations.add_scores(reg, ref, [parse_eval("acc=0.5")], principal=reader)
    with pytest.raises(Forbidden):
        evaluations.add_scores(reg, ref, [parse_eval("acc=0.5")], principal=read_only_token)
    with pytest.raises(NotFound):
        evaluations.add_scores(reg, ref, [parse_eval("acc=0.5")], principal=outsider)
    with pytest.raises(NotFound):
        evaluations.history(reg, ref, principal=outsider)
    assert evaluations.history(reg, ref, principal=reader).records == []


def test_over_http(reg: Registry, ev_settings: Settings, tmp_path: Path, adapters_dir: Path) -> None:
    from registry.api import create_app
    from registry.client.http import HttpClient
    from registry.services import accounts

    with ServerThread(create_app(ev_settings, reg)) as srv:
        http = HttpClient(srv.url, srv.admin, tmp_path / "http-cache", token=srv.token)
        push_folder(http, adapters_dir / "lora_a", "acme/legal", evals=[parse_eval("accuracy=0.8@mmlu")])
        h = http.add_evals("acme/legal", [parse_eval("accuracy=0.9@mmlu:test")], note="n")
        assert [(r.value, r.recorded_by) for r in h.records] == [(0.9, srv.admin), (0.8, srv.admin)]
        assert http.eval_history("acme/legal:1") == h
        by_number = httpx.get(f"{srv.url}/v1/repos/acme/legal/versions/1/evals", headers=srv.auth)
        assert by_number.status_code == 200 and by_number.json() == h.model_dump(mode="json")

        accounts.add_user(reg, "rita", principal=OPERATOR)
        accounts.grant(reg, "rita", "acme", "write", principal=OPERATOR)
        ro, _ = accounts.create_token(reg, "rita", read_only=True, principal=OPERATOR)
        accounts.add_user(reg, "olga", principal=OPERATOR)
        other, _ = accounts.create_token(reg, "olga", principal=OPERATOR)
        body = {"scores": [{"metric": "acc", "value": 0.5}]}
        url = f"{srv.url}/v1/evals"
        refused = httpx.post(
            url, params={"ref": "acme/legal"}, json=body, headers={"Authorization": f"Bearer {ro}"}
        )
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        hidden = httpx.post(
            url, params={"ref": "acme/legal"}, json=body, headers={"Authorization": f"Bearer {other}"}
        )
        assert hidden.status_code == 404
        assert (
            httpx.get(
                url, params={"ref": "acme/legal"}, headers={"Authorization": f"Bearer {other}"}
            ).status_code
            == 404
        )
        anonymous = httpx.post(url, params={"ref": "acme/legal"}, json=body)
        assert anonymous.status_code == 401
        # Values that are not finite numbers never reach the database.
        for raw in (
            '{"scores": [{"metric": "acc", "value": NaN}]}',
            '{"scores": [{"metric": "acc", "value": 1e999}]}',
        ):
            bad = httpx.post(
                url,
                params={"ref": "acme/legal"},
                content=raw,
                headers={**srv.auth, "Content-Type": "application/json"},
            )
            assert bad.status_code in (400, 422), bad.text
        assert len(http.eval_history("acme/legal").records) == 2
        http.close()
        # Documented in OpenAPI, each with its response model.
        spec = httpx.get(f"{srv.url}/openapi.json").json()
        documented = {
            ("/v1/evals", "get"): "EvalHistory",
            ("/v1/evals", "post"): "EvalHistory",
            ("/v1/repos/{namespace}/{name}/versions/{number}/evals", "get"): "EvalHistory",
            ("/v1/leaderboard", "get"): "Leaderboard",
            ("/v1/pareto", "get"): "ParetoResult",
            ("/v1/compare", "get"): "Comparison",
            ("/v1/lineage/{target}", "get"): "LineageGraph",
        }
        for (path, method), model in documented.items():
            responses = spec["paths"][path][method]["responses"]
            ok = responses.get("200") or responses["201"]
            assert ok["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model}")
