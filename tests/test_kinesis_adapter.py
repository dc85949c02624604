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
from kinesis.checkpointers import BaseHeartbeatCheckPointer
from kinesis.dynamodb import DynamoDBCheckPointer

# (class, attribute) -> what stream/consumer.py does with it
METHODS = {
    (DynamoDBCheckPointer, "do_heartbeat"): "wrapped: a failed heartbeat no longer ends the loop",
    (DynamoDBCheckPointer, "_initialize"): "called before the shared DynamoDB resource is set",
    (DynamoDBCheckPointer, "allocate"): "called by LeaseCheckpointer.allocate",
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
    "_heartbeat_stopping": BaseHeartbeatCheckPointer,  # set by LeaseCheckpointer.abandon
    "heartbeat_task": BaseHeartbeatCheckPointer,  # cancelled by LeaseCheckpointer.abandon
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
