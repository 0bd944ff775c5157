"""A harness process for the cleanup tests: starts one instance of app.py, reports, then hangs or exits.

    python harness.py KIND PROJECT MODE [BASE_IMAGE]

KIND is ``process`` or ``docker``; MODE is ``hang`` (install the signal handlers, print one JSON line,
wait forever, close in ``finally``) or ``exit`` (print, then return without closing: atexit must clean
up). The tests SIGTERM or SIGKILL it and look at what is left. ``COMPAT_HARNESS_HOST`` overrides the
host label (so that no other test session's reaper takes what a test means to reap itself).
"""

import dataclasses
import json
import os
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from compat.config.model import BuildSpec, State  # noqa: E402
from compat.runtime import select_runtime  # noqa: E402
from compat.runtime.base import InstanceSpec, RunContext  # noqa: E402
from compat.runtime.cleanup import install_signal_handlers  # noqa: E402


def main() -> None:
    kind, project, mode = sys.argv[1:4]
    base_image = sys.argv[4] if len(sys.argv) > 4 else "python:3.12-slim"
    state = State(name="notes", kind="volume", mount="/data")
    if kind == "process":
        spec = InstanceSpec(
            name="app-v1-0",
            service="app",
            version="v1",
            role="baseline",
            port=8080,
            state=state,
            command=(
                sys.executable,
                str(HERE / "app.py"),
                "--port",
                "{port}",
                "--host",
                "{host}",
                "--state",
                "{state_dir}",
                "--version",
                "{version}",
            ),
        )
    else:
        spec = InstanceSpec(
            name="app-v1-0",
            service="app",
            version="v1",
            role="baseline",
            port=8080,
            state=state,
            build=BuildSpec(context=HERE, args={"BASE_IMAGE": base_image, "APP_VERSION": "v1"}),
        )
    if mode == "hang":
        install_signal_handlers()
    context = RunContext.new(project, worker="harness")
    if os.environ.get("COMPAT_HARNESS_HOST"):  # tests use a fake host no other session reaps
        context = dataclasses.replace(context, host=os.environ["COMPAT_HARNESS_HOST"])
    runtime = select_runtime(kind, context)
    try:
        instances = runtime.start([spec])
        report = {
            "run_id": runtime.context.run_id,
            "instances": [{"name": i.name, "ident": i.ident, "url": i.url} for i in instances],
            "run_dir": str(getattr(runtime, "run_dir", "")),
        }
        print(json.dumps(report), flush=True)
        if mode == "exit":
            return
        threading.Event().wait()
    except KeyboardInterrupt:
        print("interrupted; tearing down", flush=True)
        runtime.close()
        sys.exit(130)


if __name__ == "__main__":
    main()
