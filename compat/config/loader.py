"""Find, read and validate the configuration; ``docs/configuration.md`` is the contract.

:func:`load_config` reads the TOML, interpolates ``${VAR}`` in every string value, then validates one table
kind at a time (one method of :class:`_Loader` each) and builds the frozen :mod:`compat.config.model`
objects. The first problem raises :class:`~compat.errors.ConfigError`; validation runs in a fixed order
(top-level keys, compose file, ``[state]``, ``[services]`` in file order, dependency cycles,
``[stages]``) so the same file always reports the same first error.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shlex
import string as _string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from compat.config._check import (
    ENV_NAME,
    ENV_NAME_HINT,
    SERVICE_NAME,
    SERVICE_NAME_HINT,
    VERSION_NAME,
    VERSION_NAME_HINT,
    Source,
    array,
    boolean,
    check_dockerfile,
    check_keys,
    choice_hint,
    display_path,
    existing_dir,
    existing_file,
    existing_paths,
    find_cycle,
    glob_files,
    integer,
    join,
    number,
    str_map,
    string,
    string_list,
    table,
    type_name,
)
from compat.config._interpolate import interpolate_tree
from compat.config.checks import load_checks
from compat.config.compose import ComposeService, load_compose
from compat.config.model import (
    COMMAND_PLACEHOLDERS,
    ROUTER_POLICIES,
    RUNTIME_NAMES,
    STAGE_KINDS,
    BuildSpec,
    Checks,
    Config,
    Dependency,
    ProviderStates,
    RuntimeName,
    Service,
    Stage,
    State,
    Version,
)
from compat.errors import ConfigError, UsageError

TOP_KEYS = (
    "project",
    "runtime",
    "seed",
    "startup_timeout",
    "contracts",
    "tests",
    "compose",
    "redact_headers",
    "services",
    "state",
    "stages",
    "checks",
    "waivers",
)
SERVICE_KEYS = (
    "port",
    "health",
    "health_timeout",
    "versions",
    "baseline",
    "candidate",
    "replicas",
    "env",
    "depends_on",
    "state",
    "provider_states",
    "contracts",
)
VERSION_KEYS = ("image", "build", "command", "cwd", "env", "spec")
BUILD_KEYS = ("context", "dockerfile", "args", "target")
STATE_KEYS = ("kind", "mount", "service")
STATE_KINDS = ("volume", "service")
STAGE_KEYS = ("kind", "enabled", "services", "policy", "weight", "replicas", "chain", "seed", "faults")
FAULT_KEYS = ("delay_ms", "error_rate", "drop_rate", "error_status")
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
#: The version a compose service's own definition gets (its baseline unless the table says otherwise).
COMPOSE_VERSION = "compose"
#: A stage name the session reserves for the plan every run starts with (baseline + candidates).
RESERVED_STAGE = "default"

_PROJECT = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_PROJECT_HINT = "project names match [a-z0-9][a-z0-9_.-]*, e.g. 'shop'"
_STATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_STATE_NAME_HINT = "state names match [A-Za-z0-9][A-Za-z0-9_.-]*, e.g. 'orders-db'"
_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_STAGE_NAME_HINT = "stage names match [A-Za-z0-9][A-Za-z0-9_.-]*, e.g. 'onebox' or 'canary-10'"
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HTTP_PATH = re.compile(r"/\S*\Z")
_ABS_PATH = re.compile(r"/\S*\Z")
_CALLABLE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
_PLACEHOLDERS_HINT = (
    f"placeholders: {' '.join('{' + p + '}' for p in COMMAND_PLACEHOLDERS)}; "
    "write {{ and }} for literal braces"
)


# -- public API -----------------------------------------------------------------------------------------


def find_config(start: Path, explicit: Path | None = None) -> Path:
    """The config file: ``explicit`` > ``start/compat.toml`` > ``start/pyproject.toml`` with [tool.compat]."""
    if explicit is not None:
        if explicit.is_dir():
            found = [p for p in (explicit / "compat.toml", explicit / "pyproject.toml") if p.is_file()]
            raise ConfigError(
                "is a directory, not a config file",
                file=str(explicit),
                hint=f"give the file itself, e.g. {found[0]}"
                if found
                else "give a compat.toml or pyproject.toml",
            )
        if not explicit.is_file():
            raise ConfigError(
                "config file not found",
                file=str(explicit),
                hint=f"check the path (relative paths start at the working directory {Path.cwd()})",
            )
        return explicit
    compat_toml = start / "compat.toml"
    if compat_toml.is_file():
        return compat_toml
    pyproject = start / "pyproject.toml"
    if pyproject.is_file():
        src = Source(pyproject.resolve())
        if "compat" in _tool_table(src, _read_toml(src)):
            return pyproject
        looked = f"{compat_toml} (missing) and [tool.compat] in {pyproject} (no such table)"
    else:
        looked = f"{compat_toml} and {pyproject} (both missing)"
    raise ConfigError(
        f"no pytest-compat configuration found; looked for {looked}",
        hint="create compat.toml (see docs/configuration.md), add [tool.compat] to pyproject.toml, "
        "or pass --compat-config PATH (CLI: compat --config PATH)",
    )


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate the config at ``path``; :class:`ConfigError` on the first problem."""
    src = Source(path.resolve())
    data = _read_toml(src)
    if src.path.name == "pyproject.toml":
        tool = _tool_table(src, data)
        if "compat" not in tool:
            src.fail(
                "no [tool.compat] table",
                "tool.compat",
                hint="add a [tool.compat] table (docs/configuration.md), or use a compat.toml instead",
            )
        data = table(src, tool["compat"], "tool.compat")
    env = os.environ if environ is None else environ
    raw = table(src, interpolate_tree(src, data, env), "")
    return _Loader(src, env).config(raw)


def parse_candidate_option(text: str, flag: str = "--compat-candidate") -> tuple[str, str]:
    """``"orders=v3"`` -> ``("orders", "v3")``; anything else is a :class:`UsageError` showing the value."""
    service, sep, version = (part.strip() for part in text.partition("="))
    if not sep or not SERVICE_NAME.match(service) or not VERSION_NAME.match(version):
        raise UsageError(
            f"{flag}: {text!r} is not SERVICE=VERSION; expected e.g. orders=v2 "
            "(service [a-z][a-z0-9-]*, version [A-Za-z0-9][A-Za-z0-9_.-]*)"
        )
    return service, version


def apply_overrides(
    config: Config,
    *,
    candidates: Mapping[str, str] | None = None,
    runtime: str | None = None,
    seed: int | None = None,
    flag: str = "--compat-candidate",
) -> Config:
    """``config`` with command-line overrides applied, each validated against the config (errors name
    ``flag``, the option the candidates came from)."""
    file = display_path(config.path)
    services = dict(config.services)
    for name, version in (candidates or {}).items():
        services[name] = _override_candidate(file, services, name, version, flag)
    new_runtime = config.runtime
    if runtime is not None:
        if runtime not in RUNTIME_NAMES:
            raise ConfigError(
                "unknown runtime",
                file=file,
                key="--compat-runtime",
                value=runtime,
                has_value=True,
                hint=choice_hint(runtime, RUNTIME_NAMES),
            )
        new_runtime = cast(RuntimeName, runtime)
    new_seed = config.seed
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(
                "invalid seed",
                file=file,
                key="--compat-seed",
                value=seed,
                has_value=True,
                hint="give an integer >= 0",
            )
        new_seed = seed
    return dataclasses.replace(config, services=services, runtime=new_runtime, seed=new_seed)


def _override_candidate(
    file: str, services: Mapping[str, Service], name: str, version: str, flag: str = "--compat-candidate"
) -> Service:
    option = f"{name}={version}"
    service = services.get(name)
    if service is None:
        raise ConfigError(
            f"no service {name!r} in the config",
            file=file,
            key=flag,
            value=option,
            has_value=True,
            hint=f"services: {', '.join(sorted(services))}",
        )
    if version not in service.versions:
        raise ConfigError(
            f"service {name!r} has no version {version!r}",
            file=file,
            key=flag,
            value=option,
            has_value=True,
            hint=f"versions of {name}: {', '.join(service.versions)}",
        )
    if version == service.baseline:
        others = [v for v in service.versions if v != service.baseline]
        raise ConfigError(
            f"{version!r} is the baseline of {name!r}; the candidate must be another version",
            file=file,
            key=flag,
            value=option,
            has_value=True,
            hint=f"choose one of: {', '.join(others)}" if others else f"{name} has no other version",
        )
    return dataclasses.replace(service, candidate=version)


# -- reading --------------------------------------------------------------------------------------------


def _read_toml(src: Source) -> dict[str, object]:
    try:
        text = src.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        src.fail(f"cannot read the file: {exc}", None)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        src.fail(f"invalid TOML: {exc}", None, hint="fix the syntax at that line and column")


def _tool_table(src: Source, data: dict[str, object]) -> dict[str, object]:
    """``[tool]`` of a pyproject.toml (empty when there is none)."""
    return table(src, data.get("tool", {}), "tool")


def _default_project(root: Path) -> str:
    """The config directory's name, made a valid project label (lower-case, other characters -> ``-``)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", root.name.lower()).lstrip("_.-")
    return name or "compat"


# -- validation -----------------------------------------------------------------------------------------


@dataclass
class _Loader:
    """Validates one file's tables; remembers the names later tables may refer to."""

    src: Source
    environ: Mapping[str, str]
    compose: dict[str, ComposeService] = field(default_factory=dict)
    service_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()
    startup_timeout: float = 60.0

    # top level

    def config(self, data: dict[str, object]) -> Config:
        src = self.src
        check_keys(src, data, TOP_KEYS, "")
        project = (
            string(
                src,
                data["project"],
                "project",
                pattern=_PROJECT,
                expected=_PROJECT_HINT,
                problem="invalid project name",
            )
            if "project" in data
            else _default_project(src.root)
        )
        runtime = string(src, data.get("runtime", "auto"), "runtime", choices=RUNTIME_NAMES)
        seed = integer(src, data.get("seed", 0), "seed", lo=0)
        self.startup_timeout = number(src, data.get("startup_timeout", 60), "startup_timeout", above=0)
        contracts = glob_files(src, data["contracts"], "contracts") if "contracts" in data else ()
        tests = existing_paths(src, data["tests"], "tests") if "tests" in data else ()
        redact = string_list(
            src,
            data.get("redact_headers", []),
            "redact_headers",
            pattern=_HEADER,
            expected="an HTTP header name such as 'X-Api-Key'",
        )
        compose_file = None
        if "compose" in data:
            compose_file = existing_file(src, data["compose"], "compose")
            self.compose = load_compose(compose_file, self.environ)
        raw_services = self._service_tables(data)
        raw_state = table(src, data.get("state", {}), "state", "write [state.NAME] tables")
        state = {name: self.state(name, raw) for name, raw in raw_state.items()}
        self.state_names = tuple(state)
        services = {
            name: self.service(name, raw_services.get(name), self.compose.get(name))
            for name in self.service_names
        }
        self._check_cycles(services)
        raw_stages = table(src, data.get("stages", {}), "stages", "write [stages.NAME] tables")
        stages = {name: self.stage(name, raw, services) for name, raw in raw_stages.items()}
        checks = load_checks(src, data["checks"]) if "checks" in data else Checks()
        waivers = (
            existing_file(src, data["waivers"], "waivers", suffixes=(".toml",)) if "waivers" in data else None
        )
        return Config(
            path=src.path,
            root=src.root,
            project=project,
            services=services,
            state=state,
            stages=stages,
            runtime=cast(RuntimeName, runtime),
            seed=seed,
            contracts=contracts,
            tests=tests,
            compose_file=compose_file,
            startup_timeout=self.startup_timeout,
            redact_headers=tuple(redact),
            checks=checks,
            waivers=waivers,
        )

    def _service_tables(self, data: dict[str, object]) -> dict[str, object]:
        """The ``[services.*]`` tables; remembers every service name (tables first, then compose-only)."""
        hint = 'add a [services.NAME] table (docs/configuration.md), or compose = "docker-compose.yml"'
        if "services" not in data and not self.compose:
            self.src.fail("no services configured", "services", hint=hint)
        raw = table(self.src, data.get("services", {}), "services", "write [services.NAME] tables")
        if not raw and not self.compose:
            self.src.fail("no services configured", "services", raw, hint)
        for name in raw:
            if not SERVICE_NAME.match(name):
                self.src.fail("invalid service name", join("services", name), name, SERVICE_NAME_HINT)
        self.service_names = (*raw, *(name for name in self.compose if name not in raw))
        return raw

    # [services.NAME]

    def service(self, name: str, raw: object, compose: ComposeService | None) -> Service:
        src = self.src
        key = join("services", name)
        tbl = table(src, raw, key) if raw is not None else {}
        misplaced = {k: f"`{k}` belongs to a version: [{key}.versions.NAME] {k} = …" for k in VERSION_KEYS}
        del misplaced["env"]
        check_keys(src, tbl, SERVICE_KEYS, key, misplaced=misplaced)
        # checked in the order of the keys table in docs/configuration.md
        port = self._port(key, tbl, compose)
        health = string(
            src,
            tbl.get("health", "/health"),
            join(key, "health"),
            pattern=_HTTP_PATH,
            expected="an HTTP path starting with /, e.g. '/health'",
            problem="not an HTTP path",
        )
        timeout = number(
            src, tbl.get("health_timeout", self.startup_timeout), join(key, "health_timeout"), above=0
        )
        versions = self.versions(name, tbl, compose)
        baseline = self._baseline(key, tbl, versions, compose)
        return Service(
            name=name,
            port=port,
            health=health,
            health_timeout=timeout,
            versions=versions,
            baseline=baseline,
            candidate=self._candidate(key, tbl, versions, baseline, compose),
            replicas=integer(src, tbl.get("replicas", 2), join(key, "replicas"), lo=1, hi=16),
            env={**(compose.env if compose else {}), **str_map(src, tbl.get("env", {}), join(key, "env"))},
            depends_on=self.depends_on(name, tbl, compose),
            state=self._state_ref(key, tbl),
            provider_states=(
                self.provider_states(join(key, "provider_states"), tbl["provider_states"])
                if "provider_states" in tbl
                else None
            ),
            contracts=glob_files(src, tbl["contracts"], join(key, "contracts")) if "contracts" in tbl else (),
            from_compose=compose is not None,
        )

    def _port(self, key: str, tbl: dict[str, object], compose: ComposeService | None) -> int:
        if "port" in tbl:
            return integer(self.src, tbl["port"], join(key, "port"), lo=1, hi=65535)
        if compose is not None and compose.port is not None:
            return compose.port
        where = " (the compose service has no ports or expose)" if compose else ""
        self.src.fail(f"no port{where}", join(key, "port"), hint="set port = N: the port the app listens on")

    def _baseline(
        self, key: str, tbl: dict[str, object], versions: dict[str, Version], compose: ComposeService | None
    ) -> str:
        if "baseline" in tbl:
            return self._version_ref(join(key, "baseline"), tbl["baseline"], versions)
        if len(versions) == 1:
            return next(iter(versions))
        if COMPOSE_VERSION in versions and compose is not None:
            return COMPOSE_VERSION  # a compose service's own definition is its production version
        self.src.fail(
            "no baseline: the service has several versions",
            join(key, "baseline"),
            hint=f"set baseline to the production version, one of: {', '.join(versions)}",
        )

    def _candidate(
        self,
        key: str,
        tbl: dict[str, object],
        versions: dict[str, Version],
        baseline: str,
        compose: ComposeService | None,
    ) -> str | None:
        if "candidate" not in tbl:
            return None
        candidate = self._version_ref(join(key, "candidate"), tbl["candidate"], versions)
        if candidate == baseline:
            others = [v for v in versions if v != baseline]
            self.src.fail(
                "the candidate is the baseline",
                join(key, "candidate"),
                candidate,
                f"choose another version: {', '.join(others)}"
                if others
                else f"add [{key}.versions.{COMPOSE_VERSION}] (the compose definition) as the baseline"
                if compose is not None
                else f"add a second [{key}.versions.NAME] for the candidate, or remove candidate",
            )
        return candidate

    def _version_ref(self, key: str, value: object, versions: dict[str, Version]) -> str:
        name = string(self.src, value, key)
        if name not in versions:
            self.src.fail("no such version", key, name, choice_hint(name, list(versions)))
        return name

    def _state_ref(self, key: str, tbl: dict[str, object]) -> str | None:
        if "state" not in tbl:
            return None
        name = string(self.src, tbl["state"], join(key, "state"))
        if name not in self.state_names:
            hint = (
                choice_hint(name, self.state_names)
                if self.state_names
                else f'define it: [state.{name}] kind = "volume"'
            )
            self.src.fail("no such [state] entry", join(key, "state"), name, hint)
        return name

    def depends_on(
        self, name: str, tbl: dict[str, object], compose: ComposeService | None
    ) -> tuple[Dependency, ...]:
        """Compose ``depends_on`` (start order) merged with the table's, whose entries win per target."""
        key = join(join("services", name), "depends_on")
        deps: dict[str, str | None] = dict.fromkeys(compose.depends_on if compose else ())
        value = tbl.get("depends_on", [])
        if isinstance(value, list):
            for index, item in enumerate(value):
                target = self._dependency_target(name, join(key, index), item)
                deps.setdefault(target, None)
        elif isinstance(value, dict):
            for target, spec in value.items():
                self._dependency_target(name, join(key, target), target)
                deps[target] = self._dependency_env(join(key, target), spec)
        else:
            self.src.fail(
                f"expected an array or a table, got {type_name(value)}",
                key,
                value,
                'write depends_on = ["orders"] or depends_on = { orders = "ORDERS_URL" }',
            )
        seen: dict[str, str] = {}
        for target, env in deps.items():
            if env is not None and env in seen:
                self.src.fail(
                    f"{env} already receives the URL of {seen[env]!r}",
                    join(key, target),
                    env,
                    "give each dependency its own variable",
                )
            if env is not None:
                seen[env] = target
        return tuple(Dependency(target=target, env=env) for target, env in deps.items())

    def _dependency_target(self, name: str, key: str, value: object) -> str:
        target = string(self.src, value, key)
        if target == name:
            self.src.fail("a service cannot depend on itself", key, target, "remove this entry")
        if target not in self.service_names:
            self.src.fail("no such service", key, target, choice_hint(target, sorted(self.service_names)))
        return target

    def _dependency_env(self, key: str, spec: object) -> str:
        if isinstance(spec, dict):
            check_keys(self.src, spec, ("env",), key)
            if "env" not in spec:
                self.src.fail("no env", join(key, "env"), hint='write { env = "ORDERS_URL" }')
            key, spec = join(key, "env"), spec["env"]
        expected = f'the env var that receives the URL, e.g. "ORDERS_URL" ({ENV_NAME_HINT})'
        return string(
            self.src, spec, key, pattern=ENV_NAME, expected=expected, problem="invalid variable name"
        )

    def provider_states(self, key: str, value: object) -> ProviderStates:
        forms = '{ url = "/_compat/provider-states" } or { callable = "module:function" }'
        tbl = table(self.src, value, key, f"write {forms}")
        check_keys(self.src, tbl, ("url", "callable"), key)
        if len(tbl) != 1:
            self.src.fail("give exactly one of url, callable", key, tbl, f"write {forms}")
        if "url" in tbl:
            url = string(
                self.src,
                tbl["url"],
                join(key, "url"),
                pattern=_HTTP_PATH,
                expected="a path on the service starting with /, e.g. '/_compat/provider-states'",
                problem="not an HTTP path",
            )
            return ProviderStates(url=url)
        target = string(
            self.src,
            tbl["callable"],
            join(key, "callable"),
            pattern=_CALLABLE,
            expected="write 'module:function', e.g. 'mypkg.states:setup'",
            problem="not a 'module:function' reference",
        )
        return ProviderStates(callable=target)

    # [services.NAME.versions.VERSION]

    def versions(
        self, service: str, tbl: dict[str, object], compose: ComposeService | None
    ) -> dict[str, Version]:
        key = join(join("services", service), "versions")
        hint = f"add [{key}.v1] with image, build or command"
        if "versions" in tbl:
            raw = table(self.src, tbl["versions"], key, hint)
            if not raw:
                self.src.fail("no versions", key, raw, hint)
        elif compose is not None:
            raw = {COMPOSE_VERSION: {}}  # a compose service without versions: its compose definition
        else:
            self.src.fail("no versions", key, hint=hint)
        return {name: self.version(service, name, value, compose) for name, value in raw.items()}

    def version(self, service: str, name: str, raw: object, compose: ComposeService | None) -> Version:
        src = self.src
        key = join(join(join("services", service), "versions"), name)
        if not VERSION_NAME.match(name):
            src.fail("invalid version name", key, name, VERSION_NAME_HINT)
        tbl = table(src, raw, key)
        check_keys(src, tbl, VERSION_KEYS, key)
        if "image" in tbl and "build" in tbl:
            src.fail(
                "`image` and `build` together",
                key,
                {"image": tbl["image"], "build": tbl["build"]},
                "a version is either a pulled image or a local build: keep one",
            )
        image = (
            string(src, tbl["image"], join(key, "image"), expected="an image reference")
            if "image" in tbl
            else None
        )
        build = self.build(join(key, "build"), tbl["build"], compose) if "build" in tbl else None
        if image is None and build is None and compose is not None:
            image, build = compose.image, compose.build
        command = self.command(join(key, "command"), tbl["command"]) if "command" in tbl else None
        if image is None and build is None and command is None:
            src.fail(
                "no image, build or command",
                key,
                hint='give image = "name:tag" or build = "dir" (docker), and/or command = [...] (process)',
            )
        return Version(
            name=name,
            service=service,
            image=image,
            build=build,
            command=command,
            env=str_map(src, tbl.get("env", {}), join(key, "env")),
            spec=existing_file(src, tbl["spec"], join(key, "spec"), suffixes=SPEC_SUFFIXES)
            if "spec" in tbl
            else None,
            cwd=existing_dir(src, tbl["cwd"], join(key, "cwd")) if "cwd" in tbl else None,
        )

    def build(self, key: str, value: object, compose: ComposeService | None) -> BuildSpec:
        """``build = "dir"`` or a table; without ``context`` it extends the compose service's build."""
        src = self.src
        base = compose.build if compose is not None else None
        if isinstance(value, str):
            raw: dict[str, object] = {"context": value}
            context_key = key
        else:
            raw = table(
                src, value, key, 'write build = "dir" or build = { context = "dir", dockerfile = "…" }'
            )
            check_keys(src, raw, BUILD_KEYS, key)
            context_key = join(key, "context")
        args = str_map(src, raw.get("args", {}), join(key, "args"))
        if "context" not in raw:
            if base is None:
                src.fail(
                    "no build context",
                    context_key,
                    hint='give the directory: build = { context = "services/orders" } or build = "dir"',
                )
            dockerfile = string(src, raw.get("dockerfile", base.dockerfile), join(key, "dockerfile"))
            check_dockerfile(src, base.context, dockerfile, join(key, "dockerfile"))
            target = string(src, raw["target"], join(key, "target")) if "target" in raw else base.target
            return BuildSpec(
                context=base.context, dockerfile=dockerfile, args={**base.args, **args}, target=target
            )
        context = existing_dir(src, raw["context"], context_key)
        dockerfile = string(src, raw.get("dockerfile", "Dockerfile"), join(key, "dockerfile"))
        check_dockerfile(src, context, dockerfile, join(key, "dockerfile"))
        return BuildSpec(
            context=context,
            dockerfile=dockerfile,
            args={**(base.args if base else {}), **args},
            target=string(src, raw["target"], join(key, "target")) if "target" in raw else None,
        )

    def command(self, key: str, value: object) -> tuple[str, ...]:
        """An argv list; placeholders (``{port}`` …) only from COMMAND_PLACEHOLDERS."""
        if isinstance(value, str):
            try:
                suggestion = json.dumps(shlex.split(value))
            except ValueError:
                suggestion = '["program", "arg", …]'
            self.src.fail(
                "expected an array of strings (argv), got a string",
                key,
                value,
                f"commands never go through a shell; write command = {suggestion}",
            )
        argv = string_list(self.src, array(self.src, value, key), key)
        if not argv:
            self.src.fail("empty command", key, argv, 'write command = ["program", "arg", …]')
        for index, arg in enumerate(argv):
            self._check_placeholders(join(key, index), arg)
        return tuple(argv)

    def _check_placeholders(self, key: str, arg: str) -> None:
        try:
            fields = [
                (name, spec, conv)
                for _, name, spec, conv in _string.Formatter().parse(arg)
                if name is not None
            ]
        except ValueError as exc:
            self.src.fail(f"unbalanced braces ({exc})", key, arg, _PLACEHOLDERS_HINT)
        for name, spec, conv in fields:
            if name not in COMMAND_PLACEHOLDERS or spec or conv:
                shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
                close = difflib.get_close_matches(name, COMMAND_PLACEHOLDERS, n=1)
                hint = (f"did you mean {{{close[0]}}}? " if close else "") + _PLACEHOLDERS_HINT
                self.src.fail(f"unknown placeholder {shown}", key, arg, hint)

    # [state.NAME]

    def state(self, name: str, raw: object) -> State:
        src = self.src
        key = join("state", name)
        if not _STATE_NAME.match(name):
            src.fail("invalid state name", key, name, _STATE_NAME_HINT)
        tbl = table(src, raw, key)
        check_keys(src, tbl, STATE_KEYS, key)
        if "kind" not in tbl:
            src.fail("no kind", join(key, "kind"), hint='set kind = "volume" or kind = "service"')
        kind = string(src, tbl["kind"], join(key, "kind"), choices=STATE_KINDS)
        if kind == "volume":
            if "service" in tbl:
                src.fail(
                    '`service` is only for kind = "service"',
                    join(key, "service"),
                    tbl["service"],
                    'remove it, or set kind = "service"',
                )
            mount = string(
                src,
                tbl.get("mount", "/data"),
                join(key, "mount"),
                pattern=_ABS_PATH,
                expected="an absolute path inside the container, e.g. '/data'",
                problem="not an absolute path",
            )
            return State(name=name, kind="volume", mount=mount)
        if "mount" in tbl:
            src.fail(
                '`mount` is only for kind = "volume"',
                join(key, "mount"),
                tbl["mount"],
                'remove it, or set kind = "volume"',
            )
        if "service" not in tbl:
            src.fail(
                "no service",
                join(key, "service"),
                hint='name the database service of this config: service = "db"',
            )
        service = string(src, tbl["service"], join(key, "service"))
        if service not in self.service_names:
            src.fail(
                "no such service",
                join(key, "service"),
                service,
                choice_hint(service, sorted(self.service_names)),
            )
        return State(name=name, kind="service", service=service)

    # dependency graph

    def _check_cycles(self, services: dict[str, Service]) -> None:
        cycle = find_cycle({name: [d.target for d in svc.depends_on] for name, svc in services.items()})
        if cycle:
            self.src.fail(
                f"dependency cycle {' -> '.join(cycle)}",
                join(join("services", cycle[0]), "depends_on"),
                cycle[1],
                "remove one of these depends_on entries (compose depends_on counts too)",
            )

    # [stages.NAME]

    def stage(self, name: str, raw: object, services: dict[str, Service]) -> Stage:
        src = self.src
        key = join("stages", name)
        if not _STAGE_NAME.match(name):
            src.fail("invalid stage name", key, name, _STAGE_NAME_HINT)
        if name == RESERVED_STAGE:
            src.fail(
                "reserved stage name",
                key,
                name,
                "`default` is the plan that runs baselines and candidates side by side; rename this stage",
            )
        tbl = table(src, raw, key)
        check_keys(src, tbl, STAGE_KEYS, key)
        if "kind" in tbl:
            kind = string(src, tbl["kind"], join(key, "kind"), choices=STAGE_KINDS)
        elif name in STAGE_KINDS:
            kind = name
        else:
            src.fail(
                "not a stage kind: name the table after a kind or set `kind`",
                key,
                name,
                choice_hint(name, STAGE_KINDS),
            )
        policy = string(src, tbl.get("policy", "round-robin"), join(key, "policy"), choices=ROUTER_POLICIES)
        return Stage(
            name=name,
            kind=kind,
            enabled=boolean(src, tbl.get("enabled", True), join(key, "enabled")),
            services=self._stage_services(join(key, "services"), tbl, services),
            policy=policy,
            weight=self._weight(join(key, "weight"), tbl, policy),
            replicas=integer(src, tbl["replicas"], join(key, "replicas"), lo=1, hi=16)
            if "replicas" in tbl
            else None,
            chain=self._chain(join(key, "chain"), tbl, kind, services),
            seed=integer(src, tbl["seed"], join(key, "seed"), lo=0) if "seed" in tbl else None,
            faults=self._faults(join(key, "faults"), tbl, kind, services),
        )

    def _faults(
        self, key: str, tbl: dict[str, object], kind: str, services: dict[str, Service]
    ) -> dict[str, dict[str, float]]:
        """Router fault injection: ``faults = { candidate = { error_rate = 0.2 } }`` (a role or a version)."""
        if "faults" not in tbl:
            return {}
        if kind not in ("onebox", "rollback"):
            self.src.fail(
                f"faults need a router; {kind!r} stages have none",
                key,
                tbl["faults"],
                "set faults on an onebox or rollback stage",
            )
        versions = sorted({v for s in services.values() for v in s.versions})
        targets = ["baseline", "candidate", *versions]
        out: dict[str, dict[str, float]] = {}
        for target, raw in table(
            self.src, tbl["faults"], key, "write { candidate = { error_rate = 0.2 } }"
        ).items():
            where = join(key, target)
            if target not in targets:
                self.src.fail("not a role or version", where, target, choice_hint(target, targets))
            fault = table(self.src, raw, where, "write { error_rate = 0.2, delay_ms = 50 }")
            check_keys(self.src, fault, FAULT_KEYS, where)
            spec: dict[str, float] = {}
            for name in ("error_rate", "drop_rate"):
                if name in fault:
                    spec[name] = number(
                        self.src, fault[name], join(where, name), above=-1e-12, below=1 + 1e-12
                    )
            if "delay_ms" in fault:
                spec["delay_ms"] = number(self.src, fault["delay_ms"], join(where, "delay_ms"), above=-1e-12)
            if "error_status" in fault:
                spec["error_status"] = integer(
                    self.src, fault["error_status"], join(where, "error_status"), lo=500, hi=599
                )
            out[target] = spec
        return out

    def _stage_services(
        self, key: str, tbl: dict[str, object], services: dict[str, Service]
    ) -> tuple[str, ...]:
        if "services" not in tbl:
            return ()
        names = string_list(self.src, tbl["services"], key, unique=True)
        if not names:
            self.src.fail(
                "empty list", key, names, "leave `services` out to mean every service with a candidate"
            )
        with_candidate = [n for n, s in services.items() if s.candidate]
        for index, name in enumerate(names):
            if name not in services:
                self.src.fail("no such service", join(key, index), name, choice_hint(name, sorted(services)))
            if services[name].candidate is None:
                self.src.fail(
                    f"service {name!r} has no candidate",
                    join(key, index),
                    name,
                    f"set candidate in [services.{name}]"
                    + (f", or list services with one: {', '.join(with_candidate)}" if with_candidate else ""),
                )
        return tuple(names)

    def _weight(self, key: str, tbl: dict[str, object], policy: str) -> float:
        if "weight" not in tbl:
            return 0.5
        if policy != "weighted":
            self.src.fail(
                f"weight is only used by the weighted policy (policy is {policy!r})",
                key,
                tbl["weight"],
                'set policy = "weighted", or remove weight',
            )
        return number(self.src, tbl["weight"], key, above=0, below=1)

    def _chain(
        self, key: str, tbl: dict[str, object], kind: str, services: dict[str, Service]
    ) -> tuple[str, ...]:
        if "chain" not in tbl:
            return ()
        if kind != "skew":
            self.src.fail(
                f"chain is only for skew stages (this one is {kind!r})",
                key,
                tbl["chain"],
                'remove chain, or set kind = "skew"',
            )
        chain = string_list(self.src, tbl["chain"], key, unique=True)
        if len(chain) < 2:
            self.src.fail(
                "a chain needs at least 2 services",
                key,
                chain,
                'list the call chain frontmost first, e.g. chain = ["web", "orders"]',
            )
        for index, name in enumerate(chain):
            if name not in services:
                self.src.fail("no such service", join(key, index), name, choice_hint(name, sorted(services)))
            if index and name not in {d.target for d in services[chain[index - 1]].depends_on}:
                self.src.fail(
                    f"{chain[index - 1]!r} does not depend on {name!r}",
                    join(key, index),
                    name,
                    f"a chain is a call chain: add {name!r} to services.{chain[index - 1]}.depends_on, "
                    "or reorder it frontmost first",
                )
        return tuple(chain)
