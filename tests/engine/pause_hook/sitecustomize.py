"""Test support, not part of the engine: with PROTO_TEST_PAUSE_AT=<stage> in the environment and
this folder first on PYTHONPATH, a `cleanroom proto` run pauses (sleeps) right after that stage,
so a test can signal or kill it there deterministically. Stages: staged (sources staged for
protoc), protoc (protoc ran), rewrite (the package tree completed), swap (the new tree exchanged
in, the old not yet removed)."""

import os

_STAGE = os.environ.get("PROTO_TEST_PAUSE_AT")

if _STAGE:
    import functools
    import sys
    import time

    from cleanroom.proto import generate as _g

    def _pause() -> None:
        print(f"proto: paused at {_STAGE} (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(3600)

    def _after(fn, when=lambda result: True):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = fn(*args, **kwargs)
            if when(result):
                _pause()
            return result
        return wrapper

    if _STAGE == "staged":
        _g._stage = _after(_g._stage)
    elif _STAGE == "protoc":
        _g.Generation.protoc = _after(_g.Generation.protoc)
    elif _STAGE == "rewrite":
        _g.Generation.rewrite = _after(_g.Generation.rewrite)
    elif _STAGE == "swap":
        _g._exchange = _after(_g._exchange, when=bool)  # only when the exchange happened
