"""The compose files and images: valid against the Compose Specification's JSON schema (each file
and each documented combination), images pinned, the worker's torch pinned as the Makefile pins it,
only the API published, ADAPTERS_HOME on a volume, the example passwords refused outside a trial."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from registry.config import Settings
from registry.errors import ExampleCredentials
from registry.startup import refuse_example_credentials
from tests.deploy import compose
from tests.deploy.compose import ROOT

FILES = [
    "docker-compose.yml",
    "docker-compose.cpu.yml",
    "docker-compose.trial.yml",
    "docker-compose.replicas.yml",
]
DEPLOYMENTS = [
    ("docker-compose.yml",),
    ("docker-compose.yml", "docker-compose.cpu.yml"),
    ("docker-compose.yml", "docker-compose.trial.yml"),
    ("docker-compose.yml", "docker-compose.cpu.yml", "docker-compose.trial.yml"),
]
DOT_ENV = {"POSTGRES_PASSWORD": "0f3c9a" * 8, "MINIO_ROOT_PASSWORD": "9b1e7d" * 8}
"""What the README's `printf ... > .env` writes (two random hex passwords)."""
REPLICAS = [
    ("docker-compose.yml", "docker-compose.replicas.yml"),
    ("docker-compose.yml", "docker-compose.cpu.yml", "docker-compose.replicas.yml"),
]
"""The replica shape (docs/how-to/operate-cluster.md): its .env adds the shared secret key."""
REPLICAS_ENV = {**DOT_ENV, "ADAPTERS_SECRET_KEY": "5a2c8e" * 8}


def test_the_files_are_all_here() -> None:
    assert sorted(p.name for p in ROOT.glob("docker-compose*.yml")) == sorted(FILES)


@pytest.mark.parametrize("name", FILES)
def test_each_file_follows_the_compose_spec(name: str) -> None:
    jsonschema.validate(compose.plain(compose.load(name)), compose.schema())


@pytest.mark.parametrize("files", DEPLOYMENTS, ids="+".join)
def test_each_documented_deployment_follows_the_compose_spec(files: tuple[str, ...]) -> None:
    for env in ({}, DOT_ENV):
        jsonschema.validate(compose.project(*files, env=env), compose.schema())


@pytest.mark.parametrize("files", REPLICAS, ids="+".join)
def test_the_replica_shape_follows_the_compose_spec(files: tuple[str, ...]) -> None:
    jsonschema.validate(compose.project(*files, env=REPLICAS_ENV), compose.schema())
    with pytest.raises(KeyError, match="ADAPTERS_SECRET_KEY"):  # replicas need one shared key
        compose.project(*files, env=DOT_ENV)


@pytest.mark.parametrize("files", REPLICAS, ids="+".join)
def test_the_replica_shape_publishes_only_the_balancer(files: tuple[str, ...]) -> None:
    model = compose.project(*files, env=REPLICAS_ENV)
    services = model["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"lb": ["8000:8000"]}
    assert _tag_is_pinned(services["lb"]["image"])
    api = services["api"]
    assert api["deploy"]["replicas"] == 2 and "volumes" not in api  # no home shared between replicas
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["adapters", "db", "upgrade"]
    key = REPLICAS_ENV["ADAPTERS_SECRET_KEY"]
    assert compose.environment(api)["ADAPTERS_SECRET_KEY"] == key
    assert compose.environment(services["worker"])["ADAPTERS_SECRET_KEY"] == key
    conf = model["configs"]["nginx-conf"]["content"]
    assert "server api:8000" in conf and "proxy_pass http://registry;" in conf
    assert "ip_hash" not in conf and "hash " not in conf and "sticky" not in conf  # round-robin
    assert "$http_host" in conf and "$$" not in conf  # compose's $$ escape became nginx's $


def test_the_schema_finds_what_is_wrong() -> None:
    """The check is not vacuous: a misspelt key, a port given as a mapping, an unknown top-level key."""
    good = compose.project("docker-compose.yml")
    for bad in (
        {**good, "services": {**good["services"], "api": {**good["services"]["api"], "imagee": "x"}}},
        {**good, "services": {**good["services"], "api": {**good["services"]["api"], "ports": {"8000": 1}}}},
        {**good, "servicez": {}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, compose.schema())


def _tag_is_pinned(image: str) -> bool:
    """A tag that names one release: not latest, not a bare major ('15'), not absent."""
    _, _, tag = image.rpartition(":")
    if "/" in tag or not tag or "@sha256:" in image:
        return "@sha256:" in image
    return tag != "latest" and bool(re.search(r"\d+\.\d+|RELEASE\.\d{4}", tag))


def test_every_image_is_pinned() -> None:
    images = [s["image"] for s in compose.project("docker-compose.yml")["services"].values() if "image" in s]
    assert len(images) == 3
    for image in images:
        assert _tag_is_pinned(image), image
    for dockerfile in ("Dockerfile", "Dockerfile.worker"):
        froms = re.findall(r"^FROM\s+(\S+)", (ROOT / dockerfile).read_text(), re.MULTILINE)
        assert froms and all(_tag_is_pinned(f) for f in froms), (dockerfile, froms)
    assert not _tag_is_pinned("postgres:15") and not _tag_is_pinned("minio/mc:latest")


def test_the_worker_pins_torch_as_the_makefile_does() -> None:
    make = re.search(r"pip install -q torch==(\S+)", (ROOT / "Makefile").read_text())
    assert make is not None
    worker = (ROOT / "Dockerfile.worker").read_text()
    assert f"ARG TORCH_VERSION={make.group(1)}\n" in worker
    assert '"torch==${TORCH_VERSION}"' in worker
    assert "-c /tmp/torch.txt" in worker  # the tensor extras keep that torch
    cpu = compose.project("docker-compose.yml", "docker-compose.cpu.yml")["services"]["worker"]
    assert cpu["build"]["args"]["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert "deploy" not in cpu
    gpu = compose.project("docker-compose.yml")["services"]["worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


@pytest.mark.parametrize("files", DEPLOYMENTS, ids="+".join)
def test_only_the_api_is_published(files: tuple[str, ...]) -> None:
    services = compose.project(*files)["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert list(published) == ["api"]
    assert len(published["api"]) == 1 and str(published["api"][0]).endswith("8000:8000")
    assert "console" not in " ".join(map(str, services["minio"]["command"]))
    if "docker-compose.trial.yml" in files:
        assert published["api"] == ["127.0.0.1:8000:8000"]  # a trial is for this machine only


def test_registry_home_is_a_volume() -> None:
    model = compose.project("docker-compose.yml")
    api = model["services"]["api"]
    home = compose.environment(api)["ADAPTERS_HOME"]
    assert f"registry-home:{home}" in api["volumes"]
    assert "registry-home" in model["volumes"]
    assert f"ENV ADAPTERS_HOME={home}\n" in (ROOT / "Dockerfile").read_text()
    assert f"install -d -o registry -g registry -m 0700 {home}" in (ROOT / "Dockerfile").read_text()


def test_the_passwords_come_from_dot_env() -> None:
    model = compose.project("docker-compose.yml", env=DOT_ENV)
    services = model["services"]
    api, worker = compose.environment(services["api"]), compose.environment(services["worker"])
    pg = DOT_ENV["POSTGRES_PASSWORD"]
    assert compose.environment(services["postgres"])["POSTGRES_PASSWORD"] == pg
    assert api["ADAPTERS_DATABASE_URL"] == f"postgresql+psycopg://registry:{pg}@postgres:5432/registry"
    assert compose.environment(services["minio"])["MINIO_ROOT_PASSWORD"] == DOT_ENV["MINIO_ROOT_PASSWORD"]
    assert api["ADAPTERS_S3_SECRET_KEY"] == DOT_ENV["MINIO_ROOT_PASSWORD"]
    assert DOT_ENV["MINIO_ROOT_PASSWORD"] in compose.environment(services["create-bucket"])["MC_HOST_local"]
    assert {k: v for k, v in worker.items() if k != "ADAPTERS_HOME"} == {
        k: v for k, v in api.items() if k != "ADAPTERS_HOME"
    }


def _settings(files: tuple[str, ...], env: dict[str, str], service: str, tmp_path: Path) -> Settings:
    values = compose.environment(compose.project(*files, env=env)["services"][service])
    fields = {k.lower().removeprefix("adapters_"): v for k, v in values.items()}
    return Settings(**{**fields, "home": tmp_path})  # type: ignore[arg-type]


@pytest.mark.parametrize("service", ["api", "worker"])
def test_example_passwords_are_refused_unless_a_trial(service: str, tmp_path: Path) -> None:
    with pytest.raises(ExampleCredentials) as err:
        refuse_example_credentials(_settings(("docker-compose.yml",), {}, service, tmp_path))
    assert err.value.settings == ["ADAPTERS_DATABASE_URL", "ADAPTERS_S3_SECRET_KEY"]
    assert "docker-compose.trial.yml" in str(err.value) and ".env" in str(err.value)
    for files in DEPLOYMENTS:
        if "docker-compose.trial.yml" in files:  # a trial says it is one
            refuse_example_credentials(_settings(files, {}, service, tmp_path))
        refuse_example_credentials(_settings(files, DOT_ENV, service, tmp_path))  # real passwords
    for files in DEPLOYMENTS[:2]:
        assert "ADAPTERS_ALLOW_EXAMPLE_CREDENTIALS" not in compose.environment(
            compose.project(*files)["services"][service]
        )
