"""The strict base every section of verticalize.yaml derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Strict base: unknown keys are errors, never silently ignored (P1)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
