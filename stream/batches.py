"""The batch loop: the processor's hot path, a batch of records at a time.

The consumer (:mod:`stream.consumer`) hands out :class:`~stream.consumer.RecordBatch`
items; :class:`BatchLoop` gives each record to the per-record core
(``handle``: :meth:`stream.core.StreamCore.handle`) with its shard's
:class:`~stream.state.ShardState`, and

- drops a record as stale when its shard is not held, was leased again since
  (another epoch) or is no longer reading (handed over, ending);
- asks for a checkpoint (:meth:`stream.checkpointing.Checkpointer.checkpoint`,
  which snapshots at once and writes on its own) when a shard has
  ``checkpoint_every`` readings since its last one (the core counts a record's
  parts: ``ShardState.since_checkpoint``) and none in flight: always
  between two records, after the core handled the first whole (a packed record's
  readings are learned all or nothing, and the position is a record's sequence
  number, never a place inside one);
- yields to the event loop every ``YIELD_SECONDS`` (lease heartbeats, S3
  writes), telling the consumer how far it got (``handled``: the lag gauge),
  and returns early once ``stop`` is set.

It counts the records it handled and the stale ones it dropped.

>>> import asyncio
>>> from stream.consumer import RawRecord, RecordBatch
>>> from stream.state import ShardState
>>> states = {"shardId-0": ShardState("shardId-0", epoch=2)}
>>> seen, lag = [], []
>>> loop = BatchLoop(lambda st, seq, data, at: seen.append(seq), states, None, lag.append, 100)
>>> batch = RecordBatch("shardId-0", 2, [RawRecord("shardId-0", s, b"{}", 0.0, e)
...                                      for s, e in (("1", 2), ("2", 1), ("3", 2))])
>>> asyncio.run(loop.handle(batch, asyncio.Event()))
>>> seen, [r.sequence for r in lag], loop.records, loop.stale
(['1', '3'], ['3'], 2, 1)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from stream.consumer import RawRecord, RecordBatch
from stream.state import ShardState

if TYPE_CHECKING:
    from stream.checkpointing import Checkpointer

__all__ = ["YIELD_SECONDS", "BatchLoop"]

YIELD_SECONDS = 0.02

Handle = Callable[[ShardState, str, bytes, float], object]


class BatchLoop:
    """Runs batches of records through the per-record core (see the module docstring).

    ``states`` is the processor's shards held (read only here), ``checkpoints``
    takes the checkpoints due, ``handled`` is told the last record handled at every
    yield and at the batch's end.
    """

    def __init__(
        self,
        handle: Handle,
        states: Mapping[str, ShardState],
        checkpoints: Checkpointer,
        handled: Callable[[RawRecord], object],
        checkpoint_every: int,
    ) -> None:
        self.handle_record = handle
        self.states = states
        self.checkpoints = checkpoints
        self.handled = handled
        self.checkpoint_every = checkpoint_every
        self.records = 0  # handled
        self.stale = 0  # dropped: shard not held, leased again, or not reading

    async def handle(self, batch: RecordBatch, stop: asyncio.Event) -> None:
        """A batch, record by record, checkpointing at record boundaries as due and yielding
        to the event loop every few milliseconds."""
        handle = self.handle_record
        handled = self.handled
        states = self.states
        every = self.checkpoint_every
        clock = time.monotonic
        budget = clock() + YIELD_SECONDS
        last = None
        for rec in batch.records:
            state = states.get(rec.shard_id)
            if state is None or state.epoch != rec.epoch or not state.reading:
                self.stale += 1
                continue
            handle(state, rec.sequence, rec.data, rec.arrived)
            last = rec
            self.records += 1
            if state.since_checkpoint >= every and state.writing() is None:
                await self.checkpoints.checkpoint(
                    state
                )  # snapshot now; the writing runs on its own
            if clock() >= budget:
                handled(rec)
                await asyncio.sleep(0)
                budget = clock() + YIELD_SECONDS
                if stop.is_set():
                    return
        if last is not None:
            handled(last)
