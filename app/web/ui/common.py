"""Helpers every tab uses: binding handlers to the studio, who is calling, friendly errors,
escaping, small parsers.

Every Gradio handler of the tabs is a module-level function whose first parameters are
fixed by the tab's ``build()`` (the :class:`Studio`, and for some a role or a choice) and
whose other parameters are the event's inputs, then ``request: gr.Request``. :func:`bind`
fixes the leading ones for Gradio; tests call the handlers directly.
"""

import functools
import html
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from app.core.errors import StudioError
from app.core.models import Role
from app.web.auth import Principal
from app.web.context import Studio

# What a tab returns: a function that re-reads its lists, and the components it fills.
Refresh = tuple[Callable[..., Any], list[gr.components.Component]]

log = logging.getLogger("srpo.studio")
MAX_ID = 2**31 - 1
# How often a progress bar moves during sampling, at most (seconds). Each move is an event the
# browser renders; moved at every denoising step, they cost Chromium about as much CPU as the
# rest of a Reward Lab preview, on the cores the sampling needs (docs/benchmarks.md).
PROGRESS_EVERY = 0.2
INTERNAL = "Something went wrong on the server; it is logged there. Please try again."


def bind(handler: Callable[..., Any], *fixed: Any) -> Callable[..., Any]:
    """``handler`` with its first ``len(fixed)`` arguments fixed, as Gradio should see it.

    Unlike :func:`functools.partial`, the result keeps the handler's name, signature (less
    the fixed parameters) and type hints, so Gradio still passes ``gr.Request`` to it.
    """

    @functools.wraps(handler)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return handler(*fixed, *args, **kwargs)

    signature = inspect.signature(handler)
    rest = list(signature.parameters.values())[len(fixed) :]
    bound.__signature__ = signature.replace(parameters=rest)  # type: ignore[attr-defined]
    return bound


def every_so_often(
    report: Callable[[int, int], None],
    every: float = PROGRESS_EVERY,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[int, int], None]:
    """A step callback ``(done, total)`` that passes the first step, the last one and, between
    them, one at least ``every`` seconds after the last one passed, on to ``report``. For
    callers that call it one at a time (as :func:`srpo.cpu_sampling.sample_split` does)."""
    passed: list[float] = []

    def heard(done: int, total: int) -> None:
        now = clock()
        if not passed or done >= total or now - passed[-1] >= every:
            passed[:] = [now]
            report(done, total)

    return heard


def caller(studio: Studio, request: gr.Request | None, role: Role) -> Principal:
    """The signed-in principal of a Gradio event, refused unless it has ``role``."""
    username = getattr(request, "username", None)
    who = studio.authenticator.by_username(username) if username else None
    if who is None:
        raise StudioError("you are not signed in")
    if not who.may(role):
        raise StudioError(f"this needs the {role.value} role")
    return who


def friendly(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Turn refusals into a readable message and anything unexpected into a generic one.

    The message appears as a notice in the page (and as the error of a gradio_client
    call); tracebacks stay in the server log.
    """

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except (StudioError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception:
            log.exception("studio handler %s failed", handler.__name__)
            raise gr.Error(INTERNAL, print_exception=False) from None

    return wrapper


def text(value: Any) -> str:
    """User-given text made safe to place in Markdown or HTML (shown as typed)."""
    escaped = str(value)
    for char in "\\`*_{}[]()#+-.!|~":
        escaped = escaped.replace(char, "\\" + char)
    return html.escape(escaped, quote=True)


def ident(value: Any, what: str) -> int:
    """A row id chosen in a dropdown (or sent by an API client), checked."""
    text = str(value).strip()
    if isinstance(value, bool) or value is None or not text.isascii() or not text.isdigit():
        raise StudioError(f"{what}: choose one from the list")
    if int(text) > MAX_ID:  # beyond the databases' row ids
        raise StudioError(f"{what}: choose one from the list")
    return int(text)


def words(value: str | None) -> list[str]:
    """Control words from a comma- or newline-separated box."""
    return [w.strip() for part in (value or "").splitlines() for w in part.split(",") if w.strip()]


def lines(value: str | None) -> list[str]:
    """Non-empty lines of a text box."""
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


def read_text_upload(path: str | None, max_bytes: int = 1_000_000) -> list[str]:
    """Prompts from an uploaded text file: UTF-8, one per non-empty line."""
    if not path:
        raise StudioError("prompt file: choose a .txt file first")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise StudioError(f"prompt file is larger than {max_bytes // 1000} kB")
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StudioError("prompt file is not UTF-8 text") from None
    found = lines(decoded)
    if not found:
        raise StudioError("prompt file is empty: put one prompt per line")
    return found


def seconds(value: float | None) -> str:
    """A duration as 1h02m03s / 2m03s / 3s (or a dash)."""
    if value is None:
        return "–"
    value = round(value)
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
