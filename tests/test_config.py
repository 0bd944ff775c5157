"""The configuration layer: discovery, loading, validation (every error names file, key, value and fix),
interpolation, overrides and the describe/render views. Plain unit tests; configs are written to tmp_path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from compat.config import (
    apply_overrides,
    describe,
    find_config,
    load_config,
    parse_candidate_option,
    render_text,
)
from compat.config.checks import CHECK_OPTIONS
from compat.config.model import CHECK_NAMES, Config, Dependency, ProviderStates
from compat.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parent.parent

ORDERS = 'port = 8080\nbaseline = "v1"\ncandidate = "v2"\n'
WEB = '[services.web]\nport = 8000\n[services.web.versions.v1]\nimage = "shop/web:1"\n'


def toml(
    top: str = "",
    orders: str = ORDERS,
    v1: str = 'build = "orders"',
    v2: str = 'image = "shop/orders:2"',
    extra: str = "",
) -> str:
    """A config with one service `orders` (v1 built from ./orders, v2 an image); parts replaceable."""
    return (
        f"{top}\n[services.orders]\n{orders}\n[services.orders.versions.v1]\n{v1}\n"
        f"[services.orders.versions.v2]\n{v2}\n{extra}"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with what configs refer to: a build context, a spec, a Pact file, a tests dir."""
    root = tmp_path / "shop"
    (root / "orders").mkdir(parents=True)
    (root / "orders" / "Dockerfile").write_text("FROM scratch\n")
    (root / "specs").mkdir()
    (root / "specs" / "orders.yaml").write_text("openapi: 3.1.0\n")
    (root / "contracts").mkdir()
    (root / "contracts" / "web-orders.json").write_text("{}")
    (root / "tests" / "compat").mkdir(parents=True)
    return root


def write(root: Path, text: str, name: str = "compat.toml") -> Path:
    path = root / name
    path.write_text(text)
    return path


def load(root: Path, text: str, environ: Mapping[str, str] | None = None) -> Config:
    return load_config(write(root, text), environ={} if environ is None else environ)


# -- happy paths ----------------------------------------------------------------------------------------


def test_minimal_config_gets_the_documented_defaults(project: Path) -> None:
    config = load(project, '[services.orders]\nport = 8080\n[services.orders.versions.v1]\nimage = "o:1"\n')
    assert config.path == project / "compat.toml"
    assert config.root == project
    assert config.project == "shop"
    assert (config.runtime, config.seed, config.startup_timeout) == ("auto", 0, 60.0)
    assert (config.contracts, config.tests, config.redact_headers, config.compose_file) == ((), (), (), None)
    assert (config.state, config.stages) == ({}, {})
    orders = config.services["orders"]
    assert orders.baseline == "v1"  # the only version
    assert orders.candidate is None
    assert (orders.health, orders.replicas, orders.health_timeout) == ("/health", 2, 60.0)
    assert orders.versions["v1"].image == "o:1"
    assert orders.versions["v1"].label == "orders@v1"


def test_full_config_is_typed_and_paths_are_absolute(project: Path) -> None:
    config = load(
        project,
        toml(
            top='project = "shop-2"\nruntime = "process"\nseed = 7\nstartup_timeout = 12.5\n'
            'contracts = ["contracts/*.json"]\ntests = ["tests/compat"]\nredact_headers = ["X-Api-Key"]\n',
            orders=ORDERS + 'health = "/ready"\nhealth_timeout = 5\nreplicas = 3\nstate = "db"\n'
            'env = { LOG_LEVEL = "info", WORKERS = 4, DEBUG = false }\n'
            'provider_states = { callable = "mypkg.states:setup" }\ncontracts = ["contracts/web-*.json"]\n',
            v1='build = { context = "orders", dockerfile = "Dockerfile", args = { APP_VERSION = 1 }, '
            'target = "app" }\n'
            'command = ["python3", "orders/app.py", "--port", "{port}", "--db", "{state_dir}/o.db"]\n'
            'cwd = "."\nspec = "specs/orders.yaml"\nenv = { FLAG = true }',
            extra='[state.db]\nkind = "volume"\nmount = "/var/lib/data"\n',
        ),
    )
    assert (config.project, config.runtime, config.seed, config.startup_timeout) == (
        "shop-2",
        "process",
        7,
        12.5,
    )
    assert config.contracts == (project / "contracts" / "web-orders.json",)
    assert config.tests == (project / "tests" / "compat",)
    assert config.redact_headers == ("X-Api-Key",)
    orders = config.services["orders"]
    assert (orders.health, orders.health_timeout, orders.replicas, orders.state) == ("/ready", 5.0, 3, "db")
    assert orders.env == {"LOG_LEVEL": "info", "WORKERS": "4", "DEBUG": "false"}
    assert orders.provider_states == ProviderStates(callable="mypkg.states:setup")
    assert orders.contracts == (project / "contracts" / "web-orders.json",)
    v1 = orders.versions["v1"]
    assert v1.build is not None
    assert v1.build.context == project / "orders"
    assert v1.build.context.is_absolute()
    assert (v1.build.dockerfile, v1.build.args, v1.build.target) == (
        "Dockerfile",
        {"APP_VERSION": "1"},
        "app",
    )
    assert v1.command == ("python3", "orders/app.py", "--port", "{port}", "--db", "{state_dir}/o.db")
    assert (v1.cwd, v1.spec, v1.env) == (project, project / "specs" / "orders.yaml", {"FLAG": "true"})
    assert orders.baseline_version is v1
    assert orders.candidate_version is orders.versions["v2"]
    assert config.state["db"].mount == "/var/lib/data"


def test_depends_on_forms_and_dependency_order(project: Path) -> None:
    text = (
        '[services.web]\nport = 8000\ndepends_on = { orders = "ORDERS_URL", stock = { env = "STOCK_URL" } }\n'
        '[services.web.versions.v1]\nimage = "w:1"\n'
        '[services.orders]\nport = 8080\ndepends_on = ["stock"]\n'
        '[services.orders.versions.v1]\nimage = "o:1"\n'
        '[services.stock]\nport = 9000\n[services.stock.versions.v1]\nimage = "s:1"\n'
    )
    config = load(project, text)
    assert config.services["web"].depends_on == (
        Dependency("orders", "ORDERS_URL"),
        Dependency("stock", "STOCK_URL"),
    )
    assert config.services["orders"].depends_on == (Dependency("stock", None),)
    assert config.dependency_order() == ["stock", "orders", "web"]


def test_state_service_and_stages(project: Path) -> None:
    config = load(
        project,
        toml(
            orders=ORDERS + 'state = "shared"\ndepends_on = ["web"]\n',
            extra=WEB + '[services.db]\nport = 5432\n[services.db.versions.v1]\nimage = "postgres:16"\n'
            '[state.shared]\nkind = "service"\nservice = "db"\n'
            '[stages.onebox]\nservices = ["orders"]\nreplicas = 3\nseed = 4\n'
            '[stages.canary-10]\nkind = "onebox"\npolicy = "weighted"\nweight = 0.1\nenabled = false\n'
            '[stages.skew]\nchain = ["orders", "web"]\npolicy = "sticky"\n',
        ),
    )
    assert config.state["shared"].kind == "service"
    assert config.state["shared"].service == "db"
    onebox, canary, skew = config.stages.values()
    assert (onebox.kind, onebox.services, onebox.replicas, onebox.seed, onebox.enabled) == (
        "onebox",
        ("orders",),
        3,
        4,
        True,
    )
    assert (canary.name, canary.kind, canary.policy, canary.weight, canary.enabled) == (
        "canary-10",
        "onebox",
        "weighted",
        0.1,
        False,
    )
    assert (skew.kind, skew.chain, skew.policy, skew.services) == ("skew", ("orders", "web"), "sticky", ())


def test_the_example_in_the_configuration_doc_loads(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert example is not None
    for directory in ("services/orders", "services/web", "specs", "contracts", "tests/compat"):
        (tmp_path / directory).mkdir(parents=True)
    for name in ("services/orders/Dockerfile", "services/web/Dockerfile"):
        (tmp_path / name).write_text("FROM scratch\n")
    for name in ("services/orders/openapi-v1.yaml", "specs/orders-v2.yaml"):
        (tmp_path / name).write_text("openapi: 3.1.0\n")
    (tmp_path / "contracts" / "web-orders.json").write_text("{}")
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  orders:\n    image: shop/orders:1\n    ports: ['8080']\n"
    )
    config = load(tmp_path, example.group(1))
    assert config.project == "shop"
    assert config.services["orders"].provider_states == ProviderStates(url="/_compat/provider-states")
    assert config.services["web"].depends_on == (Dependency("orders", "ORDERS_URL"),)
    assert config.stages["onebox"].services == ("orders",)
    assert config.dependency_order() == ["orders", "web"]


# -- discovery ------------------------------------------------------------------------------------------


def test_pyproject_tool_compat_table_is_used(project: Path) -> None:
    write(
        project,
        '[project]\nname = "shop"\n[tool.compat]\nseed = 3\n'
        + toml().replace("[services.", "[tool.compat.services."),
        "pyproject.toml",
    )
    path = find_config(project)
    assert path == project / "pyproject.toml"
    config = load_config(path, environ={})
    assert config.seed == 3
    assert set(config.services) == {"orders"}


def test_compat_toml_wins_over_pyproject(project: Path) -> None:
    write(project, "[tool.compat]\nseed = 3\n", "pyproject.toml")
    write(project, toml())
    assert find_config(project) == project / "compat.toml"


def test_explicit_path_wins_and_may_be_any_name(project: Path) -> None:
    write(project, toml())
    other = write(project, toml(top="seed = 9"), "ci.toml")
    assert find_config(project, other) == other
    assert load_config(find_config(project, other), environ={}).seed == 9


def test_pyproject_without_tool_compat_is_not_a_config(project: Path) -> None:
    write(project, '[project]\nname = "shop"\n', "pyproject.toml")
    with pytest.raises(ConfigError) as info:
        find_config(project)
    message = str(info.value)
    assert str(project / "compat.toml") in message
    assert "[tool.compat]" in message
    assert "--compat-config" in message


def test_nothing_found_says_where_it_looked(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"looked for .*compat\.toml.*pyproject\.toml.*create compat\.toml"):
        find_config(project)


def test_explicit_pyproject_without_table_is_an_error(project: Path) -> None:
    path = write(project, '[project]\nname = "shop"\n', "pyproject.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "pyproject.toml" in str(info.value)
    assert "tool.compat: no [tool.compat] table" in str(info.value)


def test_explicit_directory_is_an_error(project: Path) -> None:
    write(project, toml())
    with pytest.raises(ConfigError, match=r"is a directory.*give the file itself, e\.g\. .*compat\.toml"):
        find_config(project, project)


def test_explicit_missing_file_is_an_error(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        find_config(project, project / "nope.toml")


# -- interpolation --------------------------------------------------------------------------------------


def test_interpolation_forms(project: Path) -> None:
    environ = {"TAG": "2.1", "EMPTY": "", "REG": "registry.local"}
    config = load(
        project,
        toml(
            v2='image = "${REG}/orders:${TAG}"\nenv = { A = "${MISSING:-fallback}", B = "${EMPTY:-dflt}", '
            'C = "$$HOME and $5", D = "${EMPTY}" }',
        ),
        environ,
    )
    v2 = config.services["orders"].versions["v2"]
    assert v2.image == "registry.local/orders:2.1"
    assert v2.env == {"A": "fallback", "B": "dflt", "C": "$HOME and $5", "D": ""}


def test_interpolation_reads_os_environ_by_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPAT_TEST_TAG", "9.9")
    config = load_config(write(project, toml(v2='image = "o:${COMPAT_TEST_TAG}"')))
    assert config.services["orders"].versions["v2"].image == "o:9.9"


# -- bad configs ----------------------------------------------------------------------------------------

BAD = [
    # (id, config text, key path, bad value, hint fragment)
    ("unknown-top-level-key", toml(top='projekt = "shop"'), "projekt", "projekt", "did you mean 'project'?"),
    (
        "unknown-service-key",
        toml(orders=ORDERS + 'helth = "/h"'),
        "services.orders.helth",
        "helth",
        "did you mean 'health'?",
    ),
    (
        "version-key-on-service",
        toml(orders=ORDERS + 'spec = "x.yaml"'),
        "services.orders.spec",
        "spec",
        "belongs to a version",
    ),
    ("port-as-string", toml(orders='port = "80"'), "services.orders.port", "80", "integer from 1 to 65535"),
    (
        "bool-as-int",
        toml(orders=ORDERS + "replicas = true"),
        "services.orders.replicas",
        True,
        "integer from 1 to 16",
    ),
    ("port-out-of-range", toml(orders="port = 70000"), "services.orders.port", 70000, "from 1 to 65535"),
    (
        "replicas-out-of-range",
        toml(orders=ORDERS + "replicas = 17"),
        "services.orders.replicas",
        17,
        "from 1 to 16",
    ),
    (
        "bad-service-name",
        '[services.Orders]\nport = 1\n[services.Orders.versions.v1]\nimage = "o"\n',
        "services.Orders",
        "Orders",
        "[a-z][a-z0-9-]*",
    ),
    (
        "bad-version-name",
        '[services.orders]\nport = 1\n[services.orders.versions."v 1"]\nimage = "o"\n',
        'services.orders.versions."v 1"',
        "v 1",
        "[A-Za-z0-9][A-Za-z0-9_.-]*",
    ),
    (
        "no-versions",
        "[services.orders]\nport = 1\n[services.orders.versions]\n",
        "services.orders.versions",
        {},
        "add [services.orders.versions.v1]",
    ),
    ("no-services", 'project = "shop"\n[services]\n', "services", {}, "add a [services.NAME] table"),
    (
        "baseline-not-a-version",
        toml(orders='port = 1\nbaseline = "v3"'),
        "services.orders.baseline",
        "v3",
        "choose one of: v1, v2",
    ),
    (
        "candidate-is-baseline",
        toml(orders='port = 1\nbaseline = "v1"\ncandidate = "v1"'),
        "services.orders.candidate",
        "v1",
        "choose another version: v2",
    ),
    (
        "image-and-build",
        toml(v1='build = "orders"\nimage = "o:1"'),
        "services.orders.versions.v1",
        {"image": "o:1", "build": "orders"},
        "keep one",
    ),
    (
        "missing-build-context",
        toml(v1='build = { context = "nope" }'),
        "services.orders.versions.v1.build.context",
        "nope",
        "looked for",
    ),
    (
        "missing-dockerfile",
        toml(v1='build = { context = "orders", dockerfile = "Dockerfile.prod" }'),
        "services.orders.versions.v1.build.dockerfile",
        "Dockerfile.prod",
        "relative to the build context",
    ),
    (
        "unknown-build-key",
        toml(v1='build = { context = "orders", arg = {} }'),
        "services.orders.versions.v1.build.arg",
        "arg",
        "did you mean 'args'?",
    ),
    (
        "missing-spec",
        toml(v2='image = "o:2"\nspec = "specs/nope.yaml"'),
        "services.orders.versions.v2.spec",
        "specs/nope.yaml",
        "looked for",
    ),
    (
        "spec-not-openapi-file",
        toml(v2='image = "o:2"\nspec = "orders/Dockerfile"'),
        "services.orders.versions.v2.spec",
        "orders/Dockerfile",
        ".yaml, .yml, .json",
    ),
    (
        "command-not-a-list",
        toml(v1='command = "python3 app.py --port {port}"'),
        "services.orders.versions.v1.command",
        "python3 app.py --port {port}",
        'command = ["python3", "app.py", "--port", "{port}"]',
    ),
    (
        "command-item-not-a-string",
        toml(v1='command = ["app", 8080]'),
        "services.orders.versions.v1.command[1]",
        8080,
        "write it in quotes",
    ),
    (
        "unknown-placeholder",
        toml(v1='command = ["app", "--port", "{prot}"]'),
        "services.orders.versions.v1.command[2]",
        "{prot}",
        "did you mean {port}?",
    ),
    (
        "unbalanced-brace",
        toml(v1='command = ["app", "--json", "{a"]'),
        "services.orders.versions.v1.command[2]",
        "{a",
        "{{ and }}",
    ),
    (
        "depends-on-unknown-service",
        toml(orders=ORDERS + 'depends_on = ["payments"]', extra=WEB),
        "services.orders.depends_on[0]",
        "payments",
        "choose one of: orders, web",
    ),
    (
        "dependency-cycle",
        toml(
            orders=ORDERS + 'depends_on = ["web"]',
            extra=WEB.replace("port = 8000", 'port = 8000\ndepends_on = { orders = "ORDERS_URL" }'),
        ),
        "services.orders.depends_on",
        "web",
        "remove one of these depends_on entries",
    ),
    (
        "self-dependency",
        toml(orders=ORDERS + 'depends_on = ["orders"]'),
        "services.orders.depends_on[0]",
        "orders",
        "remove this entry",
    ),
    (
        "depends-on-bad-env-name",
        toml(orders=ORDERS + 'depends_on = { web = "web-url" }', extra=WEB),
        "services.orders.depends_on.web",
        "web-url",
        "[A-Za-z_][A-Za-z0-9_]*",
    ),
    (
        "unknown-state",
        toml(orders=ORDERS + 'state = "db"', extra='[state.orders-db]\nkind = "volume"\n'),
        "services.orders.state",
        "db",
        "choose one of: orders-db",
    ),
    (
        "state-kind-invalid",
        toml(extra='[state.orders-db]\nkind = "database"\n'),
        "state.orders-db.kind",
        "database",
        "choose one of: volume, service",
    ),
    (
        "state-mount-relative",
        toml(extra='[state.orders-db]\nkind = "volume"\nmount = "data"\n'),
        "state.orders-db.mount",
        "data",
        "absolute path",
    ),
    (
        "state-service-unknown",
        toml(extra='[state.db]\nkind = "service"\nservice = "postgres"\n'),
        "state.db.service",
        "postgres",
        "choose one of: orders",
    ),
    (
        "provider-states-both",
        toml(orders=ORDERS + 'provider_states = { url = "/ps", callable = "m:f" }'),
        "services.orders.provider_states",
        {"url": "/ps", "callable": "m:f"},
        '{ callable = "module:function" }',
    ),
    (
        "bad-callable-shape",
        toml(orders=ORDERS + 'provider_states = { callable = "mypkg.states.setup" }'),
        "services.orders.provider_states.callable",
        "mypkg.states.setup",
        "'module:function'",
    ),
    (
        "health-not-a-path",
        toml(orders=ORDERS + 'health = "health"'),
        "services.orders.health",
        "health",
        "starting with /",
    ),
    (
        "env-float",
        toml(orders=ORDERS + "env = { RATIO = 1.5 }"),
        "services.orders.env.RATIO",
        1.5,
        "in quotes",
    ),
    ("unset-env-var", toml(top='project = "${NOPE_VAR}"'), "project", "${NOPE_VAR}", "${NOPE_VAR:-value}"),
    (
        "unterminated-interpolation",
        toml(v2='image = "o:${TAG"'),
        "services.orders.versions.v2.image",
        "o:${TAG",
        "${VAR:-default}",
    ),
    (
        "contracts-glob-matches-nothing",
        toml(top='contracts = ["pacts/*.json"]'),
        "contracts[0]",
        "pacts/*.json",
        "looked for",
    ),
    ("tests-path-missing", toml(top='tests = ["tests/nope"]'), "tests[0]", "tests/nope", "looked for"),
    (
        "compose-file-missing",
        toml(top='compose = "docker-compose.yml"'),
        "compose",
        "docker-compose.yml",
        "looked for",
    ),
    (
        "bad-runtime",
        toml(top='runtime = "podman"'),
        "runtime",
        "podman",
        "choose one of: auto, docker, process",
    ),
    ("negative-seed", toml(top="seed = -1"), "seed", -1, "integer >= 0"),
    ("zero-startup-timeout", toml(top="startup_timeout = 0"), "startup_timeout", 0, "number > 0"),
    ("bad-project-name", toml(top='project = "My Shop"'), "project", "My Shop", "[a-z0-9][a-z0-9_.-]*"),
    (
        "bad-redact-header",
        toml(top='redact_headers = ["X Api Key"]'),
        "redact_headers[0]",
        "X Api Key",
        "HTTP header name",
    ),
    (
        "unknown-stage-kind",
        toml(extra="[stages.canary]\n"),
        "stages.canary",
        "canary",
        "choose one of: onebox",
    ),
    (
        "misspelt-stage-kind",
        toml(extra='[stages.canary]\nkind = "onebx"\n'),
        "stages.canary.kind",
        "onebx",
        "did you mean 'onebox'?",
    ),
    (
        "reserved-stage-name",
        toml(extra='[stages.default]\nkind = "onebox"\n'),
        "stages.default",
        "default",
        "rename this stage",
    ),
    (
        "unknown-stage-option",
        toml(extra="[stages.onebox]\nreplica = 2\n"),
        "stages.onebox.replica",
        "replica",
        "did you mean 'replicas'?",
    ),
    (
        "bad-policy",
        toml(extra='[stages.onebox]\npolicy = "random"\n'),
        "stages.onebox.policy",
        "random",
        "choose one of: round-robin, weighted, sticky, yoyo, pinned",
    ),
    (
        "weight-out-of-range",
        toml(extra='[stages.onebox]\npolicy = "weighted"\nweight = 1.5\n'),
        "stages.onebox.weight",
        1.5,
        "> 0 and < 1",
    ),
    (
        "weight-without-weighted-policy",
        toml(extra="[stages.onebox]\nweight = 0.2\n"),
        "stages.onebox.weight",
        0.2,
        'set policy = "weighted"',
    ),
    (
        "stage-replicas-zero",
        toml(extra="[stages.zeta]\nreplicas = 0\n"),
        "stages.zeta.replicas",
        0,
        "from 1 to 16",
    ),
    (
        "skew-chain-too-short",
        toml(extra='[stages.skew]\nchain = ["orders"]\n'),
        "stages.skew.chain",
        ["orders"],
        'chain = ["web", "orders"]',
    ),
    (
        "chain-on-non-skew-stage",
        toml(extra=WEB + '[stages.onebox]\nchain = ["web", "orders"]\n'),
        "stages.onebox.chain",
        ["web", "orders"],
        'set kind = "skew"',
    ),
    (
        "chain-not-a-call-chain",
        toml(extra=WEB + '[stages.skew]\nchain = ["web", "orders"]\n'),
        "stages.skew.chain[1]",
        "orders",
        "add 'orders' to services.web.depends_on",
    ),
    (
        "stage-service-without-candidate",
        toml(extra=WEB + '[stages.onebox]\nservices = ["web"]\n'),
        "stages.onebox.services[0]",
        "web",
        "set candidate in [services.web]",
    ),
    (
        "stage-enabled-not-bool",
        toml(extra='[stages.onebox]\nenabled = "no"\n'),
        "stages.onebox.enabled",
        "no",
        "true or false",
    ),
    (
        "checks-unknown-check",
        toml(extra="[checks.canery]\nenabled = false\n"),
        "checks.canery",
        "canery",
        "did you mean 'canary'?",
    ),
    (
        "checks-enabled-unknown",
        toml(extra='[checks]\nenabled = ["yoyo", "diffy"]\n'),
        "checks.enabled[1]",
        "diffy",
        "differential",
    ),
    (
        "checks-option-unknown",
        toml(extra="[checks.canary]\nmin_request = 5\n"),
        "checks.canary.min_request",
        "min_request",
        "did you mean 'min_requests'?",
    ),
    (
        "checks-option-type",
        toml(extra='[checks.yoyo]\npage_size = "2"\n'),
        "checks.yoyo.page_size",
        "2",
        "write an integer",
    ),
    (
        "checks-option-range",
        toml(extra="[checks.canary]\nmax_error_rate_increase = 1.5\n"),
        "checks.canary.max_error_rate_increase",
        1.5,
        "give a number",
    ),
    (
        "checks-dry-run-not-bool",
        toml(extra='[checks.data]\ndry_run = "yes"\n'),
        "checks.data.dry_run",
        "yes",
        "true or false",
    ),
    (
        "checks-contradiction",
        toml(extra='[checks]\nenabled = ["yoyo"]\n[checks.data]\nenabled = true\n'),
        "checks.data.enabled",
        True,
        "say it in one place",
    ),
    (
        "checks-noise-bad-path",
        toml(extra='[checks.noise]\nignore = ["items.id"]\n'),
        "checks.noise.ignore[0]",
        "items.id",
        "must start with $",
    ),
    (
        "checks-noise-bad-bracket",
        toml(extra='[checks.noise]\nunordered = ["$.items[x]"]\n'),
        "checks.noise.unordered[0]",
        "$.items[x]",
        "use [3], [*] or ['name']",
    ),
    (
        "checks-noise-bad-header",
        toml(extra='[checks.noise]\nignore_headers = ["Da te"]\n'),
        "checks.noise.ignore_headers[0]",
        "Da te",
        "HTTP header name",
    ),
    (
        "stage-faults-on-zeta",
        toml(extra="[stages.zeta]\nfaults = { candidate = { error_rate = 0.2 } }\n"),
        "stages.zeta.faults",
        {"candidate": {"error_rate": 0.2}},
        "onebox or rollback",
    ),
    (
        "stage-faults-unknown-target",
        toml(extra="[stages.onebox]\nfaults = { candidat = { error_rate = 0.2 } }\n"),
        "stages.onebox.faults.candidat",
        "candidat",
        "candidate",
    ),
    (
        "stage-faults-rate-range",
        toml(extra="[stages.onebox]\nfaults = { candidate = { error_rate = 2 } }\n"),
        "stages.onebox.faults.candidate.error_rate",
        2,
        "give a number",
    ),
    (
        "stage-faults-unknown-key",
        toml(extra="[stages.onebox]\nfaults = { v2 = { error_rat = 0.2 } }\n"),
        "stages.onebox.faults.v2.error_rat",
        "error_rat",
        "did you mean 'error_rate'?",
    ),
    ("waivers-missing-file", toml(top='waivers = "nope.toml"'), "waivers", "nope.toml", ""),
]


def test_checks_table_defaults_and_options(project: Path) -> None:
    config = load(project, toml())
    assert config.checks.enabled() == CHECK_NAMES
    assert config.checks.option("canary", "min_requests") == 50
    config = load(
        project,
        toml(
            extra='[checks]\nenabled = ["spec-diff", "canary"]\n'
            "[checks.canary]\nmin_requests = 7\ndry_run = true\n"
            '[checks.noise]\nignore = ["$..created_at"]\nunordered = ["$.tags"]\nignore_headers = ["Date"]\n'
            "[stages.onebox]\nfaults = { candidate = { error_rate = 0.2, error_status = 502 } }\n"
        ),
    )
    assert config.checks.enabled() == ("spec-diff", "canary")
    assert config.checks.get("canary").dry_run
    assert config.checks.option("canary", "min_requests") == 7
    assert config.checks.noise.ignore == ("$..created_at",)
    assert config.stages["onebox"].faults == {"candidate": {"error_rate": 0.2, "error_status": 502}}


def test_every_check_option_is_documented() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    for check, options in CHECK_OPTIONS.items():
        for name in options:
            assert f"| `{check}` | `{name}` |" in doc, (check, name)


@pytest.mark.parametrize(
    ("text", "key", "value", "hint"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_bad_config_is_reported_with_file_key_value_and_hint(
    project: Path, text: str, key: str, value: object, hint: str
) -> None:
    path = write(project, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    err = info.value
    message = str(err)
    assert err.file == str(path)
    assert message.startswith(f"{path}: {key}: "), message
    assert err.key == key
    assert f"(got {value!r})" in message, message
    assert hint in message, message


def test_there_are_many_distinct_bad_configs() -> None:
    assert len({case[0] for case in BAD}) == len(BAD) >= 25


def test_invalid_toml_names_file_line_and_column(project: Path) -> None:
    path = write(project, 'project = "shop"\n[services\nport = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 2" in message
    assert "column" in message


def test_errors_are_reported_in_a_fixed_order(project: Path) -> None:
    text = toml(top='runtime = "podman"\nseed = -1', orders='port = "80"')
    messages = set()
    for _ in range(3):
        with pytest.raises(ConfigError) as info:
            load(project, text)
        messages.add(str(info.value))
    assert len(messages) == 1
    assert ": runtime: " in messages.pop()  # the first problem in the documented order


def test_error_file_is_relative_to_the_working_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    with pytest.raises(ConfigError) as info:
        load_config(write(project, toml(top="seed = -1")), environ={})
    assert str(info.value).startswith("compat.toml: seed: ")


# -- overrides ------------------------------------------------------------------------------------------


@pytest.fixture
def three_versions(project: Path) -> Config:
    return load(project, toml(v2='image = "o:2"\n[services.orders.versions.v3]\nimage = "o:3"'))


def test_apply_overrides(three_versions: Config) -> None:
    config = apply_overrides(three_versions, candidates={"orders": "v3"}, runtime="docker", seed=11)
    assert config.services["orders"].candidate == "v3"
    assert config.services["orders"].role_of("v2") == "other"
    assert (config.runtime, config.seed) == ("docker", 11)
    assert three_versions.services["orders"].candidate == "v2"  # the original is untouched
    assert apply_overrides(three_versions) == three_versions


@pytest.mark.parametrize(
    ("kwargs", "key", "value", "hint"),
    [
        ({"candidates": {"payments": "v2"}}, "--compat-candidate", "payments=v2", "services: orders"),
        (
            {"candidates": {"orders": "v9"}},
            "--compat-candidate",
            "orders=v9",
            "versions of orders: v1, v2, v3",
        ),
        ({"candidates": {"orders": "v1"}}, "--compat-candidate", "orders=v1", "choose one of: v2, v3"),
        ({"runtime": "podman"}, "--compat-runtime", "podman", "choose one of: auto, docker, process"),
        ({"seed": -3}, "--compat-seed", -3, "integer >= 0"),
    ],
    ids=["unknown-service", "unknown-version", "baseline-as-candidate", "bad-runtime", "negative-seed"],
)
def test_bad_overrides(
    three_versions: Config, kwargs: dict[str, object], key: str, value: object, hint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(three_versions, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert info.value.key == key
    assert "compat.toml" in message
    assert f"(got {value!r})" in message
    assert hint in message


def test_parse_candidate_option() -> None:
    assert parse_candidate_option("orders=v3") == ("orders", "v3")
    assert parse_candidate_option(" web-api = 2.0-rc1 ") == ("web-api", "2.0-rc1")


@pytest.mark.parametrize("text", ["orders", "orders=", "=v2", "Orders=v2", "orders=v 2", "orders:v2"])
def test_parse_candidate_option_rejects_bad_shapes(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_candidate_option(text)
    assert repr(text) in str(info.value)
    assert "SERVICE=VERSION" in str(info.value)
    assert "orders=v2" in str(info.value)


# -- describe / render ----------------------------------------------------------------------------------


@pytest.fixture
def shop(project: Path) -> Config:
    return load(
        project,
        toml(
            top='contracts = ["contracts/*.json"]',
            orders=ORDERS + 'state = "db"\nenv = { API_TOKEN = "s3cret", LOG_LEVEL = "info" }',
            v1='build = { context = "orders", args = { APP_VERSION = "1" } }\n'
            'command = ["python3", "app.py", "--port", "{port}"]\nspec = "specs/orders.yaml"',
            v2='image = "shop/orders:2"\n[services.orders.versions.v3]\nimage = "shop/orders:3"',
            extra=WEB.replace("port = 8000", 'port = 8000\ndepends_on = { orders = "ORDERS_URL" }')
            + '[state.db]\nkind = "volume"\n[stages.onebox]\nreplicas = 3\n'
            '[stages.canary]\nkind = "onebox"\npolicy = "weighted"\nweight = 0.1\n',
        ),
    )


def test_describe_is_json_and_complete(shop: Config, project: Path) -> None:
    data = json.loads(json.dumps(describe(shop)))
    assert data["project"] == "shop"
    assert data["file"] == str(project / "compat.toml")
    assert (data["runtime"], data["seed"]) == ("auto", 0)
    assert data["contracts"] == ["contracts/web-orders.json"]
    assert data["dependency_order"] == ["orders", "web"]
    orders = data["services"]["orders"]
    assert (orders["port"], orders["health"], orders["replicas"], orders["state"]) == (
        8080,
        "/health",
        2,
        "db",
    )
    assert orders["env"] == {"API_TOKEN": "***", "LOG_LEVEL": "info"}
    assert data["services"]["web"]["depends_on"] == [{"service": "orders", "env": "ORDERS_URL"}]
    versions = orders["versions"]
    assert {name: v["role"] for name, v in versions.items()} == {
        "v1": "baseline",
        "v2": "candidate",
        "v3": "other",
    }
    assert versions["v1"]["source"] == {
        "build": {
            "context": "orders",
            "dockerfile": "Dockerfile",
            "args": {"APP_VERSION": "1"},
            "target": None,
        },
        "command": ["python3", "app.py", "--port", "{port}"],
        "cwd": ".",
    }
    assert versions["v1"]["spec"] == "specs/orders.yaml"
    assert versions["v2"]["source"] == {"image": "shop/orders:2"}
    assert data["state"] == {"db": {"kind": "volume", "mount": "/data", "service": None}}
    assert data["stages"]["onebox"]["replicas"] == 3
    assert data["stages"]["canary"] == {
        "kind": "onebox",
        "enabled": True,
        "services": [],
        "policy": "weighted",
        "weight": 0.1,
        "replicas": None,
        "chain": [],
        "seed": None,
    }


def test_render_text_shows_services_roles_sources_and_stages(shop: Config) -> None:
    text = render_text(shop)
    lines = text.splitlines()
    assert any(
        re.match(
            r"\s+v1\s+baseline\s+build orders \(args APP_VERSION=1\); command python3 app\.py "
            r"--port \{port\}; spec specs/orders\.yaml$",
            line,
        )
        for line in lines
    ), text
    assert any(re.match(r"\s+v2\s+candidate\s+image shop/orders:2$", line) for line in lines), text
    assert any(re.match(r"\s+v3\s+other\s+image shop/orders:3$", line) for line in lines), text
    assert text.index("orders ") < text.index("web ")  # dependencies first
    assert "depends on orders (ORDERS_URL)" in text
    assert re.search(r"db\s+volume\s+mounted at /data\s+used by orders", text)
    assert re.search(r"onebox\s+onebox\s+services \(every service with a candidate\)", text)
    assert re.search(r"canary\s+onebox\s+.*policy weighted\s+weight 0\.1", text)
    assert "s3cret" not in text


def test_render_text_without_stages_or_state(project: Path) -> None:
    text = render_text(load(project, toml()))
    assert "(none configured" in text
    assert "state\n  (none)" in text


# -- layering -------------------------------------------------------------------------------------------


def test_config_layer_imports_no_heavy_modules(project: Path) -> None:
    write(project, toml())
    code = (
        "import sys; from pathlib import Path; from compat.config import load_config, describe, render_text;"
        f"c = load_config(Path({str(project / 'compat.toml')!r})); describe(c); render_text(c);"
        "print(sorted(m for m in ('pytest', 'docker', 'requests', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
