"""The control channel: operator commands (promote, rollback) that running processors apply.

An operator command is one immutable S3 object, written by ``iotcast models promote|rollback``::

    control/<app>/commands/<issued, UTC, YYYYmmddTHHMMSSffffffZ>-<8 hex>.json

holding the kind, the devices (``all`` is resolved to explicit devices when issued), the
model (promote) or the version to restore (rollback, always an explicit version id), who,
when and why; HMAC-signed like the manifests when a key is set (unsigned or badly signed
commands are then ignored, and logged).  Commands older than :data:`COMMAND_TTL` are void.

Each processor runs a :class:`ControlChannel` beside its hot loop: every ``interval``
seconds it lists the commands (one LIST call), and for each device it holds, applies the
commands not yet applied to it, in the order issued, between two records:

- ``promote``: ``DeviceModels.set_champion(model, reason)`` (every horizon the model runs
  at, or ``horizon``); an operator's promotion is not a pin, automatic selection may
  replace the champion again later under its usual rules (margin, cool-down);
- ``rollback``: the version's ``DeviceModels`` is loaded (manifest signature and sha256
  verified) and replaces the device's models.  Its learned-sample count, ``last_ts`` and
  champion go back with it.  The readings learned after that version are NOT learned
  again: they lie behind the shard's checkpoint and the other devices of the shard must not
  see them twice.  Readings newer than the version's ``last_ts`` that arrive from now on are
  learned as usual (a late duplicate of a forgotten reading would be learned too).

Exactly once, across crashes and hand-overs: before changing a device, the processor
writes an acknowledgement ``control/<app>/applied/<command-id>/<device>.json`` holding the
device's checkpoint version ``v`` at that moment, marks the device changed, so its next
checkpoint (version ``> v``) carries the change.  A process that takes the shard over
and loads version ``c`` of the device treats the command as done when ``v < c`` and
applies it again otherwise (the change never reached a checkpoint).  Refused commands
(model not running for the device, version missing or failing verification) are
acknowledged with outcome ``refused`` and the reason, and not retried.

>>> c = Command.new("promote", ["d1"], model="linear", reason="better at night", by="ana")
>>> c.kind, c.devices, c.model, c.by
('promote', ('d1',), 'linear', 'ana')
>>> Command.from_json(c.to_json("k"), "k") == c
True
>>> try:
...     Command.from_json(c.to_json("k").replace(b"linear", b"forest"), "k")
... except TamperedCheckpoint as e:
...     print(e.reason)
bad_signature
>>> command_key("iotcast", c.id).startswith("control/iotcast/commands/")
True
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypedDict

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from online_models.records import Event
from stream.checkpoint import CheckpointStore, TamperedCheckpoint, signed_json, verified_body
from stream.registry import ModelRegistry, UnknownVersion
from stream.state import ShardState

__all__ = [
    "COMMAND_TTL",
    "Ack",
    "Command",
    "CommandEffects",
    "ControlChannel",
    "ControlLog",
    "ack_key",
    "command_key",
]

log = logging.getLogger(__name__)

COMMAND_TTL = 86_400.0  # seconds a command stays valid (applied to a device first held later)
KINDS = ("promote", "rollback")


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def command_key(app: str, command_id: str) -> str:
    return f"control/{app}/commands/{command_id}.json"


def ack_key(app: str, command_id: str, device: str) -> str:
    return f"control/{app}/applied/{command_id}/{device}.json"


class Ack(TypedDict, total=False):
    """An acknowledgement, ``control/<app>/applied/<command-id>/<device>.json``: which
    command, device, shard and process; ``outcome`` (``applying``, then ``applied`` or
    ``refused``), the device's checkpoint ``version`` then, what happened and when."""

    command: str
    kind: str
    device: str
    shard: str
    process: str
    outcome: str
    message: str
    version: int
    at: str
    champion: dict[str, str]
    samples: int


class CommandEffects(Protocol):
    """What the control channel calls on the processor's core
    (:class:`stream.core.StreamCore`) once a command changed a device's models (a
    watched device's figures are read from its models when scraped: nothing to refresh)."""

    def event(self, state: ShardState, device: str, event: Event) -> None: ...


@dataclass(frozen=True)
class Command:
    """One operator command (see the module docstring). ``id`` sorts in the order issued."""

    id: str
    kind: str
    devices: tuple[str, ...]
    model: str | None = None
    horizon: int | None = None
    to_version: str | None = None
    reason: str = ""
    by: str = ""
    at: str = ""

    @classmethod
    def new(
        cls,
        kind: str,
        devices: list[str],
        *,
        model: str | None = None,
        horizon: int | None = None,
        to_version: str | None = None,
        reason: str = "",
        by: str = "",
    ) -> Command:
        if kind not in KINDS:
            raise ValueError(f"unknown command kind {kind!r}; known: {', '.join(KINDS)}")
        now = datetime.now(UTC)
        return cls(
            f"{_stamp(now)}-{uuid.uuid4().hex[:8]}",
            kind,
            tuple(devices),
            model,
            horizon,
            to_version,
            reason,
            by,
            now.isoformat(timespec="milliseconds"),
        )

    @property
    def issued(self) -> datetime:
        return datetime.strptime(self.id.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)

    def describe(self) -> str:
        what = (
            f"promote {self.model}" + (f" at {self.horizon}s" if self.horizon is not None else "")
            if self.kind == "promote"
            else f"rollback to {self.to_version}"
        )
        return f"{what} by {self.by or '?'}: {self.reason or '(no reason given)'}"

    def to_json(self, hmac_key: str | None = None) -> bytes:
        body: dict[str, object] = asdict(self)
        body["devices"] = list(self.devices)
        return signed_json(body, hmac_key)

    @classmethod
    def from_json(cls, raw: bytes, hmac_key: str | None = None) -> Command:
        body: Any = verified_body(raw, hmac_key, "command")  # its fields are checked here
        try:
            body["devices"] = tuple(body["devices"])
            command = cls(**body)
        except (KeyError, TypeError) as exc:
            raise TamperedCheckpoint(
                "malformed", f"command lacks or has an unknown field: {exc}"
            ) from None
        if command.kind not in KINDS:
            raise TamperedCheckpoint(
                "malformed", f"command {command.id} has unknown kind {command.kind!r}"
            )
        return command


class ControlLog:
    """Reads and writes the commands and acknowledgements of one application (blocking calls)."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.s3 = store.s3
        self.bucket = store.bucket
        self.app = store.app
        self._bodies: dict[str, Command | None] = {}

    def _keys(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def issue(self, command: Command) -> str:
        """Write the command; returns its key."""
        key = command_key(self.app, command.id)
        self.store.put_object(key, command.to_json(self.store.hmac_key), "application/json")
        return key

    def commands(self, ttl: float = COMMAND_TTL) -> list[Command]:
        """The valid commands (issued within ``ttl`` seconds), oldest first; bad ones logged, skipped."""
        prefix = f"control/{self.app}/commands/"
        since = _stamp(datetime.now(UTC) - timedelta(seconds=ttl))
        out = []
        for key in self._keys(prefix, start_after=prefix + since):
            if key not in self._bodies:
                raw = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                try:
                    self._bodies[key] = Command.from_json(raw, self.store.hmac_key)
                except TamperedCheckpoint as exc:
                    log.error("ignoring operator command %s: %s (%s)", key, exc, exc.reason)
                    self._bodies[key] = None
            command = self._bodies[key]
            if command is not None:
                out.append(command)
        return out

    def acks(self, commands: list[Command]) -> dict[tuple[str, str], Ack]:
        """(command id, device) -> acknowledgement, for the given commands."""
        if not commands:
            return {}
        prefix = f"control/{self.app}/applied/"
        out: dict[tuple[str, str], Ack] = {}
        first = min(c.id for c in commands)
        ids = {c.id for c in commands}
        for key in self._keys(prefix, start_after=prefix + first[:-1]):
            command_id = key[len(prefix) :].split("/", 1)[0]
            if command_id not in ids:
                continue
            body = orjson.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            out[(command_id, body["device"])] = body
        return out

    def acknowledge(self, ack: Ack) -> None:
        key = ack_key(self.app, ack["command"], ack["device"])
        self.store.put_object(
            key, orjson.dumps(ack, option=orjson.OPT_SORT_KEYS), "application/json"
        )


@dataclass
class _Held:
    """A leased shard's state as the control channel saw it when the processor loaded it."""

    state: ShardState
    loaded: dict[str, int]  # device -> checkpoint version loaded
    evaluated: bool = False
    done: set[tuple[str, str]] = field(default_factory=set)


class ControlChannel:
    """The processor's side of the control channel (module docstring).

    It applies commands to the devices of ``states`` (the processor's shards held,
    ``ShardState`` by shard id: read, never changed here) and reports what changed to
    ``core`` (:class:`CommandEffects`).  The shard lifecycle calls :meth:`adopt` when
    it loads a shard; the runner runs :meth:`run` as a task.
    """

    def __init__(
        self,
        store: CheckpointStore,
        ref: str,
        states: Mapping[str, ShardState],
        core: CommandEffects,
        interval: float = 2.0,
    ) -> None:
        self.log = ControlLog(store)
        self.registry = ModelRegistry(store)
        self.ref = ref
        self.states = states
        self.core = core
        self.interval = interval
        self._held: dict[str, _Held] = {}
        self._round = asyncio.Lock()  # one round at a time, however many tasks run it
        self.applied: list[Ack] = []  # acknowledgements written by this process

    def adopt(self, state: ShardState) -> None:
        """A shard was just loaded: remember the checkpoint version of each of its devices."""
        self._held[state.shard_id] = _Held(state, {d: s.version for d, s in state.devices.items()})

    async def run(self) -> None:
        """Poll and apply every ``interval`` seconds until cancelled; S3 errors retry next round."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except (ClientError, BotoCoreError, OSError) as exc:
                log.warning(
                    "control channel round failed (%s); retrying in %.0fs", exc, self.interval
                )

    async def tick(self) -> list[Ack]:
        """One round: apply what is pending to the devices in ``states``; returns the acks written."""
        async with self._round:
            return await self._tick(self.states, self.core)

    async def _tick(self, states: Mapping[str, ShardState], core: CommandEffects) -> list[Ack]:
        if not states:
            return []
        commands = await asyncio.to_thread(self.log.commands)
        for shard_id in list(self._held):
            if states.get(shard_id) is not self._held[shard_id].state:
                del self._held[shard_id]
        for shard_id, state in states.items():
            if shard_id not in self._held:  # not adopted by the runner: the versions it has now
                self._held[shard_id] = _Held(
                    state, {d: s.version for d, s in state.devices.items()}
                )
        if not commands:
            return []
        pending = [h for h in self._held.values() if not h.evaluated]
        if pending:
            acks = await asyncio.to_thread(self.log.acks, commands)
            for held in pending:
                for (command_id, device), ack in acks.items():
                    loaded = held.loaded.get(device)
                    if loaded is None:
                        continue
                    if ack.get("outcome") == "refused" or int(ack.get("version", -1)) < loaded:
                        held.done.add((command_id, device))
                held.evaluated = True
        written: list[Ack] = []
        for command in commands:
            for device in command.devices:
                for shard_id, held in list(self._held.items()):
                    if device not in held.state.devices or (command.id, device) in held.done:
                        continue
                    if states.get(shard_id) is not held.state:
                        continue
                    result = await self._apply(command, device, held, core)
                    if result is not None:
                        written.append(result)
        return written

    async def _apply(
        self, command: Command, device: str, held: _Held, core: CommandEffects
    ) -> Ack | None:
        state = held.state
        base: Ack = {
            "command": command.id,
            "kind": command.kind,
            "device": device,
            "shard": state.shard_id,
            "process": self.ref,
        }
        replacement = None
        if command.kind == "rollback":
            try:
                version = await asyncio.to_thread(
                    self.registry.version, device, str(command.to_version)
                )
                replacement = await asyncio.to_thread(self.registry.load, version)
            except (TamperedCheckpoint, UnknownVersion) as exc:
                return await self._finish(held, {**base, "outcome": "refused", "message": str(exc)})
        elif command.model not in state.devices[device].models.model_names:
            names = ", ".join(state.devices[device].models.model_names)
            return await self._finish(
                held,
                {
                    **base,
                    "outcome": "refused",
                    "message": f"model {command.model!r} does not run for {device}; "
                    f"it runs: {names}",
                },
            )
        for _ in range(3):
            slot = state.devices.get(device)
            if slot is None:
                return None
            version_now = slot.version
            intent: Ack = {**base, "outcome": "applying", "version": version_now, "at": _now()}
            await asyncio.to_thread(self.log.acknowledge, intent)
            slot = state.devices.get(device)
            if slot is None or held.state is not state:
                return None
            if slot.version == version_now:
                break  # no snapshot between the acknowledgement and the change: v is exact
        else:
            return None  # checkpoints keep racing the acknowledgement: next round
        before = slot.models.summary()["champion"]
        try:
            if replacement is not None:
                slot.models = replacement
                message = (
                    f"restored {command.to_version}: {replacement.n_learned} samples, last_ts "
                    f"{replacement.last_ts}"
                )
            else:
                slot.models.set_champion(
                    str(command.model), f"{command.reason} (by {command.by})", command.horizon
                )
                message = f"champion {command.model}"
        except KeyError as exc:
            return await self._finish(
                held, {**base, "outcome": "refused", "message": str(exc.args[0])}
            )
        state.changed(device)
        after = slot.models.summary()["champion"]
        for h in sorted(after, key=int):
            if after[h] != before.get(h):
                figures = {"old": before.get(h), "by": command.by, "command": command.id}
                reason = f"operator command {command.id}: {command.describe()}"
                core.event(state, device, Event("promotion", after[h], int(h), reason, figures))
        log.info(
            "operator command %s applied to %s (%s): %s",
            command.id,
            device,
            command.describe(),
            message,
        )
        ack: Ack = {
            **intent,
            "outcome": "applied",
            "message": message,
            "champion": after,
            "samples": slot.models.n_learned + slot.models.n_held,
            "at": _now(),
        }
        return await self._finish(held, ack)

    async def _finish(self, held: _Held, ack: Ack) -> Ack:
        held.done.add((ack["command"], ack["device"]))
        if ack["outcome"] == "refused":
            log.error(
                "operator command %s refused for %s: %s",
                ack["command"],
                ack["device"],
                ack["message"],
            )
            ack["at"] = _now()
        await asyncio.to_thread(self.log.acknowledge, ack)
        self.applied.append(ack)
        return ack


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def age_seconds(iso: str, now: float | None = None) -> float | None:
    """Seconds since an ISO-8601 time (None if unparsable).

    >>> age_seconds("2020-01-01T00:00:00+00:00", now=1577836810.0)
    10.0
    """
    try:
        then = datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None
    return (time.time() if now is None else now) - then
