"""Import services from a docker-compose (v2/v3) file: ``compose = "docker-compose.yml"``.

Only what the harness needs is read from each compose service: ``image``, ``build`` (string or
``{context, dockerfile, args, target}``), ``environment`` (list or map), the container port (the first of
``ports``, else of ``expose``) and ``depends_on`` (list or map form). Everything else (``healthcheck``,
``volumes``, ``networks`` …) is ignored. Only the keys read are interpolated (``${VAR}``,
``${VAR:-default}``, ``$$``). Relative paths are resolved against the compose file's directory, and errors
name the compose file and the key inside it (``services.api.ports[0]``).

How compose services merge with ``[services.X]`` tables is the loader's business
(:mod:`compat.config.loader`); this module only turns the file into :class:`ComposeService` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from compat.config._check import (
    SERVICE_NAME,
    SERVICE_NAME_HINT,
    Source,
    check_dockerfile,
    existing_dir,
    find_cycle,
    join,
    string,
    table,
    type_name,
)
from compat.config._interpolate import interpolate_tree
from compat.config.model import BuildSpec

_PORT_FORMS = 'write "80", "8080:80", "127.0.0.1:8080:80", "80/tcp" or { target: 80 }'
_READ_KEYS = ("image", "build", "environment", "ports", "expose", "depends_on")


@dataclass(frozen=True)
class ComposeService:
    """What the harness takes from one compose service."""

    name: str
    image: str | None = None
    build: BuildSpec | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    depends_on: tuple[str, ...] = ()


def load_compose(path: Path, environ: Mapping[str, str]) -> dict[str, ComposeService]:
    """The services of the compose file at ``path`` (which exists), in file order."""
    import yaml  # lazily: only configs with `compose = ...` pay for it

    src = Source(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        src.fail(f"cannot read the compose file: {exc}", None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        src.fail(f"invalid YAML{where}: {problem}", None, hint="fix the YAML syntax there")
    top = table(src, data, "", "a compose file is a mapping with a `services:` mapping")
    if "services" not in top:
        src.fail(
            "no `services:` mapping", "services", hint="a compose file lists its services under `services:`"
        )
    raw_services = table(src, top["services"], "services")
    if not raw_services:
        src.fail("no services defined", "services", raw_services, "define at least one service")
    services = {
        name: _service(src, name, raw, set(raw_services), environ) for name, raw in raw_services.items()
    }
    cycle = find_cycle({name: svc.depends_on for name, svc in services.items()})
    if cycle:
        src.fail(
            f"dependency cycle {' -> '.join(cycle)}",
            join(join("services", cycle[0]), "depends_on"),
            cycle[1],
            "remove one of these depends_on entries",
        )
    return services


def _service(
    src: Source, name: str, raw: object, names: set[str], environ: Mapping[str, str]
) -> ComposeService:
    key = join("services", name)
    if not SERVICE_NAME.match(name):
        src.fail("invalid service name", key, name, f"{SERVICE_NAME_HINT}; rename it in the compose file")
    svc = table(src, raw, key)
    values = {k: interpolate_tree(src, svc[k], environ, join(key, k)) for k in _READ_KEYS if k in svc}
    image = string(src, values["image"], join(key, "image")) if "image" in values else None
    build = _build(src, values["build"], join(key, "build"), environ) if "build" in values else None
    env = (
        _pairs(src, values["environment"], join(key, "environment"), environ)
        if "environment" in values
        else {}
    )
    port = None
    for field_name in ("ports", "expose"):
        if field_name in values:
            ports = _ports(src, values[field_name], join(key, field_name))
            port = port or (ports[0] if ports else None)
    depends: tuple[str, ...] = ()
    if "depends_on" in values:
        depends = _depends_on(src, name, values["depends_on"], join(key, "depends_on"), names)
    return ComposeService(
        name=name,
        # `image` next to `build` is the tag compose gives what it builds: the build is the source
        image=None if build else image,
        build=build,
        env=env,
        port=port,
        depends_on=depends,
    )


def _build(src: Source, value: object, key: str, environ: Mapping[str, str]) -> BuildSpec:
    if isinstance(value, str):
        context = existing_dir(src, value, key)
        check_dockerfile(src, context, "Dockerfile", key)
        return BuildSpec(context=context)
    raw = table(src, value, key, 'write build: DIR or build: { context: DIR, dockerfile: "Dockerfile" }')
    context = existing_dir(src, raw.get("context", "."), join(key, "context"))
    dockerfile = string(src, raw.get("dockerfile", "Dockerfile"), join(key, "dockerfile"))
    check_dockerfile(src, context, dockerfile, join(key, "dockerfile"))
    args = _pairs(src, raw["args"], join(key, "args"), environ) if "args" in raw else {}
    target = string(src, raw["target"], join(key, "target")) if "target" in raw else None
    return BuildSpec(context=context, dockerfile=dockerfile, args=args, target=target)


def _text(src: Source, value: object, key: str) -> str:
    """A compose scalar as a string: compose writes numbers and booleans unquoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    src.fail(f"expected a string, got {type_name(value)}", key, value, "write the value in quotes")


def _pairs(src: Source, value: object, key: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``environment``/``build.args``: a list of ``NAME=value`` (or ``NAME``) or a map (``NAME: null``).

    A name without a value takes the variable from the environment, and is left out when it is unset.
    """
    result: dict[str, str] = {}
    if isinstance(value, list):
        for index, item in enumerate(value):
            text = string(src, item, join(key, index), expected='write "NAME=value" or "NAME"')
            name, sep, val = text.partition("=")
            if not name:
                src.fail("no variable name", join(key, index), item, 'write "NAME=value" or "NAME"')
            if sep:
                result[name] = val
            elif name in environ:
                result[name] = environ[name]
        return result
    for name, item in table(src, value, key, 'write a list of "NAME=value" or a map NAME: value').items():
        if item is None:
            if name in environ:
                result[name] = environ[name]
        else:
            result[name] = _text(src, item, join(key, name))
    return result


def _ports(src: Source, value: object, key: str) -> list[int]:
    if not isinstance(value, list):
        src.fail(f"expected a list, got {type_name(value)}", key, value, _PORT_FORMS)
    return [_container_port(src, item, join(key, index)) for index, item in enumerate(value)]


def _container_port(src: Source, value: object, key: str) -> int:
    """The container side of one ``ports``/``expose`` entry (the first port of a range)."""
    if isinstance(value, dict):
        if "target" not in value:
            src.fail("long-form port without `target`", key, value, "give the container port as target: 80")
        return _container_port(src, value["target"], join(key, "target"))
    if isinstance(value, bool) or not isinstance(value, int | str):
        src.fail(f"expected a port, got {type_name(value)}", key, value, _PORT_FORMS)
    if isinstance(value, int) and value > 65535:
        src.fail("not a port", key, value, 'quote it: unquoted "A:B" is a base-60 number in YAML')
    text = str(value).strip().split("/", 1)[0].rsplit(":", 1)[-1].split("-", 1)[0]
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        src.fail("cannot read a container port", key, value, _PORT_FORMS)
    return int(text)


def _depends_on(src: Source, name: str, value: object, key: str, names: set[str]) -> tuple[str, ...]:
    if isinstance(value, list):
        targets = [
            (string(src, item, join(key, index)), join(key, index)) for index, item in enumerate(value)
        ]
    else:
        targets = [(target, join(key, target)) for target in table(src, value, key, "write a list or a map")]
    for target, where in targets:
        if target == name:
            src.fail("a service cannot depend on itself", where, target, "remove this entry")
        if target not in names:
            src.fail("unknown service", where, target, f"compose services: {', '.join(sorted(names))}")
    return tuple(target for target, _ in targets)
