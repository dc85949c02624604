"""Test-only hook: ``iotcast`` with every reading's processing slowed while a flag file exists.

Usage (what :meth:`tests.faults.pipeline.Pipeline.start_processor` runs for the
slow-consumer fault)::

    python tests/faults/hooks.py /tmp/slow.flag 0.01 process --stream ...

While ``/tmp/slow.flag`` exists, :meth:`stream.core.StreamCore.handle` sleeps
0.01 s per message of each record before handling it (a packed record holds many:
``telemetry.envelope``; on the event loop, as slow model code would), so
the stream lags; remove the file and the processor catches up.  Nothing of
the processor's own code changes.

>>> slowed(lambda *a: "learned", Path("/nonexistent-flag"), 1.0)(None, None, "1", b"")
'learned'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["slowed"]


def slowed(handle: Callable[..., str], flag: Path, delay: float) -> Callable[..., str]:
    """``handle`` preceded by a ``delay`` second sleep per message of the record while ``flag``
    exists."""
    from telemetry.envelope import EnvelopeError, unpack  # the script sets sys.path first

    def slow_handle(
        self: Any, state: Any, seq: str, data: bytes, arrived: float | None = None
    ) -> str:
        if flag.exists():
            try:
                messages = len(unpack(data))
            except EnvelopeError:
                messages = 1
            time.sleep(delay * messages)
        return handle(self, state, seq, data, arrived)

    return slow_handle


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from iotcast.cli import main
    from stream.core import StreamCore

    StreamCore.handle = slowed(StreamCore.handle, Path(sys.argv[1]), float(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
