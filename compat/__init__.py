"""pytest-compat: prove that the old and the new version of a system can run at the same time.

The engine (config, topology, runtime, router, checks, gate, report) runs without pytest;
``compat.plugin`` is the thin pytest entry point and ``compat.cli`` the command line.
"""

__version__ = "0.1.0"
