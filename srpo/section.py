"""The base of every config section: strict, validated on assignment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys and bad values are errors, assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
