"""What stream/consumer.py (the one module that bends async-kinesis) relies on, checked
against the installed async-kinesis: an upgrade that changes it fails here, by name, before
it fails somewhere in a fault test.

async-kinesis is locked (requirements.lock); ``./dev newest`` runs this file against the
newest version pyproject.toml allows.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from kinesis import Consumer
from kinesis.checkpointers import BaseCheckPointer, BaseHeartbeatCheckPointer
from kinesis.dynamodb import DynamoDBCheckPointer

# (class, attribute) -> what stream/consumer.py does with it
METHODS = {
    (DynamoDBCheckPointer, "do_heartbeat"): "wrapped: a failed heartbeat no longer ends the loop",
    (DynamoDBCheckPointer, "_initialize"): "called before the shared DynamoDB resource is set",
    (DynamoDBCheckPointer, "allocate"): "called by Leases.allocate",
    (DynamoDBCheckPointer, "checkpoint"): "called by Leases.write_sequence (ours, after S3)",
    (DynamoDBCheckPointer, "deallocate"): "called when a lease is given back",
    (DynamoDBCheckPointer, "get_all_checkpoints"): "the lease table as async-kinesis sees it",
    (Consumer, "get_shard_iterator"): "overridden: retried with a bound",
    (Consumer, "_start_fetch_task"): "started by LeaseConsumer.next_items",
    (Consumer, "get_conn"): "called by LeaseConsumer.next_items",
    (Consumer, "close"): "extended: the record buffer lets waiting fetches go first",
}
# attribute -> the class whose __init__ (or start) sets it on self
STATE = {
    "_session": DynamoDBCheckPointer,  # replaced by one long-lived resource
    "_heartbeat_stopping": BaseHeartbeatCheckPointer,  # set by Leases.abandon
    "heartbeat_task": BaseHeartbeatCheckPointer,  # cancelled by Leases.abandon
    "_items": BaseCheckPointer,  # Leases.forget: a lease another process holds now
    "_closed_shards": Consumer,  # LeaseConsumer.mark_finished: a parent finished elsewhere
    "_exhausted_parents": Consumer,  # ... lets its children start here
    "shards": Consumer,
    "queue": Consumer,
    "fetch_task": Consumer,
}


@pytest.mark.parametrize(("cls", "name"), sorted(METHODS, key=lambda k: (k[0].__name__, k[1])))
def test_the_methods_the_adapter_calls_or_overrides_exist(cls: type, name: str) -> None:
    assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name}: {METHODS[(cls, name)]}"


def test_do_heartbeat_takes_a_key_and_a_value() -> None:
    params = list(inspect.signature(DynamoDBCheckPointer.do_heartbeat).parameters)
    assert params == ["self", "key", "value"]


def test_get_shard_iterator_takes_the_shard_and_last_sequence_number() -> None:
    params = list(inspect.signature(Consumer.get_shard_iterator).parameters)
    assert params[:3] == ["self", "shard_id", "last_sequence_number"]


@pytest.mark.parametrize("name", sorted(STATE))
def test_the_state_the_adapter_reads_or_sets_is_the_librarys(name: str) -> None:
    cls = STATE[name]
    assigned = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("kinesis"):
            source = Path(inspect.getfile(klass)).read_text()
            for node in ast.walk(ast.parse(source)):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    assigned.add(node.attr)
    assert name in assigned, f"async-kinesis no longer sets self.{name} in {cls.__name__}"


def _calls_on(cls: type, receiver: str) -> set[str]:
    """The methods ``cls``'s own source calls on ``self.<receiver>``."""
    tree = ast.parse(Path(inspect.getfile(cls)).read_text())
    return {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == receiver
        and isinstance(node.func.value.value, ast.Name)
        and node.func.value.value.id == "self"
    }


def test_the_consumer_calls_the_checkpointer_protocol_that_leases_answer() -> None:
    """async-kinesis' Consumer calls these on its checkpointer: ``checkpoint`` itself (hence
    Leases.checkpoint, which notes and never writes) and ``deallocate`` on a closed shard
    (hence the ShardEnd the consumer queues)."""
    from stream.consumer import Leases

    called = _calls_on(Consumer, "checkpointer")
    assert {"allocate", "checkpoint", "deallocate", "is_allocated", "get_ref"} <= called, called
    for name in called - {"bind_metrics"}:
        assert callable(getattr(Leases, name, None)), f"Leases does not answer {name}()"


def test_leases_never_write_when_async_kinesis_checkpoints() -> None:
    """async-kinesis' own checkpoint() is noted, not written: DynamoDB must not move past S3."""
    import asyncio

    from stream.consumer import Leases, LeaseSettings, TakeEveryLease

    async def scenario() -> tuple[dict[str, str], int]:
        leases = Leases(
            LeaseSettings("adapter", endpoint_url="http://127.0.0.1:9"), TakeEveryLease()
        )
        writes = 0

        async def refuse(*args: object) -> None:
            nonlocal writes
            writes += 1

        leases.inner.checkpoint = refuse
        try:
            await leases.checkpoint("shardId-0", "42")
        finally:
            leases.inner.heartbeat_task.cancel()
        return leases.consumed, writes

    assert asyncio.run(scenario()) == ({"shardId-0": "42"}, 0)
