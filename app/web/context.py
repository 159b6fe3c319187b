"""What every route and UI handler of one studio app shares: the :class:`Studio` context.

Handlers are module-level functions of ``(studio, inputs...)``; the app factory builds one
:class:`Studio` and the Gradio builders and API dependencies pass it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.arena_scores import PairScores
from app.core.db import Database
from app.core.model_refs import ModelCache
from app.core.settings import Settings
from app.web.auth import Authenticator


@dataclass
class Studio:
    """One studio app's shared state: settings, database, who is signed in, loaded models."""

    settings: Settings
    db: Database
    authenticator: Authenticator
    models: ModelCache = field(init=False)
    pair_scores: PairScores = field(init=False)

    def __post_init__(self) -> None:
        self.models = ModelCache(self.settings)
        self.pair_scores = PairScores(self.settings, self.models)
