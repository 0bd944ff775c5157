"""``python -m compat.router --listen HOST:PORT --config FILE_OR_JSON``

``--config`` is a JSON object or the path of a JSON file; without it the ``COMPAT_ROUTER_CONFIG`` environment
variable is read (same two forms). A bad config or option exits with code 2 and a message naming the key, the
bad value and the valid choices; a port that cannot be bound exits with 1. SIGTERM and SIGINT stop the router
cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .config import RouterConfig, RouterConfigError, split_address
from .proxy import Router

CONFIG_ENV = "COMPAT_ROUTER_CONFIG"
PROG = "python -m compat.router"


def load_config(text: str, origin: str) -> RouterConfig:
    """A JSON object (text starting with ``{``) or the path of a JSON file -> validated config."""
    source = text.strip()
    if not source.startswith("{"):
        path = Path(source)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RouterConfigError(
                "", text, f"{origin} is neither a JSON object nor a readable file ({exc.strerror or exc})"
            ) from None
        origin = str(path)
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise RouterConfigError("", None, f"{origin} is not valid JSON: {exc}") from None
    return RouterConfig.from_dict(data)


SWITCH_INTERVAL = 0.05  # seconds (CPython's default: 0.005)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="The pytest-compat mixing router.")
    parser.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on (default %(default)s)"
    )
    parser.add_argument("--config", help=f"JSON object or path of a JSON file (default: ${CONFIG_ENV})")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    try:
        host, port = split_address(args.listen)
    except ValueError:
        parser.error(f"--listen: {args.listen!r} is not HOST:PORT (e.g. 0.0.0.0:8080)")
    text = args.config if args.config is not None else os.environ.get(CONFIG_ENV)
    if not text:
        parser.error(f"no config: pass --config JSON_OR_FILE or set {CONFIG_ENV}")
    origin = "--config" if args.config is not None else f"${CONFIG_ENV}"
    try:
        config = load_config(text, origin)
    except RouterConfigError as exc:
        parser.exit(2, f"{PROG}: error: {exc}\n")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Handler threads block in recv/send (releasing the GIL) between requests; a longer switch interval keeps
    # a thread that holds the GIL from being preempted mid-request by another that only wants to block again.
    sys.setswitchinterval(SWITCH_INTERVAL)
    router = Router(config, access_log=args.access_log)
    try:
        router.start(host, port)
    except OSError as exc:
        print(f"{PROG}: error: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    upstreams = ", ".join(f"{u.name}={u.address} ({u.version})" for u in config.upstreams)
    print(
        f"compat router listening on {router.url} policy={config.policy} upstreams: {upstreams}", flush=True
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        router.stop()
    print("compat router stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
