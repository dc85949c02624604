"""Test-only hook: ``iotcast`` with every record's processing slowed while a flag file exists.

Usage (what :meth:`tests.faults.pipeline.Pipeline.start_processor` runs for the
slow-consumer fault)::

    python tests/faults/hooks.py /tmp/slow.flag 0.01 process --stream ...

While ``/tmp/slow.flag`` exists, :meth:`stream.loop.StreamCore.handle` sleeps
0.01 s before each record (on the event loop, as slow model code would), so
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
    """``handle`` preceded by a ``delay`` second sleep while ``flag`` exists."""

    def slow_handle(
        self: Any, state: Any, seq: str, data: bytes, arrived: float | None = None
    ) -> str:
        if flag.exists():
            time.sleep(delay)
        return handle(self, state, seq, data, arrived)

    return slow_handle


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from iotcast.cli import main
    from stream.loop import StreamCore

    StreamCore.handle = slowed(StreamCore.handle, Path(sys.argv[1]), float(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
