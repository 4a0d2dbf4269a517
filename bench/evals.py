"""Leaderboard and Pareto latency on PostgreSQL at 100k adapter versions with 10 scores each.

    python bench/evals.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                          [--versions 100000] [--bases 1000] [--queries 200] [--http]

Creates a scratch database (dropped at the end), migrates it, bulk-loads (COPY) bases (10 per
structure signature, 28 modules each), repositories of 10 versions (a sweep: rank, targets,
dropout vary; exact trainable parameter counts; 10% unlinked with their module tables) and 10
current scores per version (5 metrics x 2 datasets), then times, through the services, the
leaderboard and the Pareto front of random bases. Anchors measured in the same run:
  - leaderboard: a plain `SELECT ... FROM eval_scores WHERE metric = ? ORDER BY value DESC LIMIT 20`
    (the cheapest "top scores" query there is; no fit, no per-repository ranking);
  - pareto: the naive way, one plain SELECT of (cost, score) for the base's own versions (the
    exact tier only: fewer rows than ours) and the front by the sweep notebooks' O(n^2) loop.
Prints p50/p95 of each and the ratio to its anchor. With --http, also the leaderboard through the
API (uvicorn on loopback, real HTTP client).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, insert, text

from registry.access.principal import OPERATOR
from registry.config import Settings
from registry.db import models as m
from registry.entities import LeaderboardQuery, ParetoQuery
from registry.services.context import Registry
from registry.services.rankings import leaderboard, pareto

HIDDEN_BASE = 256
LAYERS = 4
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODULES = [
    f"model.layers.{layer}.{'self_attn' if p.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{p}"
    for layer in range(LAYERS)
    for p in PROJ
]
TARGETS = [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"], list(PROJ)]
RANKS = [4, 8, 16, 32, 64]
TASKS = [f"task-{i}" for i in range(20)]
METRICS = ["accuracy", "f1", "exact_match", "bleu", "loss"]
DATASETS = ["mmlu", "gsm8k"]


def seed(reg: Registry, n_versions: int, n_bases: int, rng: random.Random) -> None:
    """Bulk-load bases, repositories of 10 versions and 10 current scores per version (COPY on
    PostgreSQL, executemany elsewhere: the tests seed SQLite with a few hundred)."""
    now = datetime.now(UTC)
    groups = max(1, n_bases // 10)
    hidden = {b: HIDDEN_BASE + 64 * (b % groups) for b in range(1, n_bases + 1)}
    tables: dict[str, list[dict[str, Any]]] = {
        "base_models": [],
        "base_names": [],
        "base_modules": [],
        "repositories": [],
        "versions": [],
        "version_modules": [],
        "eval_scores": [],
    }
    for b in range(1, n_bases + 1):
        tables["base_models"].append(
            dict(
                id=b,
                fingerprint=f"sha256:{b:064x}",
                structure_signature=f"sha256:{b % groups:064x}",
                architectures=["LlamaForCausalLM"],
                model_type="llama",
                hidden_size=hidden[b],
                num_layers=LAYERS,
                num_heads=8,
                num_kv_heads=8,
                vocab_size=32000,
                param_count=1,
                dtype="bfloat16",
                config={},
                manifest=None,
                lineage=None,
                created_at=now,
            )
        )
        tables["base_names"].append(dict(name=f"org/base-{b}", base_model_id=b, revision=None))
        tables["base_modules"] += [
            dict(base_model_id=b, name=mod, kind="linear", in_features=hidden[b], out_features=hidden[b])
            for mod in MODULES
        ]
    n_repos = max(1, n_versions // 10)
    repo_base = {r: rng.randint(1, n_bases) for r in range(1, n_repos + 1)}
    tables["repositories"] = [
        dict(
            id=r,
            namespace="acme",
            name=f"sweep-{r}",
            created_at=now,
            latest_version=10,
            version_counter=10,
        )
        for r in range(1, n_repos + 1)
    ]
    score_id = 0
    for v in range(1, n_versions + 1):
        repo = (v - 1) // 10 + 1
        base = repo_base[repo]
        unlinked = rng.random() < 0.1
        r = rng.choice(RANKS)
        targets = rng.choice(TARGETS)
        mods = [mod for mod in MODULES if mod.rsplit(".", 1)[1] in targets]
        params = sum(r * (hidden[base] + hidden[base]) for _ in mods)
        tables["versions"].append(
            dict(
                id=v,
                repository_id=repo,
                number=(v - 1) % 10 + 1,
                digest=f"sha256:{uuid.UUID(int=rng.getrandbits(128)).hex * 2}",
                manifest={"files": []},
                peft_type="LORA",
                task_type="CAUSAL_LM",
                config={},
                r=r,
                lora_alpha=float(2 * r),
                target_modules=targets,
                lora_dropout=rng.choice([0.0, 0.05, 0.1]),
                use_rslora=False,
                use_dora=False,
                trainable_params=params,
                adapter_bytes=2 * params + 1024,
                total_bytes=2 * params + 2048,
                base_model_name=f"org/base-{base}",
                base_model_revision=None,
                task=rng.choice(TASKS),
                message=None,
                pushed_by="bench",
                created_at=now,
                lineage=None,
                base_model_id=None if unlinked else base,
                fit_override=None,
            )
        )
        if unlinked:
            tables["version_modules"] += [
                dict(
                    version_id=v,
                    name=mod,
                    in_features=hidden[base],
                    out_features=hidden[base],
                    rank=r,
                    shape_key=f"{mod}|{hidden[base]}|{hidden[base]}",
                    unlinked=True,
                    module_count=len(mods),
                )
                for mod in mods
            ]
        quality = rng.random()
        for metric in METRICS:
            for dataset in DATASETS:
                score_id += 1
                value = quality * 0.5 + rng.random() * 0.5
                tables["eval_scores"].append(
                    dict(
                        id=score_id,
                        version_id=v,
                        metric=metric,
                        value=1 - value if metric == "loss" else value,
                        dataset=dataset,
                        split="test",
                        recorded_by="bench",
                        created_at=now,
                        note=None,
                        current=True,
                    )
                )
    _load(reg, tables)


def _load(reg: Registry, tables: dict[str, list[dict[str, Any]]]) -> None:
    order = [
        ("base_models", m.BaseModel),
        ("base_names", m.BaseName),
        ("base_modules", m.BaseModule),
        ("repositories", m.Repository),
        ("versions", m.Version),
        ("version_modules", m.VersionModule),
        ("eval_scores", m.EvalScore),
    ]
    postgres = reg.engine.dialect.name == "postgresql"
    with reg.engine.begin() as conn:
        for name, model in order:
            rows = tables[name]
            if not rows:
                continue
            if postgres and len(rows) > 1000:
                _copy(conn, model, rows)
            else:
                conn.execute(insert(model), rows)
        if postgres:  # ids were given explicitly: move the sequences past them
            for name in ("base_models", "repositories", "versions", "eval_scores"):
                conn.execute(text(f"SELECT setval('{name}_id_seq', (SELECT max(id) FROM {name}))"))
    if postgres:
        with reg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))  # the steady state autovacuum keeps a live database in


def _copy(conn: Any, model: type[m.Base], rows: list[dict[str, Any]]) -> None:
    """COPY rows into the model's table (about 20x faster than executemany at 1M rows)."""
    import json

    table = model.__table__
    cols = list(rows[0])
    json_cols = {c.name for c in table.columns if c.type.__class__.__name__ == "JSON"}  # type: ignore[attr-defined]

    def cell(col: str, value: Any) -> Any:
        return json.dumps(value) if col in json_cols and value is not None else value

    raw = conn.connection.dbapi_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
        for row in rows:
            copy.write_row([cell(c, row[c]) for c in cols])


def _timed(fn: Callable[[int], Any], n: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _pct(times: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(times, n=100)
    return q[49], q[94]


def naive_front(points: list[tuple[int, float]]) -> list[int]:
    """The front as sweep notebooks compute it: every point against every other (O(n^2))."""
    front = []
    for i, (ci, si) in enumerate(points):
        if not any(
            (cj <= ci and sj >= si and (cj < ci or sj > si)) for j, (cj, sj) in enumerate(points) if j != i
        ):
            front.append(i)
    return front


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--bases", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--http", action="store_true", help="Also time the leaderboard through the API.")
    args = ap.parse_args()
    rng = random.Random(0)
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    name = f"bench_evals_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        settings = Settings(
            database_url=args.pg.rsplit("/", 1)[0] + "/" + name, blob_url="file:///tmp/bench-evals-blobs"
        )
        reg = Registry.from_settings(settings, migrate=True)
        t0 = time.perf_counter()
        seed(reg, args.versions, args.bases, rng)
        with reg.engine.connect() as conn:
            n_scores = conn.execute(text("SELECT count(*) FROM eval_scores")).scalar_one()
        print(
            f"loaded {args.versions:,} versions, {n_scores:,} scores over {args.bases:,} bases "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        _run(reg, settings, args, rng)
        reg.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _run(reg: Registry, settings: Settings, args: argparse.Namespace, rng: random.Random) -> None:
    bases = [f"org/base-{rng.randint(1, args.bases)}" for _ in range(args.queries)]
    kinds: list[dict[str, Any]] = [
        dict(metric="accuracy"),
        dict(metric="accuracy", dataset="mmlu"),
        dict(metric="loss", lower_is_better=True),
        dict(metric="f1", task="task-3"),
    ]

    def board(i: int) -> Any:
        return leaderboard(reg, LeaderboardQuery(base=bases[i], **kinds[i % len(kinds)]), principal=OPERATOR)

    def front(i: int) -> Any:
        kw = {k: v for k, v in kinds[i % len(kinds)].items()}
        return pareto(
            reg, ParetoQuery(base=bases[i], cost=("params", "bytes", "rank")[i % 3], **kw), principal=OPERATOR
        )

    anchor_sql = text(
        "SELECT version_id, value FROM eval_scores WHERE metric = :metric AND current "
        "ORDER BY value DESC LIMIT 20"
    )

    def front_only(i: int) -> Any:
        kw = {k: v for k, v in kinds[i % len(kinds)].items()}
        q = ParetoQuery(base=bases[i], cost=("params", "bytes", "rank")[i % 3], front_only=True, **kw)
        return pareto(reg, q, principal=OPERATOR)

    def top(i: int) -> Any:
        with reg.engine.connect() as conn:
            return conn.execute(anchor_sql, {"metric": METRICS[i % len(METRICS)]}).all()

    for fn in (board, front, top):
        fn(0)  # warm up
    sizes = [len(front(i).points) for i in range(5)]
    print(f"pareto candidates per base (first 5 queries): {sizes}")
    results = {
        "leaderboard": _pct(_timed(board, args.queries)),
        "pareto (every point)": _pct(_timed(front, args.queries)),
        "pareto (front only: what `adapters pareto` asks)": _pct(_timed(front_only, args.queries)),
        "anchor: top-20 SELECT on eval_scores": _pct(_timed(top, args.queries)),
    }

    # The naive Pareto anchor: one plain SELECT of (cost, score) for the base's own versions
    # (fewer rows than the fit tiers give ours), the front by the notebook O(n^2) loop.
    naive_sql = text(
        "SELECT v.trainable_params, s.value FROM versions v JOIN eval_scores s ON s.version_id = v.id "
        "JOIN base_names n ON n.base_model_id = v.base_model_id "
        "WHERE n.name = :base AND s.metric = 'accuracy' AND s.dataset = 'mmlu' AND s.current"
    )

    def naive(i: int) -> Any:
        with reg.engine.connect() as conn:
            rows = conn.execute(naive_sql, {"base": bases[i]}).all()
        return naive_front([(c, v) for c, v in rows])

    results["anchor: naive pareto (SELECT + O(n^2) front)"] = _pct(_timed(naive, args.queries))
    if args.http:
        results["leaderboard over HTTP"] = _http(reg, settings, bases, kinds, args.queries)
    for label, (p50, p95) in results.items():
        print(f"{label:55s} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
    lb95 = results["leaderboard"][1]
    pa95 = results["pareto (every point)"][1]
    top95 = results["anchor: top-20 SELECT on eval_scores"][1]
    naive95 = results["anchor: naive pareto (SELECT + O(n^2) front)"][1]
    print(f"leaderboard p95 / top-20 SELECT p95 = {lb95 / top95:.1f}x   (target: p95 < 50 ms)")
    fo95 = results["pareto (front only: what `adapters pareto` asks)"][1]
    print(f"pareto p95 / naive pareto p95 = {pa95 / naive95:.2f}x, front only {fo95 / naive95:.2f}x")


def _http(
    reg: Registry, settings: Settings, bases: list[str], kinds: list[dict[str, Any]], n: int
) -> tuple[float, float]:
    import socket
    import threading

    import httpx
    import uvicorn

    from registry.api import create_app
    from registry.services import accounts

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accounts.add_user(reg, "bench", admin=True, principal=OPERATOR)
    token, _ = accounts.create_token(reg, "bench", principal=OPERATOR)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, reg), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as http:

            def call(i: int) -> Any:
                params = {"base": bases[i], **kinds[i % len(kinds)]}
                resp = http.get("/v1/leaderboard", params=params)
                resp.raise_for_status()
                return resp

            call(0)
            return _pct(_timed(call, n))
    finally:
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    main()
