"""Cleanup without Ryuk: what a run leaves behind is removed by the run, or by the next one.

Three nets, from the inside out:

1. **Teardown.** ``Runtime.close()`` removes everything the runtime created. The front ends call it in
   teardown; :func:`install_signal_handlers` turns SIGTERM and SIGHUP into ``KeyboardInterrupt`` in the
   main thread so that teardown runs for them as it does for Ctrl-C, and :func:`deferred_signals` keeps
   a second signal from cutting a ``close()`` short.
2. **atexit.** Every runtime registers itself here until it is closed (or detached with :func:`forget`);
   an atexit hook closes whatever is still registered when the interpreter exits.
3. **Reaping.** Nothing helps against SIGKILL, OOM kills or a lost machine, so every container, network
   and volume carries labels naming its run, host and owner pid (process runs keep the same facts in a
   JSON record in their run directory). :func:`reap_dead_runs` — called when a session starts — removes
   what belongs to this host and whose owner pid is gone; :func:`remove_all` is ``compat down``.
   Resources of detached runs (``keep``) are only removed by ``compat down`` or ``include_kept``.

Only resources carrying our labels (``io.pytest-compat.managed=true`` *and* a run id *and* this host)
are ever touched; a container made from one of our images by hand inherits the image's managed label
but has no run id, so it is left alone.

The runtime registry is the module's one global: the atexit hook and the signal path have no other way
to find live runtimes. It holds strong references on purpose (not a WeakSet): a runtime that was dropped
without ``close()`` must still be closed at exit rather than silently collected with its containers
still running; ``close()`` and :func:`forget` unregister, so the set never holds a closed runtime.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from compat.runtime.base import (
    LABEL_HOST,
    LABEL_INSTANCE,
    LABEL_KEEP,
    LABEL_MANAGED,
    LABEL_PID,
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_SERVICE,
    LABEL_STARTED,
    LABEL_VERSION,
    Runtime,
)

Echo = Callable[[str], None]

#: Seconds a process group gets between SIGTERM and SIGKILL.
TERM_GRACE = 5.0
#: Seconds allowed between a process's start and its run's ``started`` stamp before the pid counts as
#: reused by another program (``started`` is truncated to the second; boot time is too).
PID_REUSE_SLACK = 3.0

_registry: set[Runtime] = set()
_registry_lock = threading.Lock()
_atexit_installed = False


# -- registry + atexit ----------------------------------------------------------------------------------


def register(runtime: Runtime) -> None:
    """Track ``runtime`` until it is closed; the first call installs the atexit hook."""
    global _atexit_installed
    with _registry_lock:
        _registry.add(runtime)
        if not _atexit_installed:
            atexit.register(close_all)
            _atexit_installed = True


def forget(runtime: Runtime) -> None:
    """Stop tracking ``runtime`` (closed, or detached: ``compat up --detach`` leaves it running)."""
    with _registry_lock:
        _registry.discard(runtime)


def live_runtimes() -> list[Runtime]:
    with _registry_lock:
        return list(_registry)


def close_all() -> None:
    """Close every registered runtime (the atexit hook). Never raises: it runs at interpreter exit."""
    for runtime in live_runtimes():
        try:
            runtime.close()
        except BaseException as exc:  # at exit: report, and go on to the next runtime
            print(
                f"pytest-compat: closing the {runtime.name} runtime of run {runtime.context.run_id} at exit "
                f"failed: {type(exc).__name__}: {exc}; `compat down` removes what is left",
                file=sys.stderr,
            )
        finally:
            forget(runtime)


# -- signals --------------------------------------------------------------------------------------------

_HANDLED = ("SIGTERM", "SIGHUP")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def install_signal_handlers() -> bool:
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the main thread, so teardown runs.

    Returns False (and does nothing) off the main thread or on a platform without these signals.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    installed = False
    for name in _HANDLED:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, _raise_interrupt)
            installed = True
    return installed


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back while cleanup runs; re-raise KeyboardInterrupt afterwards.

    A second Ctrl-C during ``close()`` would otherwise abandon half-removed resources. Only possible in
    the main thread (elsewhere this does nothing: signals are delivered to the main thread anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Any] = {}
    for name in ("SIGINT", *_HANDLED):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, remember)
        except (ValueError, OSError):
            continue
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if received and sys.exc_info()[0] is None:
            raise KeyboardInterrupt(f"received {signal.Signals(received[0]).name} during cleanup")


# -- liveness -------------------------------------------------------------------------------------------


def _proc_start_time(pid: int) -> float | None:
    """Wall-clock start time of ``pid`` from /proc (Linux), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rpartition(")")[2].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether the process ``pid`` that stamped a run at ``started`` still runs.

    A zombie counts as dead, and so does a pid that now belongs to a process started after the run
    (pid reuse), when /proc can tell.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if _proc_state(pid) in ("Z", "X"):
        return False
    if started is not None:
        begun = _proc_start_time(pid)
        if begun is not None and begun > started + PID_REUSE_SLACK:
            return False
    return True


def _owner_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return True  # malformed: not provably dead, leave it
    try:
        started: float | None = float(labels.get(LABEL_STARTED, ""))
    except ValueError:
        started = None
    return pid_alive(pid, started)


# -- reports --------------------------------------------------------------------------------------------


@dataclass
class ReapReport:
    """What a reap or ``compat down`` removed (names / pids), and what it could not remove."""

    runs: set[str] = field(default_factory=set)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            len(self.containers)
            + len(self.networks)
            + len(self.volumes)
            + len(self.processes)
            + len(self.run_dirs)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": sorted(self.runs),
            "containers": self.containers,
            "networks": self.networks,
            "volumes": self.volumes,
            "processes": self.processes,
            "run_dirs": self.run_dirs,
            "errors": self.errors,
        }

    def summary(self) -> str:
        if not self.total and not self.errors:
            return "nothing to remove"
        parts = [
            f"{len(items)} {noun}"
            for items, noun in (
                (self.containers, "container(s)"),
                (self.networks, "network(s)"),
                (self.volumes, "volume(s)"),
                (self.processes, "process(es)"),
                (self.run_dirs, "process run dir(s)"),
            )
            if items
        ]
        text = f"removed {', '.join(parts) or 'nothing'} of {len(self.runs)} run(s)"
        if self.errors:
            text += f"; {len(self.errors)} could not be removed: " + "; ".join(self.errors)
        return text


# -- docker ---------------------------------------------------------------------------------------------

_HOSTNAME = socket.gethostname()


def _docker_client(timeout: float = 3.0) -> Any | None:
    """A docker SDK client when an engine answers within ``timeout``, else None (nothing to reap)."""
    from compat.runtime import engine_problem

    if engine_problem(timeout) is not None:
        return None
    import docker  # type: ignore[import-untyped]

    try:
        return docker.from_env(timeout=60)
    except docker.errors.DockerException:
        return None


def _ours(labels: dict[str, str] | None, project: str | None, run_id: str | None) -> bool:
    labels = labels or {}
    return (
        labels.get(LABEL_MANAGED) == "true"
        and bool(labels.get(LABEL_RUN))
        and labels.get(LABEL_HOST) == _HOSTNAME
        and (project is None or labels.get(LABEL_PROJECT) == project)
        and (run_id is None or labels.get(LABEL_RUN) == run_id)
    )


def _sweep_docker(
    client: Any,
    report: ReapReport,
    *,
    project: str | None,
    run_id: str | None,
    select: Callable[[dict[str, str]], bool],
) -> None:
    from docker.errors import APIError, NotFound  # type: ignore[import-untyped]

    filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_HOST}={_HOSTNAME}"]}
    if project is not None:
        filters["label"].append(f"{LABEL_PROJECT}={project}")
    if run_id is not None:
        filters["label"].append(f"{LABEL_RUN}={run_id}")

    def wanted(labels: dict[str, str] | None) -> bool:
        return _ours(labels, project, run_id) and select(labels or {})

    # containers first: networks and volumes in use cannot be removed
    for info in client.api.containers(all=True, filters=filters):
        labels = info.get("Labels") or {}
        if not wanted(labels):
            continue
        name = (info.get("Names") or [info["Id"][:12]])[0].lstrip("/")
        try:
            client.api.remove_container(info["Id"], force=True, v=True)
        except NotFound:
            continue
        except APIError as exc:
            report.errors.append(f"container {name}: {exc.explanation or exc}")
            continue
        report.containers.append(name)
        report.runs.add(labels[LABEL_RUN])
    # then networks and volumes, which are removed and recorded alike
    networks = [(str(i.get("Name")), i["Id"], i) for i in client.api.networks(filters=filters)]
    volume_list = client.api.volumes(filters=filters).get("Volumes") or []
    volumes = [(str(i["Name"]), i["Name"], i) for i in volume_list]
    for kind, items, remove, removed in (
        ("network", networks, client.api.remove_network, report.networks),
        ("volume", volumes, client.api.remove_volume, report.volumes),
    ):
        for name, ident, info in items:
            labels = info.get("Labels") or {}
            if not wanted(labels):
                continue
            try:
                remove(ident)
            except NotFound:
                continue
            except APIError as exc:
                report.errors.append(f"{kind} {name}: {exc.explanation or exc}")
                continue
            removed.append(name)
            report.runs.add(labels[LABEL_RUN])


# -- process runs ---------------------------------------------------------------------------------------


def _process_is_ours(pid: int, run_id: str) -> bool:
    """The process ``pid`` was started by run ``run_id`` (its environment says so), when /proc can tell."""
    from compat.runtime.process import RUN_ID_ENV

    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (not Linux): trust the record
    except OSError:
        return False
    return f"{RUN_ID_ENV}={run_id}".encode() in environ.split(b"\0")


def kill_process_groups(pids: list[int], run_id: str, *, grace: float = TERM_GRACE) -> list[int]:
    """SIGTERM each recorded process group of ``run_id`` that is still ours, SIGKILL what remains after
    ``grace`` seconds. Returns the pids that were signalled."""
    signalled = []
    for pid in pids:
        if pid_alive(pid) and _process_is_ours(pid, run_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
                signalled.append(pid)
    deadline = time.monotonic() + grace
    waiting = list(signalled)
    pause = threading.Event()
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if pid_alive(pid)]
        if waiting:
            pause.wait(0.02)
    for pid in signalled:  # stragglers: the leader ignored SIGTERM, or left children in its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return signalled


def _sweep_process_runs(
    report: ReapReport,
    *,
    project: str | None,
    run_id: str | None,
    select: Callable[[dict[str, Any]], bool],
) -> None:
    from compat.runtime.process import process_base_dir, read_record

    base = process_base_dir(create=False)
    if base is None:
        return
    for run_dir in sorted(base.iterdir()):
        record = read_record(run_dir)
        if record is None or record.get("host") != _HOSTNAME:
            continue
        if project is not None and record.get("project") != project:
            continue
        if run_id is not None and record.get("run_id") != run_id:
            continue
        if not select(record):
            continue
        pids = [int(i["pid"]) for i in (record.get("instances") or {}).values() if "pid" in i]
        report.processes.extend(kill_process_groups(pids, str(record.get("run_id"))))
        shutil.rmtree(run_dir, ignore_errors=True)
        if run_dir.exists():
            report.errors.append(f"run dir {run_dir}: could not be removed")
        else:
            report.run_dirs.append(str(run_dir))
            report.runs.add(str(record.get("run_id")))


def _record_is_leftover(record: dict[str, Any], include_kept: bool) -> bool:
    if record.get("keep") and not include_kept:
        return False
    try:
        return not pid_alive(int(record["pid"]), float(record.get("started", 0)) or None)
    except (KeyError, TypeError, ValueError):
        return False


# -- entry points ---------------------------------------------------------------------------------------


def reap_dead_runs(
    *, include_kept: bool = False, project: str | None = None, echo: Echo | None = print
) -> ReapReport:
    """Remove what runs on this host whose owner process is gone left behind (containers, networks,
    volumes, process groups, process run dirs). Kept (detached) runs only with ``include_kept``.

    Prints one line through ``echo`` when something was removed. Without a Docker engine only process
    runs are reaped.
    """
    report = ReapReport()

    def leftover(labels: dict[str, str]) -> bool:
        if labels.get(LABEL_KEEP) == "true" and not include_kept:
            return False
        return not _owner_alive(labels)

    client = _docker_client()
    if client is not None:
        try:
            _sweep_docker(client, report, project=project, run_id=None, select=leftover)
        finally:
            client.close()
    _sweep_process_runs(
        report, project=project, run_id=None, select=lambda r: _record_is_leftover(r, include_kept)
    )
    if echo is not None and (report.total or report.errors):
        echo(f"reaped leftovers of dead runs: {report.summary()}")
    return report


def remove_all(project: str | None = None, run_id: str | None = None) -> ReapReport:
    """``compat down``: remove every resource of this host's runs (of ``project`` / ``run_id`` if given),
    live or dead, kept or not."""
    report = ReapReport()
    client = _docker_client()
    if client is not None:
        try:
            _sweep_docker(client, report, project=project, run_id=run_id, select=lambda labels: True)
        finally:
            client.close()
    _sweep_process_runs(report, project=project, run_id=run_id, select=lambda record: True)
    return report


def list_managed() -> list[dict[str, str]]:
    """``compat status``: one row per container, network, volume and process of this host's runs."""
    rows: list[dict[str, str]] = []
    client = _docker_client()
    if client is not None:
        try:
            rows.extend(_docker_rows(client))
        finally:
            client.close()
    rows.extend(_process_rows())
    return sorted(rows, key=lambda r: (r["project"], r["run"], r["kind"], r["name"]))


def _state(labels: dict[str, str], base: str) -> str:
    notes = [base] if base else []
    if labels.get(LABEL_KEEP) == "true":
        notes.append("kept")
    if not _owner_alive(labels):
        notes.append("owner gone")
    return ", ".join(notes)


def _docker_rows(client: Any) -> list[dict[str, str]]:
    filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_HOST}={_HOSTNAME}"]}
    rows = []

    def row(kind: str, name: str, labels: dict[str, str], url: str = "", state: str = "") -> dict[str, str]:
        return {
            "run": labels.get(LABEL_RUN, ""),
            "project": labels.get(LABEL_PROJECT, ""),
            "kind": kind,
            "name": name,
            "service": labels.get(LABEL_SERVICE, ""),
            "version": labels.get(LABEL_VERSION, ""),
            "role": labels.get(LABEL_ROLE, ""),
            "url": url,
            "state": _state(labels, state),
        }

    for info in client.api.containers(all=True, filters=filters):
        labels = info.get("Labels") or {}
        if not _ours(labels, None, None):
            continue
        published = [p for p in info.get("Ports") or [] if p.get("PublicPort")]
        url = f"http://{published[0]['IP']}:{published[0]['PublicPort']}" if published else ""
        name = labels.get(LABEL_INSTANCE) or (info.get("Names") or [""])[0].lstrip("/")
        rows.append(row("container", name, labels, url, str(info.get("State", ""))))
    for info in client.api.networks(filters=filters):
        labels = info.get("Labels") or {}
        if _ours(labels, None, None):
            rows.append(row("network", str(info.get("Name")), labels))
    for info in client.api.volumes(filters=filters).get("Volumes") or []:
        labels = info.get("Labels") or {}
        if _ours(labels, None, None):
            rows.append(row("volume", str(info.get("Name")), labels))
    return rows


def _process_rows() -> list[dict[str, str]]:
    from compat.runtime.process import process_base_dir, read_record

    base = process_base_dir(create=False)
    if base is None:
        return []
    rows = []
    for run_dir in sorted(base.iterdir()):
        record = read_record(run_dir)
        if record is None or record.get("host") != _HOSTNAME:
            continue
        owner = {
            LABEL_PID: str(record.get("pid", "")),
            LABEL_STARTED: str(record.get("started", "")),
            LABEL_KEEP: "true" if record.get("keep") else "false",
        }
        for name, inst in (record.get("instances") or {}).items():
            pid = int(inst.get("pid", 0))
            running = pid_alive(pid) and _process_is_ours(pid, str(record.get("run_id")))
            rows.append(
                {
                    "run": str(record.get("run_id", "")),
                    "project": str(record.get("project", "")),
                    "kind": "process",
                    "name": name,
                    "service": str(inst.get("service", "")),
                    "version": str(inst.get("version", "")),
                    "role": str(inst.get("role", "")),
                    "url": str(inst.get("url", "")),
                    "state": _state(owner, f"running (pid {pid})" if running else "exited"),
                }
            )
    return rows
