"""The device registry: which devices this process holds models for, and new ones' model sets.

A device's models live in its shard's :class:`~stream.state.ShardState` (``devices``,
one :class:`~stream.state.DeviceSlot` each), since they are checkpointed, handed over
and restored with the shard. :class:`DeviceRegistry` keeps the count across the
process's shards (:meth:`~DeviceRegistry.adopt` a leased shard's devices,
:meth:`~DeviceRegistry.release` a handed-over shard's) and creates a device's slot, a
fresh model set from the catalog (with its anomaly watch,
:class:`~online_models.anomaly.Watch`), with :meth:`~DeviceRegistry.create`, up to
``max_devices`` per process: beyond it, it refuses (None), and the reading is
dead-lettered by its caller.

It writes no metric: its callers report :attr:`DeviceRegistry.held`.

>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> from stream.state import ShardState
>>> registry = DeviceRegistry(load_catalog(), TaskConfig(horizons=(0,)), max_devices=1)
>>> st = ShardState("shardId-0", epoch=1)
>>> registry.create(st, "d1").models.device, registry.create(st, "d2"), registry.held
('d1', None, 1)
>>> registry.release(st); registry.held
0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.state import DeviceSlot, ShardState

if TYPE_CHECKING:
    from online_models.catalog import Catalog
    from online_models.config import TaskConfig

__all__ = ["DeviceRegistry"]


class DeviceRegistry:
    """The devices held across this process's shards (see the module docstring).

    ``catalog``, ``task`` and ``models`` make a new device's
    :class:`~online_models.device.DeviceModels`; ``max_devices`` bounds how many
    devices the process holds (a flood of device ids must not exhaust its memory).
    """

    def __init__(
        self,
        catalog: Catalog,
        task: TaskConfig,
        *,
        models: str = "default",
        max_devices: int = 100_000,
    ) -> None:
        self.catalog = catalog
        self.task = task
        self.models = models
        self.max_devices = max_devices
        self.held = 0

    def adopt(self, state: ShardState) -> None:
        """A newly leased shard: its devices (restored from its manifest) are held now."""
        self.held += len(state.devices)

    def release(self, state: ShardState) -> None:
        """A shard handed over: its devices go with it."""
        self.held -= len(state.devices)

    def create(self, state: ShardState, device: str) -> DeviceSlot | None:
        """A fresh model set for ``device`` in ``state`` (None at ``max_devices``)."""
        if self.held >= self.max_devices:
            return None
        from online_models.device import DeviceModels

        slot = state.devices[device] = DeviceSlot(
            DeviceModels(device, self.catalog, self.task, models=self.models, anomalies=True)
        )
        self.held += 1
        return slot

    def limit_message(self) -> str:
        """Why a new device was refused, and what to do about it."""
        return (
            f"this process already holds {self.held} devices (--max-devices); "
            "add processes or raise the limit"
        )
