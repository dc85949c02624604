"""Fair sharing of a stream's shards between processor processes.

Every heartbeat each process writes its presence item into the lease table
(:meth:`~stream.lease_table.LeaseTable.write_presence`) and counts the live
processes; its share is ``ceil(shards with work / live processes)``.  It caps
async-kinesis' ``max_shard_consumers`` at the share (so it takes no more) and
hands over (final checkpoint, then lease release) the shards it holds above
it, the last ones by shard id.  Closed shards whose final manifest says
``finished`` carry no work and are not counted.

>>> share(shards_with_work=4, live_processes=3)
2
"""

from __future__ import annotations

import asyncio
import logging
import math

from botocore.exceptions import BotoCoreError, ClientError

from monitoring import metrics as m
from stream.consumer import LeaseConsumer
from stream.lease_table import LeaseTable
from stream.shards import Handover, ShardLifecycle

__all__ = ["FairShare", "share"]

log = logging.getLogger(__name__)


def share(shards_with_work: int, live_processes: int) -> int:
    """How many shards one of ``live_processes`` processes holds at most (at least one)."""
    return max(1, math.ceil(shards_with_work / max(live_processes, 1)))


class FairShare:
    """One process's presence, share and hand-overs (see the module docstring).

    It writes presence through ``table``, reads the shards held in ``lifecycle`` and
    the stream's shards in ``consumer`` (whose ``max_shard_consumers`` it sets), and
    hands the excess over through ``handover``.
    """

    def __init__(
        self,
        table: LeaseTable,
        lifecycle: ShardLifecycle,
        consumer: LeaseConsumer,
        handover: Handover,
        heartbeat: float,
    ) -> None:
        self.table = table
        self.lifecycle = lifecycle
        self.consumer = consumer
        self.handover = handover
        self.heartbeat = heartbeat
        self.live_processes = 1
        self.share: int | None = None

    async def presence(self) -> None:
        self.live_processes = await asyncio.to_thread(self.table.write_presence)

    async def run(self, stop: asyncio.Event) -> None:
        """Presence, fair share and hand-overs, finished parents; every heartbeat."""
        while not stop.is_set():
            await asyncio.sleep(self.heartbeat)
            try:
                await self.presence()
                await self.rebalance()
            except (ClientError, BotoCoreError) as exc:
                log.warning("presence/rebalance round failed (%s); retrying next heartbeat", exc)

    async def rebalance(self) -> None:
        lifecycle = self.lifecycle
        consumer = self.consumer
        listed = consumer.shards or []
        for s in listed:
            sid = s["ShardId"]
            closed = "EndingSequenceNumber" in s.get("SequenceNumberRange", {})
            if closed and sid not in lifecycle.finished and sid not in lifecycle.states:
                manifest = await asyncio.to_thread(lifecycle.manifest_or_none, sid)
                if manifest is not None and manifest.finished:
                    lifecycle.finished.add(sid)
            if sid in lifecycle.finished:
                consumer.mark_finished(sid)
        work = [s for s in listed if s["ShardId"] not in lifecycle.finished]
        if listed:  # an empty list means "not listed yet", not a stream without shards
            m.STREAM_SHARDS.set(len(consumer.open_shards()))
        if not work:
            return
        self.share = share(len(work), self.live_processes)
        consumer.max_shard_consumers = self.share
        owned = sorted(lifecycle.states)
        excess = len(owned) - self.share
        if excess > 0:
            log.info(
                "%d live processes, %d shards: my share is %d, handing over %d",
                self.live_processes,
                len(work),
                self.share,
                excess,
            )
            for shard_id in owned[-excess:]:
                await self.handover.hand_over(shard_id)
