"""``compat repro FINDING_ID --report REPORT.json``: bring up a finding's stage again and replay its request.

The report records what is needed: the config file, the candidates, the seed and the runtime of the run,
and per finding its stage run, the request (method, URL, headers, body) and the answer it got. The request's
URL pointed at the run's topology, which is gone; the replay keeps its path and query and sends it to the
same place in a fresh topology of the same stage: the box of the version that answered (``details.target``
when the check recorded one) or else the service's entry point.

Reproduced means the fresh answer shows the same problem: the same status, or for a status the finding did
not record, a failure status (>= 500, or the same 4xx). Exit codes: 1 reproduced (still broken), 0 not
reproduced, 2 the stage could not be started, 4 bad arguments (unknown finding, unreadable report).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from compat.errors import UsageError
from compat.gate.exitcodes import ExitCode

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Replay:
    finding: Mapping[str, Any]
    stage: str | None
    service: str
    target: str | None  # version or role to address directly; None: the entry point


def find(report: Mapping[str, Any], finding_id: str, path: Path) -> Replay:
    """The finding whose id is (or starts with, if unambiguous) ``finding_id``."""
    findings = [f for f in report.get("findings", []) if isinstance(f, Mapping)]
    matches = [f for f in findings if str(f.get("id", "")).startswith(finding_id)] if finding_id else []
    if len(matches) != 1:
        known = (
            ", ".join(f"{f.get('id')} ({f.get('check')}/{f.get('rule')})" for f in findings[:20]) or "none"
        )
        what = "matches several findings" if matches else "matches no finding"
        raise UsageError(f"{path}: finding id {finding_id!r} {what}; findings in this report: {known}")
    finding = matches[0]
    request = finding.get("request")
    if not isinstance(request, Mapping) or not request.get("url"):
        raise UsageError(
            f"finding {finding.get('id')} ({finding.get('check')}/{finding.get('rule')}) has no request to "
            "replay (static findings such as spec-diff are reproduced by `compat diff OLD NEW`)"
        )
    details = finding.get("details") or {}
    target = details.get("target") if isinstance(details, Mapping) else None
    versions = finding.get("versions") or {}
    service = (details.get("service") if isinstance(details, Mapping) else None) or next(iter(versions), None)
    if not service:
        raise UsageError(f"finding {finding.get('id')} names no service")
    return Replay(finding, finding.get("stage"), str(service), str(target) if target else None)


def replay(report_path: Path, finding_id: str, *, echo: Echo = print, runtime: str | None = None) -> int:
    from compat.report import load_report
    from compat.session import CompatSession, Options, resolve_config

    report = load_report(report_path)  # validated against the report schema; errors name the file
    item = find(report, finding_id, report_path)
    run = report.get("run") or {}
    config_path = run.get("config")
    options = Options(
        config=Path(config_path) if config_path else None,
        candidates=dict(run.get("candidates") or {}),
        runtime=runtime or run.get("runtime"),
        seed=run.get("seed"),
        stages=(str(item.stage).split(":")[0],) if item.stage else (),
        checks=(),  # no background traffic: the replay is the only request
    )
    config = resolve_config(Path.cwd(), options)
    session = CompatSession(config, options, echo=echo)
    try:
        topology = session.topology(item.stage or "default")
        details = item.finding.get("details") or {}
        steps = details.get("steps") if isinstance(details, Mapping) else None
        threads: dict[str, str] = {}
        if isinstance(steps, list) and steps:
            for step in steps[:-1]:  # the flow up to the failing step, ids threaded through
                if not isinstance(step, Mapping) or not isinstance(step.get("request"), Mapping):
                    continue
                target = step.get("target")
                base = topology.url(item.service, str(target) if target else None)
                answer = _send(step["request"], base, echo, config.redact_headers, threads)
                _thread(step.get("response"), answer, threads)
        base = topology.url(item.service, item.target)
        answer = _send(item.finding["request"], base, echo, config.redact_headers, threads)
        return _judge(item, answer, echo)
    finally:
        session.close()


def _thread(recorded: Any, answer: Any, threads: dict[str, str]) -> None:
    """Values the recorded answer had (ids, cursors) -> what the fresh answer has at the same place."""
    old = recorded.get("body") if isinstance(recorded, Mapping) else None
    try:
        new = answer.json()
    except ValueError:
        return
    for path, value in _leaves(old).items():
        fresh = _leaves(new).get(path)
        if isinstance(value, str) and isinstance(fresh, str) and len(value) >= 4 and value != fresh:
            threads[value] = fresh


def _leaves(doc: Any, path: str = "$") -> dict[str, Any]:
    if isinstance(doc, Mapping):
        return {k: v for key, val in doc.items() for k, v in _leaves(val, f"{path}.{key}").items()}
    if isinstance(doc, list):
        return {k: v for i, val in enumerate(doc) for k, v in _leaves(val, f"{path}[{i}]").items()}
    return {path: doc}


def _apply(text: str, threads: Mapping[str, str]) -> str:
    for old, new in threads.items():
        text = text.replace(old, new)
    return text


def _send(
    request: Mapping[str, Any], base: str, echo: Echo, redact: tuple[str, ...], threads: Mapping[str, str]
) -> Any:
    import requests

    from compat.checks.finding import REDACTED, to_curl
    from compat.client import answered_by

    parts = urlsplit(_apply(str(request["url"]), threads))
    url = base.rstrip("/") + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        str(k): str(v)
        for k, v in (request.get("headers") or {}).items()
        if v != REDACTED and str(k).lower() not in ("host", "content-length")
    }
    body = request.get("body")
    data = body if isinstance(body, str) or body is None else json.dumps(body)
    if data is not None:
        data = _apply(data, threads)
    method = str(request.get("method", "GET")).upper()
    echo(f"replaying {method} {url}")
    echo(f"  {to_curl(method, url, headers, data, redact=redact)}")
    answer = requests.request(method, url, headers=headers, data=data, timeout=30)
    echo(f"  answer: {answer.status_code} from {answered_by(answer)}")
    echo("  " + answer.text[:500].replace("\n", "\n  "))
    return answer


def _judge(item: Replay, answer: Any, echo: Echo) -> int:
    echo(f"finding {item.finding.get('id')}: {item.finding.get('check')}/{item.finding.get('rule')}")
    echo(f"  {item.finding.get('message')}")
    recorded = (item.finding.get("response") or {}).get("status")
    if recorded is not None:
        same = answer.status_code == recorded
        echo(f"recorded answer: {recorded} -> {'reproduced' if same else 'not reproduced'}")
    else:
        same = answer.status_code >= 500
        echo(
            f"no recorded status; {'reproduced' if same else 'not reproduced'} (a 5xx counts as the failure)"
        )
    return ExitCode.FAIL if same else ExitCode.PASS
