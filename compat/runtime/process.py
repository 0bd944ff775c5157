"""The process runtime: every instance is a local subprocess listening on a 127.0.0.1 port.

It needs no container engine, which makes it the fallback when no Docker engine answers and the quick
loop on a laptop. Same interface and guarantees as the docker runtime:

- ``reserve()`` allocates a free loopback port per instance name (and hands the same one out again until
  that instance is started), so dependants are wired before anything starts;
- ``start()`` spawns every command (argv only, never a shell; placeholders ``{port}`` ``{host}``
  ``{state_dir}`` ``{service}`` ``{version}`` substituted per item), then waits on the HTTP health paths
  in parallel; an exit before ready fails at once with the exit code and the last log lines; all or
  nothing;
- each instance gets its own session / process group (``start_new_session``), so ``stop()`` can SIGTERM
  the whole group, then SIGKILL it after :data:`~compat.runtime.cleanup.TERM_GRACE` seconds;
- shared state is a directory per state name inside the run directory, kept across ``stop()`` and
  removed by ``close()``.

The run directory (``{tmp}/pytest-compat-{uid}/{run_id}-{worker}[-{scope}]/``) holds the logs, the state and
``run.json``: who owns the run (pid, host, start time, keep) and the pid of every live instance, so a
later run can reap a SIGKILLed run's processes (:mod:`compat.runtime.cleanup`). Every child also gets
``COMPAT_RUN_ID`` in its environment, which the reaper checks before it signals a recorded pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat.config.model import COMMAND_PLACEHOLDERS
from compat.errors import ConfigError, InfrastructureError, StartupError
from compat.runtime.base import Instance, InstanceSpec, Progress, RunContext, Runtime
from compat.runtime.parallel import Cancelled, first_error, run_parallel

RUN_ID_ENV = "COMPAT_RUN_ID"
INSTANCE_ENV = "COMPAT_INSTANCE"
RECORD_NAME = "run.json"
HOST = "127.0.0.1"
LOG_TAIL = 20
_ENV_PLACEHOLDER = re.compile(r"\{(" + "|".join(COMMAND_PLACEHOLDERS) + r")\}")


def process_base_dir(*, create: bool = True) -> Path | None:
    """``{tmp}/pytest-compat-{uid}``: private to this user (0700, owned by us, not a symlink).

    With ``create=False`` returns None when it does not exist yet.
    """
    base = Path(tempfile.gettempdir()) / f"pytest-compat-{os.getuid()}"
    if create:
        base.mkdir(mode=0o700, exist_ok=True)
    elif not base.exists():
        return None
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise InfrastructureError(
            f"{base} is not a directory owned by uid {os.getuid()}; remove it (pytest-compat keeps process "
            "runs' logs and state there)"
        )
    return base


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a process run directory, or None when missing or unreadable."""
    try:
        data = json.loads((run_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"the process was killed by {signal.Signals(-returncode).name}"
    return f"the process exited with code {returncode}"


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    instance: Instance
    port: int
    log: Path


class ProcessRuntime(Runtime):
    """Instances as local subprocesses on loopback ports. See the module docstring."""

    name = "process"

    def __init__(
        self, context: RunContext, *, progress: Progress | None = None, base_dir: Path | None = None
    ) -> None:
        super().__init__(context, progress=progress)
        self._base_dir = base_dir
        root = base_dir or Path(tempfile.gettempdir()) / f"pytest-compat-{os.getuid()}"
        self.run_dir = root / context.prefix.removeprefix("compat-")
        self._lock = threading.RLock()
        self._reserved: dict[str, int] = {}  # name -> port, handed out by reserve(), not started yet
        self._ports: set[int] = set()  # every port reserved or in use, so none is handed out twice
        self._running: dict[str, _Proc] = {}
        self._starting: set[str] = set()  # names a start() in progress owns
        self._logs: dict[str, Path] = {}  # ident (pid) -> log file, kept after stop for logs()
        self._created = False
        self._closed = False
        from compat.runtime.cleanup import TERM_GRACE, register

        self.term_grace = TERM_GRACE  # seconds between SIGTERM and SIGKILL in stop()

        register(self)

    # -- addresses --------------------------------------------------------------------------------------

    def _allocate_port(self) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in self._ports:
                self._ports.add(port)
                return port
        raise InfrastructureError(f"could not find a free {HOST} port after 100 tries")

    def reserve(self, specs: Sequence[InstanceSpec]) -> dict[str, str]:
        """``127.0.0.1:PORT`` per instance: the running instance's port, else a reservation (stable until
        the instance starts)."""
        addresses = {}
        with self._lock:
            for spec in specs:
                if spec.name in self._running:
                    port = self._running[spec.name].port
                elif spec.name in self._reserved:
                    port = self._reserved[spec.name]
                else:
                    port = self._reserved[spec.name] = self._allocate_port()
                addresses[spec.name] = f"{HOST}:{port}"
        return addresses

    # -- run directory ----------------------------------------------------------------------------------

    def _ensure_run_dir(self) -> None:
        if self._created:
            return
        if self._base_dir is None:
            process_base_dir(create=True)
        else:
            self._base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("logs", "state", "scratch"):
            (self.run_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._created = True
        self._write_record()

    def _write_record(self) -> None:
        if not self._created or not self.run_dir.exists():
            return
        ctx = self.context
        record = {
            "format": 1,
            "run_id": ctx.run_id,
            "project": ctx.project,
            "worker": ctx.worker,
            "pid": ctx.pid,
            "host": ctx.host,
            "keep": ctx.keep,
            "started": ctx.started,
            "instances": {
                name: {
                    "pid": p.popen.pid,
                    "port": p.port,
                    "url": p.instance.url,
                    "service": p.instance.spec.service,
                    "version": p.instance.spec.version,
                    "role": p.instance.spec.role,
                    "log": str(p.log),
                }
                for name, p in self._running.items()
            },
        }
        tmp = self.run_dir / f".{RECORD_NAME}.{threading.get_ident()}"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, self.run_dir / RECORD_NAME)

    def state_dir(self, state_name: str) -> Path:
        """Where the shared state ``state_name`` lives (replaces ``{state_dir}``)."""
        return self.run_dir / "state" / state_name

    # -- start ------------------------------------------------------------------------------------------

    def _validate(self, specs: Sequence[InstanceSpec]) -> None:
        self.check_unique(specs, {*self._running, *self._starting})
        for spec in specs:
            if not spec.command:
                raise ConfigError(
                    f"the process runtime needs a `command` for this version (instance {spec.name!r})",
                    key=f"services.{spec.service}.versions.{spec.version}.command",
                    hint="add command = [...] with {port} (and {state_dir} for shared state), "
                    "or use the docker runtime",
                )

    def _argv(self, spec: InstanceSpec, values: dict[str, str]) -> list[str]:
        assert spec.command is not None
        argv = []
        for index, item in enumerate(spec.command):
            try:
                argv.append(item.format_map(values))
            except (KeyError, ValueError, IndexError) as exc:
                raise ConfigError(
                    f"bad placeholder in command item {item!r} ({type(exc).__name__}: {exc})",
                    key=f"services.{spec.service}.versions.{spec.version}.command[{index}]",
                    hint="placeholders: "
                    + " ".join("{" + p + "}" for p in COMMAND_PLACEHOLDERS)
                    + "; write {{ and }} for literal braces",
                ) from exc
        return argv

    def _log_path(self, name: str) -> Path:
        path = self.run_dir / "logs" / f"{name}.log"
        generation = 1
        while path.exists():
            generation += 1
            path = self.run_dir / "logs" / f"{name}.{generation}.log"
        return path

    def _spawn(self, spec: InstanceSpec) -> Instance:
        with self._lock:
            port = self._reserved.pop(spec.name, None) or self._allocate_port()
        if spec.state is not None:
            state_dir = self.state_dir(spec.state.name)
        else:
            state_dir = self.run_dir / "scratch" / spec.name
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        values = {
            "port": str(port),
            "host": HOST,
            "state_dir": str(state_dir),
            "service": spec.service,
            "version": spec.version,
        }
        argv = self._argv(spec, values)
        env = dict(os.environ)
        env.update({k: _ENV_PLACEHOLDER.sub(lambda m: values[m.group(1)], v) for k, v in spec.env.items()})
        env.update({"PORT": str(port), RUN_ID_ENV: self.context.run_id, INSTANCE_ENV: spec.name})
        if spec.cwd is not None and not spec.cwd.is_dir():
            self._release(port)
            raise StartupError(
                spec.name,
                f"its working directory {str(spec.cwd)!r} does not exist",
                hint="`cwd` (default: the config file's directory) must be an existing directory",
            )
        log = self._log_path(spec.name)
        self.progress("start", f"{spec.name}: {shlex.join(argv)}")
        try:
            with log.open("ab") as out:
                popen = subprocess.Popen(
                    argv,
                    cwd=spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            self._release(port)
            raise StartupError(
                spec.name,
                f"cannot run {argv[0]!r}: {exc.strerror or exc}",
                status="not started",
                hint="command[0] must be an executable on PATH, or a path (relative paths resolve "
                f"against cwd {str(spec.cwd or Path.cwd())!r})",
            ) from exc
        instance = Instance(
            spec=spec, url=f"http://{HOST}:{port}", internal=f"{HOST}:{port}", ident=str(popen.pid)
        )
        with self._lock:
            self._running[spec.name] = _Proc(popen, instance, port, log)
            self._logs[instance.ident] = log
            self._write_record()
        return instance

    def _release(self, port: int) -> None:
        with self._lock:
            self._ports.discard(port)

    def _await_ready(self, instance: Instance, cancel: threading.Event) -> Instance:
        from compat.runtime.health import wait_healthy

        spec = instance.spec
        proc = self._running[spec.name].popen

        def alive() -> str | None:
            code = proc.poll()
            return None if code is None else describe_exit(code)

        if spec.health is None:
            gone = alive()
            if gone is None:
                self.progress("ready", f"{spec.name} at {instance.url} (no health path)")
                return instance
            raise self._failure(instance, gone, exited=True)
        path = spec.health if spec.health.startswith("/") else "/" + spec.health
        result = wait_healthy(
            instance.url + path, timeout=spec.health_timeout, alive=alive, alive_every=0.0, cancel=cancel
        )
        if result.ok:
            self.progress("ready", f"{spec.name} at {instance.url} ({result.elapsed:.2f} s)")
            return instance
        if result.outcome == "cancelled":
            raise Cancelled(spec.name)
        raise self._failure(instance, result.describe(spec.health_timeout), exited=result.outcome == "exited")

    def _failure(self, instance: Instance, reason: str, *, exited: bool) -> StartupError:
        spec = instance.spec
        proc = self._running[spec.name]
        code = proc.popen.poll()
        status = f"running (pid {proc.popen.pid})" if code is None else f"exited (exit code {code})"
        if exited:
            hint = f"the command ended on its own; full log: {proc.log}"
        else:
            hint = (
                f"the command must listen on {HOST}:{{port}} (here {proc.port}; $PORT says the same) and "
                f"answer GET {spec.health} with 2xx within health_timeout ({spec.health_timeout:g} s); "
                f"full log: {proc.log}"
            )
        return StartupError(spec.name, reason, status=status, logs=self.logs(instance, LOG_TAIL), hint=hint)

    def start(self, specs: Sequence[InstanceSpec]) -> list[Instance]:
        specs = list(specs)
        if not specs:
            return []
        with self._lock:
            if self._closed:
                raise InfrastructureError("this process runtime is closed; start a new one")
            self._validate(specs)
            self._ensure_run_dir()
            names = {s.name for s in specs}
            self._starting.update(names)
        started: list[Instance] = []
        cancel = threading.Event()
        try:
            for spec in specs:
                started.append(self._spawn(spec))
            errors = run_parallel(
                started, lambda inst: self._await_ready(inst, cancel), cancel, "compat-health"
            )
            if errors:
                raise first_error(errors)
        except BaseException:
            cancel.set()
            self.stop(started)
            raise
        finally:
            with self._lock:
                self._starting.difference_update(names)
        return started

    # -- stop -------------------------------------------------------------------------------------------

    def _terminate(self, proc: _Proc) -> None:
        popen = proc.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(self.term_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):  # unkillable (D state): give up
                    popen.wait(5)
        # children the app left in its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)

    def _stop_one(self, proc: _Proc) -> None:
        self._terminate(proc)
        self._release(proc.port)
        self.progress("stop", f"{proc.instance.name} (pid {proc.popen.pid})")

    def _stop_all(self, procs: list[_Proc]) -> None:
        errors = run_parallel(procs, self._stop_one, threading.Event(), "compat-stop")
        if errors:
            raise first_error(errors)

    def stop(self, instances: Sequence[Instance]) -> None:
        with self._lock:
            procs = [
                self._running.pop(i.name)
                for i in instances
                if i.name in self._running and self._running[i.name].instance.ident == i.ident
            ]
        try:
            self._stop_all(procs)
        finally:
            with self._lock:
                self._write_record()

    def logs(self, instance: Instance, tail: int = 50) -> list[str]:
        path = self._logs.get(instance.ident)
        if path is None:
            return []
        try:
            text = path.read_bytes().decode(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-tail:] if tail > 0 else []

    def close(self) -> None:
        from compat.runtime.cleanup import deferred_signals, forget

        with self._lock:
            self._closed = True
            procs = list(self._running.values())
            self._running.clear()
            self._reserved.clear()
        with deferred_signals():
            self._stop_all(procs)
            if self._created:
                shutil.rmtree(self.run_dir, ignore_errors=True)
                self._created = self.run_dir.exists()
        forget(self)
