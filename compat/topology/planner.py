"""Plans: which instances a stage needs, how they are wired, and what shared state they mount.

The default plan (``plan_default``) runs every service's baseline and, where one is configured, its
candidate, side by side on one network with shared state; each service name resolves to its baseline box
(production), so a candidate frontend talks to production backends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from compat.config.model import Config, Service, State, Version
from compat.errors import ConfigError
from compat.runtime.base import InstanceSpec, Runtime
from compat.topology.model import Plan


def instance_name(service: str, version: str, index: int) -> str:
    """DNS-safe, unique per (service, version, index)."""
    safe = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in version.lower()).strip("-")
    return f"{service}-{safe}-{index}"


def check_runnable(config: Config, version: Version, runtime: str) -> None:
    """The chosen runtime can start this version, or a ConfigError that names the version and the fix."""
    key = f"services.{version.service}.versions.{version.name}"
    if runtime == "process" and not version.command:
        raise ConfigError(
            "the process runtime needs a `command` for this version",
            file=str(config.path),
            key=key,
            hint="add command = [...] with {port} (and {state_dir} for shared state), "
            "or use the docker runtime",
        )
    if runtime != "process" and not (version.image or version.build):
        raise ConfigError(
            "the docker runtime needs `image` or `build` for this version",
            file=str(config.path),
            key=key,
            hint='add image = "name:tag" or build = { context = "dir" }, or use --compat-runtime process',
        )


def scoped_state(state: State, topology: str) -> State:
    """The state as one topology sees it: every topology starts from empty state of its own (a stage must
    not read what another stage wrote); the steps of a rollback share one topology, so they share it."""
    slug = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in topology.lower()).strip("-.")
    return dataclasses.replace(state, name=f"{state.name}.{slug or 'default'}")


def version_spec(
    config: Config,
    service: Service,
    version: Version,
    index: int,
    runtime: str,
    role: str | None = None,
    *,
    topology: str = "default",
) -> InstanceSpec:
    """The instance spec of one box of ``version`` (dependency URLs are filled in by :func:`wire`)."""
    check_runnable(config, version, runtime)
    state = config.state.get(service.state) if service.state else None
    if state is not None:
        state = scoped_state(state, topology)
    return InstanceSpec(
        name=instance_name(service.name, version.name, index),
        service=service.name,
        version=version.name,
        role=role or service.role_of(version.name),
        port=service.port,
        health=service.health,
        image=version.image,
        build=version.build,
        command=version.command,
        cwd=version.cwd or config.root,
        env={**service.env, **version.env},
        state=state if state is not None and state.kind == "volume" else None,
        health_timeout=service.health_timeout,
    )


def wire(
    config: Config,
    runtime: Runtime,
    specs: Iterable[InstanceSpec],
    entry: dict[str, str],
    addresses: dict[str, str] | None = None,
) -> tuple[InstanceSpec, ...]:
    """Give every instance the base URL of each dependency's entry instance, in the env var it declares."""
    specs = tuple(specs)
    missing = [s for s in specs if addresses is None or s.name not in addresses]
    addresses = {**(addresses or {}), **(runtime.reserve(missing) if missing else {})}
    wired = []
    for spec in specs:
        service = config.services.get(spec.service)
        env = dict(spec.env)
        for dep in service.depends_on if service else ():
            if dep.env is None:
                continue
            target = entry.get(dep.target)
            if target is None:
                raise ConfigError(
                    f"dependency {dep.target!r} is not part of this plan",
                    file=str(config.path),
                    key=f"services.{spec.service}.depends_on.{dep.target}",
                )
            env[dep.env] = f"http://{addresses[target]}"
        wired.append(dataclasses.replace(spec, env=env))
    return tuple(wired)


def plan_default(config: Config, runtime: Runtime) -> Plan:
    """Baseline and candidate of every service side by side; service names resolve to the baseline."""
    specs: list[InstanceSpec] = []
    entry: dict[str, str] = {}
    for name in config.dependency_order():
        service = config.services[name]
        base = version_spec(config, service, service.baseline_version, 0, runtime.name)
        specs.append(base)
        entry[name] = base.name
        if service.candidate_version is not None:
            specs.append(version_spec(config, service, service.candidate_version, 0, runtime.name))
    return Plan(name="default", specs=wire(config, runtime, specs, entry), entry=entry)
