"""A cluster on one machine: API replicas (`adapters serve --no-worker`) and job workers
(`adapters worker`) on one PostgreSQL database and one S3 endpoint (a moto server), behind nginx
(Debian's package, run in the foreground with a generated configuration) as a round-robin load
balancer with no stickiness. Every process has its own ADAPTERS_HOME: nothing is shared but the
database, the store and the configuration (the secret key among it).

By hand: `make cluster` (or `python -m tests.cluster.harness`) starts it, prints the address,
an admin token and the environment to use it, and stops it on Ctrl-C. From pytest: the
`cluster` fixture of tests/cluster/conftest.py.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy.engine import make_url

from tests.cluster.proxy import CuttableProxy

PG_ADMIN_URL = os.environ.get("ADAPTERS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ADMIN = "admin"
S3_KEY = "cluster"
"""moto takes any credentials; these are not the compose files' example passwords."""
START_TIMEOUT_S = 60.0
JOB_LEASE_S = 4
"""Short, so a job whose worker was killed is taken over within seconds (workers beat every
lease/4 s)."""
WORKER_MAIN = (
    "import logging, sys; from cli.main import main; "
    "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s'); sys.exit(main())"
)
"""`adapters worker` with its INFO lines in its log (which worker ran which job)."""
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_HINT = "nginx is not installed: apt-get install -y nginx (Debian's package)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before listening") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s") from None
            time.sleep(0.05)


@dataclass
class Proc:
    """One process of the cluster: how to start it again, where its output goes."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._out = self.log.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 - our own argv
            self.argv, env=self.env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """kill -9: no drain, no clean-up."""
        if self.popen is not None and self.alive:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.popen is not None and self.alive:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        if self._out is not None:
            self._out.close()
            self._out = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Cluster:
    """Start with `with Cluster(...) as c:`; `c.url` is the load balancer, `c.token` an admin's."""

    def __init__(
        self,
        replicas: int = 2,
        workers: int = 2,
        workdir: Path | None = None,
        settings: dict[str, str] | None = None,
        cuttable: bool = False,
    ) -> None:
        """`cuttable`: replicas and workers reach PostgreSQL and S3 through a CuttableProxy each
        (`db_proxy`, `s3_proxy`), so a test can take either away and give it back."""
        if not Path(NGINX).exists():
            raise RuntimeError(NGINX_HINT)
        self.replica_count = replicas
        self.worker_count = workers
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="adapters-cluster-")) if workdir is None else workdir
        self.extra = dict(settings or {})
        self.database = f"adapters_cluster_{uuid.uuid4().hex[:12]}"
        self.database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.database
        self.bucket = f"cluster-{uuid.uuid4().hex[:8]}"
        self.secret_key = secrets.token_urlsafe(32)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.s3: Proc | None = None
        self.nginx: Proc | None = None
        self.replicas: list[Proc] = []
        self.workers: list[Proc] = []
        self.cuttable = cuttable
        self.db_proxy: CuttableProxy | None = None
        self.s3_proxy: CuttableProxy | None = None

    # ------------------------------------------------------------ configuration
    @property
    def s3_endpoint(self) -> str:
        """The S3 endpoint as the cluster's processes reach it (through the proxy if cuttable)."""
        if self.s3_proxy is not None:
            return f"127.0.0.1:{self.s3_proxy.port}"
        assert self.s3 is not None and self.s3.port is not None
        return f"127.0.0.1:{self.s3.port}"

    @property
    def served_database_url(self) -> str:
        """The database URL the cluster's processes use (through the proxy if cuttable)."""
        if self.db_proxy is None:
            return self.database_url
        url = make_url(self.database_url)
        return url.set(host="127.0.0.1", port=self.db_proxy.port).render_as_string(hide_password=False)

    def env(self, home: Path | None = None, **more: str) -> dict[str, str]:
        """The settings every replica and worker shares (and a home of its own)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERS_")}
        env.update(
            ADAPTERS_DATABASE_URL=self.served_database_url,
            ADAPTERS_BLOB_URL=f"s3://{self.bucket}/adapters",
            ADAPTERS_S3_ENDPOINT=self.s3_endpoint,
            ADAPTERS_S3_ACCESS_KEY=S3_KEY,
            ADAPTERS_S3_SECRET_KEY=S3_KEY,
            ADAPTERS_S3_REGION="us-east-1",
            ADAPTERS_S3_SECURE="false",
            ADAPTERS_SECRET_KEY=self.secret_key,
            ADAPTERS_TRUSTED_PROXIES="127.0.0.1",
            ADAPTERS_WORKER_POLL_S="0.2",
            ADAPTERS_JOB_LEASE_S=str(JOB_LEASE_S),
        )
        env.update({f"ADAPTERS_{k.upper()}": v for k, v in self.extra.items()})
        if home is not None:
            env["ADAPTERS_HOME"] = str(home)
        env.update(more)
        return env

    def client_env(self, home: Path) -> dict[str, str]:
        """What a CLI user of the cluster sets: the load balancer and a token, nothing else."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERS_")}
        env.update(ADAPTERS_URL=self.url, ADAPTERS_TOKEN=self.token, ADAPTERS_HOME=str(home))
        env["ADAPTERS_CONFIG_DIR"] = str(home / "config")
        return env

    def cli(self, home: Path, *args: str, timeout: float = 120) -> Any:
        """`adapters ARGS --json` as a user of the cluster (client_env), its JSON document; a
        failure raises with the command's output."""
        proc = subprocess.run(
            [*self._adapters(), *args, "--json"],
            env=self.client_env(home),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"adapters {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
        return json.loads(proc.stdout)

    def _adapters(self) -> list[str]:
        return [str(Path(sys.executable).parent / "adapters")]

    # ------------------------------------------------------------ start and stop
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._start_s3()
        if self.cuttable:
            assert self.s3 is not None and self.s3.port is not None
            pg = make_url(self.database_url)
            self.db_proxy = CuttableProxy(pg.host or "127.0.0.1", pg.port or 5432).start()
            self.s3_proxy = CuttableProxy("127.0.0.1", self.s3.port).start()
        self._make_database()
        self._make_admin()
        for i in range(self.replica_count):
            self.replicas.append(self._replica(i))
        for i in range(self.worker_count):
            self.workers.append(self._worker(i))
        for p in self.replicas:
            self.wait_ready(p)
        self._start_nginx()

    def _start_s3(self) -> None:
        port = free_port()
        self.s3 = Proc(
            "s3",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            dict(os.environ),
            self.dir / "s3.log",
            port,
        )
        self.s3.start()
        assert self.s3.popen is not None
        wait_port(port, self.s3.popen, "moto server")
        from minio import Minio

        Minio(self.s3_endpoint, S3_KEY, S3_KEY, secure=False, region="us-east-1").make_bucket(self.bucket)

    def _make_database(self) -> None:
        from sqlalchemy import create_engine, text

        from registry.db.engine import make_engine, upgrade

        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()
        engine = make_engine(self.database_url)
        upgrade(engine)  # once, before the replicas start (each would also run it, a no-op)
        engine.dispose()

    def _make_admin(self) -> None:
        from registry.access.principal import OPERATOR
        from registry.config import Settings
        from registry.services import accounts
        from registry.services.context import Registry

        env = self.env(self.dir / "admin-home")
        settings = Settings.model_validate(
            {k.removeprefix("ADAPTERS_").lower(): v for k, v in env.items() if k.startswith("ADAPTERS_")}
        )
        reg = Registry.from_settings(settings)
        try:
            accounts.add_user(reg, ADMIN, admin=True, principal=OPERATOR)
            self.token, _ = accounts.create_token(reg, ADMIN, principal=OPERATOR)
        finally:
            reg.close()

    def _replica(self, i: int) -> Proc:
        port = free_port()
        p = Proc(
            f"replica{i + 1}",
            [*self._adapters(), "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
            self.env(self.dir / f"replica{i + 1}"),
            self.dir / f"replica{i + 1}.log",
            port,
        )
        p.start()
        return p

    def _worker(self, i: int) -> Proc:
        name = f"worker{i + 1}"
        port = free_port()  # its /metrics (`--metrics-port`), for tests/cluster/test_prometheus.py
        p = Proc(
            name,
            [
                *[sys.executable, "-c", WORKER_MAIN, "worker", "--device", "cpu", "--name", name],
                *["--metrics-port", str(port)],
            ],
            self.env(self.dir / name),
            self.dir / f"{name}.log",
            port,
        )
        p.start()
        return p

    def wait_ready(self, p: Proc, timeout: float = START_TIMEOUT_S) -> None:
        """Until the replica answers /readyz 200 (its database and store reachable)."""
        assert p.popen is not None and p.port is not None
        wait_port(p.port, p.popen, p.name, timeout)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{p.port}/readyz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{p.name} is not ready: {p.tail()}")
            time.sleep(0.1)

    def nginx_conf(self) -> str:
        user = getpass.getuser()
        upstreams = "\n".join(
            f"    server 127.0.0.1:{p.port} max_fails=1 fail_timeout=5s;" for p in self.replicas
        )
        d = self.dir / "nginx"
        return f"""# Generated by tests/cluster/harness.py: round-robin, no stickiness.
{"user " + user + ";" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format upstream '$msec $request_method $request_uri $status $upstream_addr';
  access_log {d}/access.log upstream;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_max_body_size 0;
  upstream registry {{
{upstreams}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 120s;
    }}
  }}
}}
"""

    def _start_nginx(self) -> None:
        d = self.dir / "nginx"
        d.mkdir(exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(self.nginx_conf())
        self.nginx = Proc(
            "nginx", [NGINX, "-p", str(d), "-c", str(conf)], dict(os.environ), d / "stderr.log", self.port
        )
        self.nginx.start()
        assert self.nginx.popen is not None
        wait_port(self.port, self.nginx.popen, "nginx", 15)

    def close(self) -> None:
        for p in [self.nginx, *self.replicas, *self.workers]:
            if p is not None:
                p.stop(signal.SIGQUIT if p is self.nginx else signal.SIGTERM)
        if self.s3 is not None:
            self.s3.stop()
        for proxy in (self.db_proxy, self.s3_proxy):
            if proxy is not None:
                proxy.close()
        with contextlib.suppress(Exception):
            from sqlalchemy import create_engine, text

            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            admin.dispose()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ what the balancer did
    def replica_of(self, port_text: str) -> str:
        """The replica name behind an upstream address (`127.0.0.1:PORT`)."""
        for p in self.replicas:
            if port_text.endswith(f":{p.port}"):
                return p.name
        return port_text

    def routed(self) -> list[tuple[str, str, int, str]]:
        """(method, path, status, replica) of every request nginx has logged, in order (the last
        upstream tried, where nginx retried on another)."""
        out: list[tuple[str, str, int, str]] = []
        log = self.dir / "nginx" / "access.log"
        if not log.exists():
            return out
        for line in log.read_text().splitlines():
            _, method, uri, status, upstream = line.split(" ", 4)
            last = upstream.split(",")[-1].strip()
            out.append((method, uri, int(status), self.replica_of(last)))
        return out

    def logs(self) -> str:
        """The tails of every process's log, for a failing test's report."""
        parts = []
        for p in [self.nginx, *self.replicas, *self.workers]:
            if p is not None:
                parts.append(f"--- {p.name} ---\n{p.tail()}")
        err = self.dir / "nginx" / "error.log"
        if err.exists():
            parts.append("--- nginx error.log ---\n" + "\n".join(err.read_text().splitlines()[-20:]))
        return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run a cluster until Ctrl-C, printing how to use it."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="a setting for every process, e.g. hub_multipart_chunk_bytes=4096",
    )
    args = parser.parse_args(argv)
    extra: dict[str, Any] = dict(s.split("=", 1) for s in args.set)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (make killed, a timeout) stops the cluster as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    with Cluster(args.replicas, args.workers, settings=extra) as c:
        print(f"load balancer: {c.url} (nginx, round-robin over {len(c.replicas)} replicas)")
        for p in c.replicas:
            print(f"  {p.name}: http://127.0.0.1:{p.port}  log {p.log}")
        for p in c.workers:
            print(f"  {p.name}: metrics http://127.0.0.1:{p.port}/metrics  log {p.log}")
        print(f"database: {c.database_url}\nstore: s3://{c.bucket}/adapters at {c.s3_endpoint}")
        print(f"\nexport ADAPTERS_URL={c.url} ADAPTERS_TOKEN={c.token}\n\nCtrl-C stops it.", flush=True)
        try:
            while all(p.alive for p in [c.nginx, *c.replicas] if p is not None):
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping", flush=True)
        finally:  # a second signal must not cut the clean-up short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
