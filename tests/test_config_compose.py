"""Importing services from a docker-compose file, merging them with [services.X] tables, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from compat.config import describe, load_config, render_text
from compat.config.model import BuildSpec, Config, Dependency
from compat.errors import ConfigError

COMPOSE = """\
services:
  api:
    build: ./api
    image: shop/api:dev            # compose's tag for the build: the build is the source
    environment:
      - LOG_LEVEL=debug
      - FROM_HOST
      - NOT_SET_ON_HOST
      - QUERY=a=b
    ports:
      - "127.0.0.1:9000:8000"
      - "9001:8001"
    depends_on:
      - store
  store:
    image: "shop/store:${STORE_TAG:-1}"
    environment:
      DB_PATH: /data/db
      WORKERS: 4
      VERBOSE: true
      PASSTHRU: null
    expose:
      - "5000"
    depends_on:
      cache:
        condition: service_started
    healthcheck:
      test: ["CMD", "true", "${IGNORED_UNSET_VAR}"]
  cache:
    build:
      context: cache
      dockerfile: Dockerfile.cache
      args:
        - REDIS_VERSION=7
      target: runtime
    ports:
      - target: 6379
        published: 16379
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    for directory in ("api", "cache", "specs"):
        (root / directory).mkdir(parents=True)
    (root / "api" / "Dockerfile").write_text("FROM scratch\n")
    (root / "cache" / "Dockerfile.cache").write_text("FROM scratch\n")
    (root / "specs" / "api.yaml").write_text("openapi: 3.1.0\n")
    (root / "docker-compose.yml").write_text(COMPOSE)
    return root


def load(
    root: Path, toml: str = "", compose: str | None = None, environ: dict[str, str] | None = None
) -> Config:
    if compose is not None:
        (root / "docker-compose.yml").write_text(compose)
    path = root / "compat.toml"
    path.write_text('compose = "docker-compose.yml"\n' + toml)
    return load_config(path, environ={"FROM_HOST": "host-value"} if environ is None else environ)


def test_compose_services_without_tables_get_a_compose_baseline(project: Path) -> None:
    config = load(project, environ={"FROM_HOST": "host-value", "PASSTHRU": "p"})
    assert config.compose_file == project / "docker-compose.yml"
    assert list(config.services) == ["api", "store", "cache"]
    api, store, cache = config.services.values()
    assert all(svc.from_compose for svc in config.services.values())
    assert (api.baseline, api.candidate, list(api.versions)) == ("compose", None, ["compose"])
    assert api.versions["compose"].build == BuildSpec(context=project / "api")
    assert api.versions["compose"].image is None
    assert api.port == 8000  # the container side of the first `ports` entry
    assert api.env == {"LOG_LEVEL": "debug", "FROM_HOST": "host-value", "QUERY": "a=b"}
    assert api.depends_on == (Dependency("store"),)
    assert store.versions["compose"].image == "shop/store:1"
    assert store.port == 5000  # from `expose`
    assert store.env == {"DB_PATH": "/data/db", "WORKERS": "4", "VERBOSE": "true", "PASSTHRU": "p"}
    assert store.depends_on == (Dependency("cache"),)
    assert cache.versions["compose"].build == BuildSpec(
        context=project / "cache",
        dockerfile="Dockerfile.cache",
        args={"REDIS_VERSION": "7"},
        target="runtime",
    )
    assert cache.port == 6379  # long form: target
    assert config.dependency_order() == ["cache", "store", "api"]


@pytest.mark.parametrize(
    ("entry", "port"),
    [
        ('"8080"', 8080),
        ("8080", 8080),
        ('"8080:80"', 80),
        ('"127.0.0.1:8080:80"', 80),
        ('"[::1]:8080:80"', 80),
        ('"80/tcp"', 80),
        ('"9000:8000/udp"', 8000),
        ('"3000-3005:3000-3005"', 3000),
        ("{target: 80, published: 8080, protocol: tcp}", 80),
    ],
)
def test_port_forms(project: Path, entry: str, port: int) -> None:
    config = load(project, compose=f"services:\n  web:\n    image: web\n    ports:\n      - {entry}\n")
    assert config.services["web"].port == port


def test_tables_add_to_compose_services_and_their_keys_win(project: Path) -> None:
    config = load(
        project,
        """
[services.api]
port = 8080
health = "/ready"
baseline = "v1"
candidate = "v2"
env = { LOG_LEVEL = "info" }
depends_on = { store = "STORE_URL" }

[services.api.versions.v1]
spec = "specs/api.yaml"
command = ["python3", "app.py", "--port", "{port}"]

[services.api.versions.v2]
build = { args = { APP_VERSION = "2" }, target = "slim" }
env = { FEATURE = "on" }

[services.api.versions.v3]
image = "shop/api:3"

[services.cache.versions.compose]
spec = "specs/api.yaml"

[services.cache.versions.next]
build = { context = "api" }

[services.extra]
port = 7000
[services.extra.versions.v1]
image = "extra:1"
""",
        environ={"STORE_TAG": "5"},
    )
    assert list(config.services) == ["api", "cache", "extra", "store"]
    api = config.services["api"]
    assert (api.port, api.health, api.baseline, api.candidate) == (8080, "/ready", "v1", "v2")
    assert api.env == {"LOG_LEVEL": "info", "QUERY": "a=b"}
    assert api.depends_on == (Dependency("store", "STORE_URL"),)
    v1, v2, v3 = api.versions.values()
    assert v1.build == BuildSpec(context=project / "api")  # inherited
    assert v1.command == ("python3", "app.py", "--port", "{port}")
    assert v1.spec == project / "specs" / "api.yaml"
    assert v2.build == BuildSpec(context=project / "api", args={"APP_VERSION": "2"}, target="slim")
    assert v2.env == {"FEATURE": "on"}
    assert (v3.image, v3.build) == ("shop/api:3", None)  # its own image: no compose build
    cache = config.services["cache"]
    assert list(cache.versions) == ["compose", "next"]
    assert cache.baseline == "compose"  # the compose definition is production unless the table says otherwise
    assert cache.versions["compose"].spec == project / "specs" / "api.yaml"
    assert cache.versions["next"].build == BuildSpec(
        context=project / "api", args={"REDIS_VERSION": "7"}
    )  # a build of its own, compose args merged under
    assert config.services["store"].versions["compose"].image == "shop/store:5"
    extra = config.services["extra"]
    assert (extra.from_compose, extra.port) == (False, 7000)


def test_describe_and_render_mark_compose_services(project: Path) -> None:
    config = load(project)
    assert describe(config)["compose"] == "docker-compose.yml"
    assert describe(config)["services"]["cache"]["from_compose"] is True  # type: ignore[index]
    text = render_text(config)
    assert "compose  docker-compose.yml" in text
    assert "from compose" in text
    assert "build cache (Dockerfile.cache, target runtime, args REDIS_VERSION=7)" in text


def test_yaml_is_only_imported_for_compose(project: Path) -> None:
    load(project)  # works with PyYAML; the no-compose path is covered in test_config (no yaml import)


# -- errors in the compose file -------------------------------------------------------------------------

SVC = "services:\n  api:\n    image: api\n"

COMPOSE_ERRORS = [
    # (id, compose text, key, bad value, hint fragment)
    ("bad-port", SVC + "    ports: [http]\n", "services.api.ports[0]", "http", '"127.0.0.1:8080:80"'),
    ("base-60-port", SVC + "    ports:\n      - 8080:30\n", "services.api.ports[0]", 484830, "quote it"),
    ("port-out-of-range", SVC + '    ports: ["70000"]\n', "services.api.ports[0]", "70000", '"8080:80"'),
    (
        "long-port-without-target",
        SVC + "    ports:\n      - published: 80\n",
        "services.api.ports[0]",
        {"published": 80},
        "target: 80",
    ),
    ("ports-not-a-list", SVC + '    ports: "80"\n', "services.api.ports", "80", '"80/tcp"'),
    (
        "depends-on-unknown",
        SVC + "    depends_on: [db]\n",
        "services.api.depends_on[0]",
        "db",
        "compose services: api",
    ),
    (
        "depends-on-self",
        SVC + "    depends_on:\n      api: {condition: service_started}\n",
        "services.api.depends_on.api",
        "api",
        "remove this entry",
    ),
    (
        "cycle",
        (
            "services:\n  a:\n    image: a\n    expose: [1]\n    depends_on: [b]\n"
            "  b:\n    image: b\n    expose: [1]\n    depends_on: [a]\n"
        ),
        "services.a.depends_on",
        "b",
        "remove one",
    ),
    (
        "bad-service-name",
        "services:\n  My_Api:\n    image: api\n",
        "services.My_Api",
        "My_Api",
        "rename it in the compose file",
    ),
    (
        "build-context-missing",
        "services:\n  api:\n    build: ./nope\n",
        "services.api.build",
        "./nope",
        "looked for",
    ),
    (
        "dockerfile-missing",
        "services:\n  api:\n    build: {context: api, dockerfile: Other}\n",
        "services.api.build.dockerfile",
        "Other",
        "relative to the build context",
    ),
    (
        "unset-variable",
        "services:\n  api:\n    image: api:${API_TAG}\n",
        "services.api.image",
        "api:${API_TAG}",
        "${API_TAG:-value}",
    ),
    ("environment-item", SVC + "    environment: [1]\n", "services.api.environment[0]", 1, "NAME=value"),
    (
        "environment-not-list-or-map",
        SVC + "    environment: DEBUG\n",
        "services.api.environment",
        "DEBUG",
        "a list",
    ),
    ("service-not-a-mapping", "services:\n  api: [image]\n", "services.api", ["image"], None),
    ("services-empty", "services: {}\n", "services", {}, "define at least one service"),
]


@pytest.mark.parametrize(
    ("compose", "key", "value", "hint"), [c[1:] for c in COMPOSE_ERRORS], ids=[c[0] for c in COMPOSE_ERRORS]
)
def test_compose_errors_name_the_compose_file_and_key(
    project: Path, compose: str, key: str, value: object, hint: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        load(project, compose=compose)
    message = str(info.value)
    assert info.value.file == str(project / "docker-compose.yml")
    assert message.startswith(f"{project / 'docker-compose.yml'}: {key}: "), message
    assert f"(got {value!r})" in message, message
    if hint:
        assert hint in message, message


def test_invalid_yaml_names_the_line(project: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"docker-compose\.yml: invalid YAML at line 4, column 4: expected ',' or ']'"
    ):
        load(project, compose="services:\n  api:\n    image: [a\n  b: c\n")


def test_compose_without_services(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"docker-compose\.yml: services: no `services:` mapping"):
        load(project, compose="version: '3.8'\nvolumes: {}\n")


# -- errors in the config about compose services --------------------------------------------------------


def test_compose_service_without_port_needs_one_in_the_table(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(project, compose=SVC)
    message = str(info.value)
    assert message.startswith(f"{project / 'compat.toml'}: services.api.port: no port")
    assert "set port = N" in message
    assert load(project, "[services.api]\nport = 80\n", compose=SVC).services["api"].port == 80


def test_version_build_without_context_needs_a_compose_build(project: Path) -> None:
    toml = '[services.api]\nport = 80\n[services.api.versions.v1]\nbuild = { args = { A = "1" } }\n'
    with pytest.raises(ConfigError) as info:
        load(project, toml, compose=SVC)
    assert str(info.value).startswith(f"{project / 'compat.toml'}: services.api.versions.v1.build.context: ")
    assert 'context = "services/orders"' in str(info.value)


def test_candidate_of_a_compose_service_needs_a_baseline_version(project: Path) -> None:
    toml = '[services.api]\nport = 80\ncandidate = "v2"\n[services.api.versions.v2]\nimage = "api:2"\n'
    with pytest.raises(ConfigError) as info:
        load(project, toml, compose=SVC)
    assert "services.api.candidate: the candidate is the baseline (got 'v2')" in str(info.value)
    assert "add [services.api.versions.compose] (the compose definition) as the baseline" in str(info.value)
    fixed = load(project, toml + "[services.api.versions.compose]\n", compose=SVC).services["api"]
    assert (fixed.baseline, fixed.candidate, fixed.versions["compose"].image) == ("compose", "v2", "api")


def test_table_only_service_must_be_complete(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"services\.extra\.versions: no versions"):
        load(project, "[services.extra]\nport = 7000\n")


def test_cycle_across_compose_and_table(project: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"services\.cache\.depends_on: dependency cycle cache -> api -> store -> cache"
    ):
        load(project, '[services.cache]\ndepends_on = { api = "API_URL" }\n')
