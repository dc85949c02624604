"""``moto_server`` with its Kinesis shard made O(1) per record (for ``bench/soak.py --moto-fix``).

moto 5.2's ``Shard.put_record`` finds the last sequence number with
``list(self.records.keys())[-1]`` (a copy of every key, per record) and
``Shard.get_records`` walks the shard from its first record on every call.
Both cost O(records in the shard): a shard of 100,000 records takes ~6 ms per
record put on this machine, 300,000 ~24 ms, so any long run at a high rate
ends up measuring moto.  This wrapper replaces those methods with
equivalents that use the fact that moto numbers a shard's records 1, 2, 3, ...
(``put_record``: last + 1), and then runs the ordinary ``moto_server``.
Same answers (records, sequence numbers, MillisBehindLatest), fewer
"OrderedDict mutated during iteration" errors (GetRecords no longer iterates
the dict while PutRecords inserts).

    .venv/bin/python bench/moto_fast.py -H 127.0.0.1 -p 5000

>>> shard = make_shard()
>>> [shard.put_record("k", "ZA==", None) for _ in range(3)]
['1', '2', '3']
>>> records, last, behind = shard.get_records("1", 10)
>>> [r.sequence_number for r in records], last
([2, 3], 3)
"""

from __future__ import annotations

import sys
from typing import Any

from moto.kinesis.models import Record, Shard

__all__ = ["make_shard", "patch"]


def _max_seq(self: Shard) -> int:
    return next(reversed(self.records)) if self.records else 0


def _min_seq(self: Shard) -> int:
    return next(iter(self.records)) if self.records else 0


def _put_record(self: Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    sequence_number = _max_seq(self) + 1
    self.records[sequence_number] = Record(partition_key, data, sequence_number, explicit_hash_key)
    return str(sequence_number)


_original_get_records = Shard.get_records


def _get_records(self: Shard, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
    last = int(last_sequence_id)
    records = self.records
    if not records:
        return [], last, 0
    hi = next(reversed(records))
    if last + 1 <= hi and (last + 1) not in records and last >= next(iter(records)):
        return _original_get_records(self, last_sequence_id, limit)  # a gap: moto's own walk
    start = max(last + 1, next(iter(records)))
    end = hi if limit is None else min(hi, start + limit - 1)
    results = [records[s] for s in range(start, end + 1) if s in records]
    if not results:
        return [], last, 0
    behind = records[hi].created_at - results[-1].created_at
    return results, results[-1].sequence_number, int(behind * 1000)


def patch() -> None:
    """Swap moto's O(n) shard methods for the O(1) ones above (in this process)."""
    Shard.put_record = _put_record  # type: ignore[method-assign]
    Shard.get_records = _get_records  # type: ignore[method-assign]
    Shard.get_max_sequence_number = _max_seq  # type: ignore[method-assign]
    Shard.get_min_sequence_number = _min_seq  # type: ignore[method-assign]


def make_shard() -> Any:
    patch()
    return Shard(0, 0, 2**128)


if __name__ == "__main__":
    patch()
    from moto.server import main

    sys.exit(main())
