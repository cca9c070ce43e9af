"""cleanroom: the build-artifact doctrine as commands.

The public API (what the nox sessions, the invoke tasks and the variants' ``test-all`` script
use; everything else is internal and may move). Names are imported on first use (PEP 562), so
``import cleanroom`` stays cheap: ``cleanroom proto``'s no-op path is measured.

- :func:`main`: the ``cleanroom`` command line (``main(["verify"])`` returns the exit code);
- :func:`run_task`: a daily-loop task (``proto``, ``verify``, ``test-all``, ``shell``) run where
  it belongs, in the app container or on the host; returns the exit code, never raises;
- :func:`test_all`: the ``test-all`` command run inside the container.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "main": ("cleanroom.cli.app", "main"),
    "run_task": ("cleanroom.cli.app", "run_task"),
    "test_all": ("cleanroom.pipeline.testall", "main"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'cleanroom' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value
