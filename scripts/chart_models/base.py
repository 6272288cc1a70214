"""What every chart's values model builds on: strict objects, and OMIT for a key values.yaml leaves out.

A field whose default is OMIT is allowed by the schema but not written to values.yaml (an optional
key the operator may add); a field without a default is required by the schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Omit:
    """The default of a key values.yaml does not set."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()


class Strict(BaseModel):
    """An object of values: unknown keys are refused (the schema's additionalProperties: false), and
    defaults are taken as written (no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True)
