"""What the studio checks at the door before it stores any work: strict values, clean text,
sources inside the allowed roots, and the quotas the settings name.

Every check raises a :class:`StudioError` (a 4xx with its reason) and stores nothing.
Messages about a path never say anything about places outside the allowed roots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from app.core.errors import StudioError
from app.core.settings import Settings

MAX_INT = 2**63 - 1
MAX_DEPTH = 32
MAX_NAME = 200
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PATH_FIELDS = ("model_path", "reward_path", "monitor_reward_path", "offline_images")
REWARD_FIELDS = ("reward", "monitor_reward")


def clean_text(value: str, where: str) -> str:
    """``value`` if it is text every database stores: no NUL byte, no lone surrogate."""
    if "\x00" in value:
        raise StudioError(f"{where}: NUL bytes are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StudioError(f"{where}: not valid Unicode text (a lone surrogate)") from None
    return value


def check_values(data: Any, where: str = "config", depth: int = 0) -> None:
    """Refuse NUL bytes, lone surrogates, integers beyond 64 bits and deep nesting."""
    if depth > MAX_DEPTH:
        raise StudioError(f"{where}: nested more than {MAX_DEPTH} levels")
    if isinstance(data, str):
        clean_text(data, where)
    elif isinstance(data, bool):
        return
    elif isinstance(data, int) and abs(data) > MAX_INT:
        raise StudioError(f"{where}: {data} is out of range")
    elif isinstance(data, dict):
        for key, value in data.items():
            clean_text(str(key), where)
            check_values(value, f"{where}.{key}" if where != "config" else str(key), depth + 1)
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            check_values(value, f"{where}[{index}]", depth + 1)


def check_strict(given: Any, validated: Any, where: str) -> None:
    """Refuse values the config's validation only accepted by conversion: ``true`` for a
    number, ``"5"`` for a whole number (``steps: true`` must not mean one step). Text is
    accepted for a real number, since YAML reads ``1e-4`` as text."""
    if isinstance(given, dict) and isinstance(validated, dict):
        for key, value in given.items():
            if key in validated:
                check_strict(value, validated[key], f"{where}.{key}" if where else key)
    elif isinstance(given, list) and isinstance(validated, list):
        for index, (a, b) in enumerate(zip(given, validated, strict=False)):
            check_strict(a, b, f"{where}[{index}]")
    elif isinstance(validated, int | float) and not isinstance(validated, bool):
        if isinstance(given, bool) or (isinstance(given, str) and isinstance(validated, int)):
            raise StudioError(f"{where}: expected a number, got {type(given).__name__}")
    elif isinstance(validated, bool) and not isinstance(given, bool):
        raise StudioError(f"{where}: expected true or false, got {type(given).__name__}")


def job_name(name: str | None) -> str | None:
    """A job name as given (stripped), refused when blank, too long or not clean text."""
    if name is None:
        return None
    name = clean_text(str(name), "name").strip()
    if not name:
        raise StudioError("name: must not be blank")
    if len(name) > MAX_NAME:
        raise StudioError(f"name: at most {MAX_NAME} characters (got {len(name)})")
    return name


def source(settings: Settings, where: str, value: str, relative_ok: bool = True) -> str:
    """A path inside the allowed roots (symlinks resolved), or a hub id where allowed.

    Returns the resolved absolute path (or the hub id) to store in the config.
    """
    refusal = f"{where}: must be a path inside the studio's data folder or SRPO_PATH_ROOTS" + (
        "" if settings.allow_hub else " (hub ids are off: SRPO_ALLOW_HUB)"
    )
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        if not relative_ok:
            raise StudioError(f"{where}: give an absolute path")
        candidate = settings.data_dir.resolve() / candidate
    resolved = candidate.resolve()
    inside = any(resolved.is_relative_to(root) for root in settings.roots())
    if inside and resolved.exists():
        return str(resolved)
    if HUB_ID.match(value) and not Path(value).is_absolute():
        if settings.allow_hub:
            return value
        raise StudioError(
            f"{where}: {value!r} is no folder under the allowed roots, and hub ids are off "
            "(SRPO_ALLOW_HUB)"
        )
    if inside:
        raise StudioError(f"{where}: nothing at {value!r} under the allowed roots")
    raise StudioError(refusal)


def reward_source(settings: Settings, where: str, spec: str) -> None:
    """Refuse a reward that reads outside the roots or calls a service, unless allowed."""
    from srpo.rewards.multi import is_spec, parse_spec

    names = [spec]
    if is_spec(spec):
        try:
            components = parse_spec(spec)
        except ValueError as error:
            raise StudioError(f"{where}: {error}") from None
        names = [c.name for c in components]
        for component in components:
            if component.path is not None:
                source(settings, where, component.path, relative_ok=False)
    for name in names:
        if name.lower().startswith(("http", "https")) and not settings.allow_hub:
            raise StudioError(f"{where}: scoring services are off (SRPO_ALLOW_HUB)")


def sources(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with each path field checked and resolved (see :func:`source`)."""
    out = dict(config)
    service = str(out.get("reward", "")).lower() == "http" and settings.allow_hub
    for field in PATH_FIELDS:
        if out.get(field) is not None and not (field == "reward_path" and service):
            out[field] = source(settings, field, out[field])
    for field in REWARD_FIELDS:
        if out.get(field):
            reward_source(settings, field, out[field])
    return out


def campaign_size(settings: Settings, models: int, prompts: int, seeds: int) -> None:
    """Refuse a campaign over the pairs or renders limits the settings name."""
    renders = models * prompts * seeds
    pairs = models * (models - 1) // 2 * prompts * seeds
    if renders > settings.max_campaign_renders:
        raise StudioError(
            f"campaign: {renders} images to render; the limit is "
            f"{settings.max_campaign_renders} (SRPO_MAX_CAMPAIGN_RENDERS)"
        )
    if pairs > settings.max_campaign_pairs:
        raise StudioError(
            f"campaign: {pairs} pairs; the limit is {settings.max_campaign_pairs} "
            "(SRPO_MAX_CAMPAIGN_PAIRS)"
        )
