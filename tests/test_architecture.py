"""The package arrows: web -> core, worker -> core, everything -> srpo, and nothing else.

Every ``import`` and ``from ... import`` of every module is read with ``ast`` (at any depth:
function-level and ``TYPE_CHECKING`` imports count as much as top-level ones), resolved to the
layer it names and checked against :data:`ALLOWED`. Only ``app.studio``, the process that wires
the embedded mode together, may import both the web layer and the worker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("srpo", "app", "worker")

# layer -> the layers it may import (its own included)
ALLOWED = {
    "srpo": {"srpo"},
    "core": {"core", "srpo"},
    "web": {"web", "core", "srpo"},
    "worker": {"worker", "core", "srpo"},
    "cli": {"cli", "core", "srpo"},
    "wiring": {"wiring", "web", "worker", "core", "srpo"},
    "app": {"app"},
}
# Third-party frameworks that belong to one layer only.
FRAMEWORKS = {
    "core": {"gradio", "fastapi", "starlette", "uvicorn"},
    "worker": {"gradio", "fastapi", "starlette", "uvicorn"},
    "web": {"celery", "kombu"},
    "srpo": {"gradio", "fastapi", "celery", "sqlalchemy", "kombu"},
}


def layer(module: str) -> str | None:
    """The layer of a module of this project (None for the standard library and others)."""
    top = module.split(".")[0]
    if top == "srpo":
        return "srpo"
    if top == "worker":
        return "worker"
    if top != "app":
        return None
    if module == "app":
        return "app"
    if module == "app.studio" or module.startswith("app.studio."):
        return "wiring"
    if module in ("app.users_cli", "app.db_cli"):
        return "cli"
    if module.startswith("app.core"):
        return "core"
    if module.startswith("app.web"):
        return "web"
    raise AssertionError(f"{module}: a module of app/ outside core/, web/ and the entry points")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module ``source`` imports, with its line, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target:
                found.append((node.lineno, target))
            # ``from app import web`` may name a submodule: check the submodule too.
            found += [
                (node.lineno, f"{target}.{alias.name}" if target else alias.name)
                for alias in node.names
            ]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The arrows of ``module`` that :data:`ALLOWED` and :data:`FRAMEWORKS` forbid."""
    own = layer(module)
    bad: list[str] = []
    for line, target in imported(source, module, is_package):
        if any(entry.startswith(f"{module}:{line} ") for entry in bad):
            continue  # one message per import statement
        top = target.split(".")[0]
        if own in FRAMEWORKS and top in FRAMEWORKS[own]:
            bad.append(f"{module}:{line} imports {target} ({own} must not use {top})")
            continue
        if top not in PACKAGES or target in ("app",):
            continue
        try:
            theirs = layer(target)
        except AssertionError:
            continue  # a name, not a module (``from app import __doc__``)
        if theirs not in ALLOWED[own]:
            bad.append(f"{module}:{line} imports {target} ({own} -> {theirs})")
    return bad


def project_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_import_follows_the_arrows() -> None:
    bad = []
    for path in project_modules():
        name = module_name(path)
        bad += violations(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    assert not bad, "\n".join(bad)


def test_the_walk_sees_every_layer_and_module() -> None:
    layers = {layer(module_name(p)) for p in project_modules()}
    assert layers == {"srpo", "core", "web", "worker", "cli", "wiring", "app"}
    assert len(project_modules()) > 60


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("app.web.ui.arena", "def f():\n    from worker.tasks import PAIRS_TASK\n"),
        ("app.core.dispatch", "def f():\n    if True:\n        import worker.celery_app\n"),
        ("app.core.jobs", "from app.web import cards\n"),
        ("worker.rendering", "from app.web.context import Studio\n"),
        ("worker.rendering", "from app.web import cards\n"),
        ("srpo.train", "def f():\n    from app.core import jobs\n"),
        ("app.users_cli", "import app.web.factory\n"),
        ("app.core.arena", "class A:\n    def m(self):\n        import gradio\n"),
        ("app.web.ui.train", "from .... import worker\n"),
        ("app.core", "from .. import web\n"),
    ],
)
def test_a_forbidden_arrow_is_caught_wherever_the_import_sits(module, source) -> None:
    assert violations(source, module, module == "app.core"), f"{module}: {source!r}"


def test_relative_imports_resolve_to_their_modules() -> None:
    assert violations("from ...core import jobs\n", "app.web.ui.train") == []
    assert violations("from . import common\n", "app.web.ui.train") == []
    assert violations("from .tasks import register\n", "worker.celery_app") == []
    assert violations("from ..web import cards\n", "app.core", is_package=True)


def test_the_wiring_process_may_touch_both_sides() -> None:
    source = "from app.web.factory import create_app\nfrom worker.embedded import EmbeddedWorker\n"
    assert violations(source, "app.studio") == []
    assert violations(source, "app.web.factory")
