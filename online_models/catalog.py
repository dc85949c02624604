"""The model catalog: named models declared in TOML, built on demand per device and horizon.

Each model is a table ``[models.<name>]`` (see ``online_models/models.toml``
for the keys). :func:`load_catalog` reads and validates the file;
:meth:`Catalog.select` picks the default set, all, or named models;
:meth:`ModelSpec.build` makes a fresh model for one target and horizon, with
the two verbs ``learn_one`` / ``predict_one``. Only classes under
``river.``, ``sklearn.`` and ``online_models.`` may be named.

>>> cat = load_catalog()
>>> cat.select("default").names
('persistence', 'rolling_mean', 'seasonal_naive', 'linear', 'ridge', 'ensemble')
>>> [s.name for s in cat.select("default").for_horizon(0)]
['persistence', 'rolling_mean', 'linear']
>>> m = cat["linear"].build("temp", 900)
>>> m.predict_one({"temp": 21.5, "humidity": 60.0})
21.5
"""

from __future__ import annotations

import functools
import importlib
import inspect
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from river import base
from river.time_series.base import Forecaster

from online_models.adapters import Anchored, Resampled

__all__ = ["KINDS", "BUILTIN", "Catalog", "CatalogError", "ModelSpec", "load_catalog"]

BUILTIN = Path(__file__).with_name("models.toml")
KINDS = ("baseline", "regressor", "horizon", "series", "seasonal", "batch", "combination")
FORECAST_ONLY = ("horizon", "series", "seasonal", "combination")
TASKS = ("nowcast", "forecast")
_ALLOWED_PREFIXES = ("river.", "sklearn.", "online_models.")
_KEYS = {
    "class",
    "kind",
    "scale",
    "params",
    "tasks",
    "horizons",
    "default",
    "reference",
    "step",
    "season",
    "season_param",
    "description",
}


class CatalogError(ValueError):
    """A model catalog that cannot be used; the message says which model and why.

    >>> str(CatalogError("models.toml: model 'x': 'class' is missing"))
    "models.toml: model 'x': 'class' is missing"
    """


def _resolve(path: str) -> type:
    if not path.startswith(_ALLOWED_PREFIXES):
        raise CatalogError(f"class {path!r} is not under {', '.join(_ALLOWED_PREFIXES)}")
    module_name, _, attr = path.rpartition(".")
    try:
        cls: type = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CatalogError(f"class {path!r} cannot be imported: {exc}") from exc
    return cls


def _build_value(value: Any) -> Any:
    if isinstance(value, dict) and "class" in value:
        args = [_build_value(v) for v in value.get("args", [])]
        kwargs = {k: _build_value(v) for k, v in value.get("params", {}).items()}
        return _resolve(value["class"])(*args, **kwargs)
    if isinstance(value, list):
        return [_build_value(v) for v in value]
    return value


@dataclass(frozen=True)
class ModelSpec:
    """One declared model: what to build and where it applies.

    >>> spec = ModelSpec("p", "online_models.baselines.Persistence", "baseline")
    >>> spec.applies_to(0), spec.applies_to(900)
    (True, True)
    >>> spec.build("temp", 0).predict_one({"temp": 20.0})
    20.0
    """

    name: str
    cls: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    scale: bool = False
    tasks: tuple[str, ...] = TASKS
    horizons: tuple[int, ...] | None = None
    default: bool = False
    reference: bool = False
    step: int = 60
    season: int | None = None
    season_param: str | None = None
    description: str = ""

    def applies_to(self, horizon: int) -> bool:
        """True when this model runs at ``horizon`` (0 = nowcast)."""
        task = "nowcast" if horizon == 0 else "forecast"
        if task not in self.tasks:
            return False
        return self.horizons is None or horizon in self.horizons

    def build(self, target: str, horizon: int) -> base.Regressor:
        """A fresh, untrained model for ``target`` at ``horizon`` seconds."""
        cls = _resolve(self.cls)
        params = {k: _build_value(v) for k, v in self.params.items()}
        try:
            # a baseline, seasonal or combination class is a River regressor; the other
            # kinds name any model with learn_one and predict_one, wrapped below
            if self.kind == "baseline":
                return cast(base.Regressor, cls(target=target, **params))
            if self.kind == "seasonal":
                return cast(base.Regressor, cls(**params))
            if self.kind == "combination":
                return cast(base.Regressor, cls(horizon=horizon, **params))
            if self.kind == "series":
                build = functools.partial(_series, cls, self.params, self.season, self.season_param)
                build(max(self.step, 1))  # fail now on bad params, not at the 9th reading
                return Resampled(build, horizon=horizon, step=self.step)
            if self.kind == "horizon" and "horizon" in inspect.signature(cls).parameters:
                params["horizon"] = horizon
            model = cls(**params)
        except TypeError as exc:
            raise CatalogError(f"model {self.name!r}: bad params for {self.cls}: {exc}") from exc
        return Anchored(model, target, scaled=self.scale, weighted=self.kind == "horizon")

    @property
    def series(self) -> bool:
        """True for models that see the raw series (``{"ts": t}`` and each value)."""
        return self.kind == "series"


def _series(
    cls: type, params: dict[str, Any], season: int | None, season_param: str | None, step: int
) -> Forecaster:
    """A series model for ``step``-second bins: a daily ``season`` becomes whole bins."""
    kwargs = {k: _build_value(v) for k, v in params.items()}
    if season and season_param:
        kwargs[season_param] = max(int(season // step), 1)
    return cast(Forecaster, cls(**kwargs))


@dataclass(frozen=True)
class Catalog:
    """An ordered set of :class:`ModelSpec` (order = report order).

    >>> cat = load_catalog()
    >>> "batch_forest" in cat.select("all").names, cat.select("linear,persistence").names
    (True, ('persistence', 'linear'))
    """

    specs: tuple[ModelSpec, ...]
    source: str = "builtin"

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, name: str) -> ModelSpec:
        for s in self.specs:
            if s.name == name:
                return s
        raise KeyError(f"no model {name!r} in the catalog ({', '.join(self.names)})")

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.specs)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def for_horizon(self, horizon: int) -> list[ModelSpec]:
        return [s for s in self.specs if s.applies_to(horizon)]

    def select(
        self, which: str | Iterable[str] = "default", *, references: bool = False
    ) -> Catalog:
        """``"default"``, ``"all"`` or names (a list or ``"a,b"``), in catalog order.

        ``references`` adds the models marked ``reference`` (the evaluation's baselines).
        """
        if isinstance(which, str) and which in ("default", "all"):
            keep = {s.name for s in self.specs if which == "all" or s.default}
        else:
            names = [n.strip() for n in (which.split(",") if isinstance(which, str) else which)]
            missing = [n for n in names if n and n not in self]
            if missing:
                raise CatalogError(
                    f"unknown model(s) {', '.join(missing)}; the catalog has {', '.join(self.names)}"
                )
            keep = {n for n in names if n}
        if references:
            keep |= {s.name for s in self.specs if s.reference}
        return Catalog(tuple(s for s in self.specs if s.name in keep), self.source)


def _spec(name: str, table: dict[str, Any], source: str) -> ModelSpec:
    where = f"{source}: model {name!r}"
    unknown = set(table) - _KEYS
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "class" not in table:
        raise CatalogError(f"{where}: 'class' is missing")
    kind = table.get("kind", "regressor")
    if kind not in KINDS:
        raise CatalogError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    tasks = tuple(table.get("tasks", ("forecast",) if kind in FORECAST_ONLY else TASKS))
    if not tasks or set(tasks) - set(TASKS):
        raise CatalogError(f"{where}: tasks must be a subset of {list(TASKS)}, got {list(tasks)}")
    if kind in FORECAST_ONLY and "nowcast" in tasks:
        raise CatalogError(f"{where}: a {kind} model only forecasts; remove 'nowcast' from tasks")
    if ("season" in table) != ("season_param" in table):
        raise CatalogError(f"{where}: 'season' and 'season_param' go together")
    horizons = table.get("horizons")
    spec = ModelSpec(
        name=name,
        cls=str(table["class"]),
        kind=kind,
        params=dict(table.get("params", {})),
        scale=bool(table.get("scale", False)),
        tasks=tasks,
        horizons=None if horizons is None else tuple(int(h) for h in horizons),
        default=bool(table.get("default", False)),
        reference=bool(table.get("reference", False)),
        step=int(table.get("step", 60)),
        season=None if "season" not in table else int(table["season"]),
        season_param=table.get("season_param"),
        description=str(table.get("description", "")),
    )
    spec.build("temp", 900 if "forecast" in tasks else 0)  # fail now, with the model's name
    return spec


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read a catalog file (``None``: the built-in ``online_models/models.toml``).

    Raises :class:`CatalogError` with the file and model at fault.
    """
    p = BUILTIN if path is None else Path(path)
    source = "builtin" if path is None else str(p)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError as exc:
        raise CatalogError(f"model catalog not found: {p}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"model catalog {p} is not valid TOML: {exc}") from exc
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise CatalogError(f"{p}: no [models.<name>] tables")
    catalog = Catalog(tuple(_spec(n, t, source) for n, t in models.items()), source)
    for spec in catalog:
        if spec.kind == "combination":
            experts = spec.params.get("experts", ())
            unknown = [e for e in experts if e not in catalog or e == spec.name]
            if unknown:
                raise CatalogError(
                    f"{source}: model {spec.name!r}: experts {', '.join(map(repr, unknown))} "
                    f"are not other models of the catalog ({', '.join(catalog.names)})"
                )
    return catalog
