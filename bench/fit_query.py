"""Fit-query latency on PostgreSQL with 100k adapter versions over 1k bases.

    python bench/fit_query.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                              [--versions 100000] [--bases 1000] [--queries 300]

Creates a scratch database (dropped at the end), migrates it, bulk-loads bases (10 per structure
signature, 28 modules each), versions (10% unlinked, each with its module table and an eval score),
then times the service-layer fit query (what `adapters fit` and POST /v1/fit run) for random bases,
mixing tiers, task filters, min-score filters and sorting by a metric. Prints p50/p95/p99.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, insert, text

from registry.access.principal import OPERATOR
from registry.config import Settings
from registry.db import models as m
from registry.entities import FitQuery
from registry.services.context import Registry
from registry.services.fit_query import fit

MODULES = [
    f"model.layers.{layer}.self_attn.{p}"
    for layer in range(4)
    for p in ("q_proj", "k_proj", "v_proj", "o_proj")
] + [f"model.layers.{layer}.mlp.{p}" for layer in range(4) for p in ("gate_proj", "up_proj", "down_proj")]
TASKS = [f"task-{i}" for i in range(20)]


def load(reg: Registry, n_versions: int, n_bases: int, rng: random.Random) -> None:
    now = datetime.now(UTC)
    with reg.engine.begin() as conn:
        bases, names, modules = [], [], []
        for b in range(1, n_bases + 1):
            structure = b % max(1, n_bases // 10)
            hidden = 256 + 64 * structure
            bases.append(
                dict(
                    id=b,
                    fingerprint=f"sha256:{b:064x}",
                    structure_signature=f"sha256:{structure:064x}",
                    architectures=["LlamaForCausalLM"],
                    model_type="llama",
                    hidden_size=hidden,
                    num_layers=4,
                    num_heads=8,
                    num_kv_heads=8,
                    vocab_size=32000,
                    param_count=1,
                    dtype="bfloat16",
                    config={},
                    manifest=None,
                    created_at=now,
                )
            )
            names.append(dict(name=f"org/base-{b}", base_model_id=b, revision=None))
            modules += [
                dict(base_model_id=b, name=mod, kind="linear", in_features=hidden, out_features=hidden)
                for mod in MODULES
            ]
        conn.execute(insert(m.BaseModel), bases)
        conn.execute(insert(m.BaseName), names)
        conn.execute(insert(m.BaseModule), modules)
        repos = n_versions // 10
        conn.execute(
            insert(m.Repository),
            [
                dict(id=r, namespace="acme", name=f"adapter-{r}", created_at=now, latest_version=10)
                for r in range(1, repos + 1)
            ],
        )
        batch: list[dict[str, object]] = []
        evals: list[dict[str, object]] = []
        vmods: list[dict[str, object]] = []
        for v in range(1, n_versions + 1):
            base = rng.randint(1, n_bases)
            unlinked = rng.random() < 0.1
            hidden = bases[base - 1]["hidden_size"]
            batch.append(
                dict(
                    id=v,
                    repository_id=(v - 1) // 10 + 1,
                    number=(v - 1) % 10 + 1,
                    digest=f"sha256:{uuid.uuid4().hex * 2}",
                    manifest={"files": []},
                    peft_type="LORA",
                    task_type="CAUSAL_LM",
                    config={},
                    r=16,
                    lora_alpha=32.0,
                    target_modules=["q_proj"],
                    lora_dropout=0.0,
                    use_rslora=False,
                    use_dora=False,
                    trainable_params=1,
                    adapter_bytes=1,
                    total_bytes=1,
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
            evals.append(dict(version_id=v, metric="accuracy", value=rng.random(), dataset=None, split=None))
            vmods += [
                dict(
                    version_id=v,
                    name=mod,
                    in_features=hidden,
                    out_features=hidden,
                    rank=16,
                    shape_key=f"{mod}|{hidden}|{hidden}",
                    unlinked=unlinked,
                    module_count=4,
                )
                for mod in rng.sample(MODULES, 4)
            ]
            if len(batch) == 10_000:
                conn.execute(insert(m.Version), batch)
                conn.execute(insert(m.EvalScore), evals)
                conn.execute(insert(m.VersionModule), vmods)
                batch, evals, vmods = [], [], []
        if batch:
            conn.execute(insert(m.Version), batch)
            conn.execute(insert(m.EvalScore), evals)
            conn.execute(insert(m.VersionModule), vmods)
    with reg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # the steady state autovacuum keeps a live database in


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--bases", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    rng = random.Random(0)
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    name = f"bench_fit_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        reg = Registry.from_settings(
            Settings(
                database_url=args.pg.rsplit("/", 1)[0] + "/" + name, blob_url="file:///tmp/bench-fit-blobs"
            ),
            migrate=True,
        )
        t0 = time.perf_counter()
        load(reg, args.versions, args.bases, rng)
        print(
            f"loaded {args.versions:,} versions over {args.bases:,} bases in {time.perf_counter() - t0:.0f} s"
        )
        kinds = [
            dict(),
            dict(task="task-3"),
            dict(sort="accuracy"),
            dict(tier="exact"),
            dict(min_scores={"accuracy": 0.5}, sort="accuracy"),
            dict(tier="compatible", task="task-7"),
        ]
        for kw in kinds[:2]:
            fit(reg, FitQuery(base="org/base-1", **kw), principal=OPERATOR)  # warm up
        times = []
        for i in range(args.queries):
            q = FitQuery(base=f"org/base-{rng.randint(1, args.bases)}", **kinds[i % len(kinds)])  # type: ignore[arg-type]
            t0 = time.perf_counter()
            fit(reg, q, principal=OPERATOR)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        pct = statistics.quantiles(times, n=100)
        print(
            f"fit query over {args.queries} queries: p50 {pct[49]:.1f} ms, p95 {pct[94]:.1f} ms, "
            f"p99 {pct[98]:.1f} ms (target p95 < 20 ms)"
        )
        reg.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
