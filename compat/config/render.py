"""The resolved configuration, for people (:func:`render_text`) and programs (:func:`describe`).

Both back ``compat config`` (``--json`` prints :func:`describe`). Paths are shown relative to the config's
directory when they are below it. Values of env vars and build args whose names look secret (``TOKEN``,
``PASSWORD``, ``SECRET``, ``KEY``, ``CREDENTIAL``, ``AUTH``) are shown as ``***``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from compat.config.model import BuildSpec, Config, Service, Stage, Version

REDACTED = "***"
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)


def describe(config: Config) -> dict[str, object]:
    """A JSON-serialisable picture of ``config`` (plain dicts, lists, strings, numbers, None)."""

    def rel(path: Path | None) -> str | None:
        return _relative(config, path) if path is not None else None

    return {
        "project": config.project,
        "file": str(config.path),
        "root": str(config.root),
        "runtime": config.runtime,
        "seed": config.seed,
        "startup_timeout": config.startup_timeout,
        "compose": rel(config.compose_file),
        "services": {name: _describe_service(config, svc) for name, svc in config.services.items()},
        "dependency_order": config.dependency_order(),
        "state": {
            name: {"kind": st.kind, "mount": st.mount if st.kind == "volume" else None, "service": st.service}
            for name, st in config.state.items()
        },
        "stages": {name: _describe_stage(stage) for name, stage in config.stages.items()},
        "contracts": [rel(p) for p in config.contracts],
        "tests": [rel(p) for p in config.tests],
        "redact_headers": list(config.redact_headers),
    }


def _describe_service(config: Config, svc: Service) -> dict[str, object]:
    return {
        "port": svc.port,
        "health": svc.health,
        "health_timeout": svc.health_timeout,
        "replicas": svc.replicas,
        "baseline": svc.baseline,
        "candidate": svc.candidate,
        "state": svc.state,
        "depends_on": [{"service": d.target, "env": d.env} for d in svc.depends_on],
        "env": _redact(svc.env),
        "provider_states": (
            {"url": svc.provider_states.url}
            if svc.provider_states and svc.provider_states.url
            else {"callable": svc.provider_states.callable}
            if svc.provider_states
            else None
        ),
        "contracts": [_relative(config, p) for p in svc.contracts],
        "from_compose": svc.from_compose,
        "versions": {
            name: {
                "role": svc.role_of(name),
                "source": _describe_source(config, version),
                "spec": _relative(config, version.spec) if version.spec else None,
                "env": _redact(version.env),
            }
            for name, version in svc.versions.items()
        },
    }


def _describe_source(config: Config, version: Version) -> dict[str, object]:
    source: dict[str, object] = {}
    if version.image:
        source["image"] = version.image
    if version.build:
        source["build"] = {
            "context": _relative(config, version.build.context),
            "dockerfile": version.build.dockerfile,
            "args": _redact(version.build.args),
            "target": version.build.target,
        }
    if version.command:
        source["command"] = list(version.command)
        source["cwd"] = _relative(config, version.cwd or config.root)
    return source


def _describe_stage(stage: Stage) -> dict[str, object]:
    return {
        "kind": stage.kind,
        "enabled": stage.enabled,
        "services": list(stage.services),
        "policy": stage.policy,
        "weight": stage.weight,
        "replicas": stage.replicas,
        "chain": list(stage.chain),
        "seed": stage.seed,
    }


# -- text -----------------------------------------------------------------------------------------------


def render_text(config: Config) -> str:
    """The configuration as aligned tables: services and versions (dependencies first), state, stages."""
    lines = [
        f"config   {config.path}",
        (
            f"project  {config.project}   runtime {config.runtime}   seed {config.seed}   "
            f"startup timeout {config.startup_timeout:g}s"
        ),
    ]
    if config.compose_file:
        lines.append(f"compose  {_relative(config, config.compose_file)}")
    lines += ["", "services (dependencies first)"]
    rows: list[list[str]] = []
    for name in config.dependency_order():
        rows += _service_rows(config, config.services[name])
    lines += _align(rows, indent=2)
    lines += ["", "state"]
    lines += _align(
        [
            [
                name,
                st.kind,
                f"mounted at {st.mount}" if st.kind == "volume" else f"service {st.service}",
                "used by "
                + (", ".join(s.name for s in config.services.values() if s.state == name) or "nothing"),
            ]
            for name, st in config.state.items()
        ],
        indent=2,
    ) or ["  (none)"]
    lines += ["", "stages"]
    lines += _align([_stage_row(stage) for stage in config.stages.values()], indent=2) or [
        "  (none configured; the default plan runs every baseline and candidate side by side)"
    ]
    for title, paths in (("contracts", config.contracts), ("tests", config.tests)):
        if paths:
            lines += ["", title, *(f"  {_relative(config, p)}" for p in paths)]
    return "\n".join(lines) + "\n"


def _service_rows(config: Config, svc: Service) -> list[list[str]]:
    facts = [f"port {svc.port}", f"health {svc.health}", f"replicas {svc.replicas}"]
    if svc.state:
        facts.append(f"state {svc.state}")
    if svc.depends_on:
        deps = ", ".join(f"{d.target} ({d.env})" if d.env else d.target for d in svc.depends_on)
        facts.append(f"depends on {deps}")
    if svc.from_compose:
        facts.append("from compose")
    rows = [[svc.name, "", "   ".join(facts)]]
    for name, version in svc.versions.items():
        source = "; ".join(_source_text(config, version))
        if version.spec:
            source += f"; spec {_relative(config, version.spec)}"
        rows.append([f"  {name}", svc.role_of(name), source])
    return rows


def _source_text(config: Config, version: Version) -> list[str]:
    parts = []
    if version.image:
        parts.append(f"image {version.image}")
    if version.build:
        parts.append(f"build {_build_text(config, version.build)}")
    if version.command:
        cwd = f" (in {_relative(config, version.cwd)})" if version.cwd else ""
        parts.append(f"command {_argv_text(version.command)}{cwd}")
    return parts


def _argv_text(argv: Sequence[str]) -> str:
    """An argv as one line; only arguments with spaces or quotes are quoted (``{port}`` stays readable)."""
    return " ".join(shlex.quote(arg) if not arg or re.search(r"[\s'\"\\]", arg) else arg for arg in argv)


def _build_text(config: Config, build: BuildSpec) -> str:
    extras = [] if build.dockerfile == "Dockerfile" else [build.dockerfile]
    if build.target:
        extras.append(f"target {build.target}")
    if build.args:
        extras.append("args " + " ".join(f"{k}={v}" for k, v in _redact(build.args).items()))
    return _relative(config, build.context) + (f" ({', '.join(extras)})" if extras else "")


def _stage_row(stage: Stage) -> list[str]:
    facts = [
        f"services {', '.join(stage.services) or '(every service with a candidate)'}",
        f"policy {stage.policy}",
    ]
    if stage.policy == "weighted":
        facts.append(f"weight {stage.weight:g}")
    if stage.replicas is not None:
        facts.append(f"replicas {stage.replicas}")
    if stage.chain:
        facts.append(f"chain {' -> '.join(stage.chain)}")
    if stage.seed is not None:
        facts.append(f"seed {stage.seed}")
    return [stage.name, stage.kind if stage.enabled else f"{stage.kind} (disabled)", "   ".join(facts)]


# -- helpers --------------------------------------------------------------------------------------------


def _relative(config: Config, path: Path) -> str:
    try:
        return str(path.relative_to(config.root)) or "."
    except ValueError:
        return str(path)


def _redact(values: Mapping[str, str]) -> dict[str, str]:
    return {k: REDACTED if _SECRET_NAME.search(k) else v for k, v in values.items()}


def _align(rows: Sequence[Sequence[str]], *, indent: int) -> list[str]:
    """Rows as left-aligned columns (the last column is not padded)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        (
            " " * indent
            + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
            + "  "
            + row[-1]
        ).rstrip()
        for row in rows
    ]
