"""The `tune:` section: sampler, budget, metric and search space (T8)."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, model_validator

from verticalize.config.base import Section


class SearchParam(Section):
    """One tuned field: a float / int range, or a list of choices (T8)."""

    type: Literal["float", "int", "categorical"] | None = Field(
        None, description="Default: categorical over `values` (or `choices`)."
    )
    low: float | None = Field(None, description="float / int: smallest value tried.")
    high: float | None = Field(None, description="float / int: largest value tried.")
    log: bool = Field(False, description="float / int: sample on a log scale (low > 0).")
    step: float | None = Field(
        None, gt=0, description="float / int: only low, low + step, … (int default: 1)."
    )
    choices: list[Any] | None = Field(None, description="categorical: the values tried.")
    values: list[Any] | None = Field(
        None,
        description="The grid sampler's points (float needs them; int and categorical "
        "default to every value); alone, a categorical choice for every sampler.",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            allowed = list(cls.model_fields)
            for key in raw:
                if key not in allowed:
                    near = difflib.get_close_matches(str(key), allowed, n=1)
                    hint = f"did you mean '{near[0]}'? " if near else ""
                    raise ValueError(
                        f"unknown key '{key}' in a search space entry. Fix: {hint}"
                        f"use {', '.join(allowed)}, e.g. {{type: float, low: 1.0e-5, "
                        "high: 1.0e-3, log: true}"
                    )
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        kind = self.kind
        if kind == "categorical":
            if self.low is not None or self.high is not None or self.log or self.step:
                raise ValueError(
                    "low / high / log / step need type: float or int. Fix: add type: float "
                    "(or int), or drop them and list the candidates under choices:"
                )
            if not (self.choices or self.values):
                raise ValueError(
                    "a categorical entry needs a non-empty list. Fix: give choices: [a, b] "
                    "(or type: float / int with low and high)"
                )
            return self
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            raise ValueError(
                f"choices are for type: categorical, not type: {kind}. Fix: use values: "
                "(grid points) with a float / int range, or type: categorical"
            )
        if not ranged:
            if not self.values:
                raise ValueError(
                    f"type: {kind} needs low and high (or values: [...]). Fix: e.g. "
                    f"{{type: {kind}, low: 1, high: 3}}"
                )
        elif self.low is None or self.high is None:
            raise ValueError(f"type: {kind} needs both low and high. Fix: give the missing one")
        elif self.low >= self.high:
            raise ValueError(
                f"low ({self.low:g}) must be below high ({self.high:g}). Fix: swap them, or "
                "drop the field from the space to keep one value"
            )
        if self.log and (self.low is None or self.low <= 0):
            raise ValueError("log: true needs low > 0. Fix: raise low (e.g. 1.0e-6), or log: false")
        if self.log and self.step:
            raise ValueError("log and step cannot be combined. Fix: drop one of them")
        if kind == "int":
            for name in ("low", "high", "step"):
                v = getattr(self, name)
                if v is not None and not float(v).is_integer():
                    raise ValueError(f"type: int needs a whole {name} (got {v:g}). Fix: e.g. 3")
            for v in self.values or []:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"type: int values must be whole numbers (got {v!r})")
        if kind == "float":
            for v in self.values or []:
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ValueError(f"type: float values must be numbers (got {v!r})")
        if ranged:
            outside = [v for v in self.values or [] if not self.low <= v <= self.high]
            if outside:
                raise ValueError(
                    f"values {outside} lie outside [low, high] = [{self.low:g}, {self.high:g}]. "
                    "Fix: widen the range or drop those values"
                )
        return self

    @property
    def kind(self) -> str:
        return self.type or "categorical"


class TuneConfig(Section):
    """`verticalize tune`: search over any config field (T8)."""

    sampler: Literal["grid", "random", "tpe"] = Field(
        "tpe", description="grid = every combination of `values`; random; tpe = Optuna's TPE."
    )
    trials: int = Field(8, ge=1, le=10000, description="Budget (grid: at most the grid size).")
    metric: str | None = Field(
        None,
        description="Scored on the VALIDATION split. Default: train.early_stopping.metric; "
        "another metric also replaces train.early_stopping.metric in the trials and best.yaml.",
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Default: minimize for loss / latency metrics, else maximize."
    )
    space: dict[str, SearchParam] = Field(
        {},
        description="Dotted config field → its search range, e.g. "
        "train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}.",
    )
