"""What every route and UI handler of one studio app shares: settings, database, models."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from app.db import Database
from app.settings import Settings
from app.web.auth import Authenticator


class ModelCache:
    """The reward and generators the Reward Lab uses, loaded on first use and kept.

    The base generator is ``settings.default_model``; fine-tunes are loaded from their
    verified checkpoint folders (at most ``keep`` at a time). Compute on them is serialised
    by :attr:`lock` (one preview at a time on a 2-core machine is faster than two).
    """

    def __init__(self, settings: Settings, keep: int = 2) -> None:
        self.settings = settings
        self.keep = keep
        self.lock = threading.Lock()
        self._reward: Any = None
        self._generators: OrderedDict[str, Any] = OrderedDict()

    def reward(self) -> Any:
        """The default text-image reward."""
        if self._reward is None:
            from srpo.rewards import load_reward

            self._reward = load_reward(self.settings.default_reward)
        return self._reward

    def generator(self, key: str = "base", checkpoint_path: str | None = None) -> Any:
        """The base generator, or a fine-tune's generator with its checkpoint applied."""
        if key in self._generators:
            self._generators.move_to_end(key)
            return self._generators[key]
        if checkpoint_path is None:
            from srpo.models import load_generator

            generator = load_generator(self.settings.default_model)
        else:
            from srpo.models import load_finetuned

            generator, _ = load_finetuned(checkpoint_path)
        self._generators[key] = generator
        while len(self._generators) > self.keep:
            self._generators.popitem(last=False)
        return generator

    def sampling(self) -> tuple[int, float]:
        """Euler steps and shift for sampling the default model."""
        from srpo.models import sampling_defaults

        defaults = sampling_defaults(self.settings.default_model)
        return int(defaults["steps"]), float(defaults["shift"])


@dataclass
class Studio:
    """One studio app's shared state."""

    settings: Settings
    db: Database
    models: ModelCache = field(init=False)
    authenticator: Authenticator
    reward_cache: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.models = ModelCache(self.settings)
