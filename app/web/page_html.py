"""The studio's plain HTML pages (outside the Gradio apps): the login form, and the page a
signed-in user gets when their role may not open an address. Both are self-contained (the
stylesheet is inlined) and escape everything user-given."""

from __future__ import annotations

import html
from pathlib import Path

from app.core.models import Role

STATIC = Path(__file__).resolve().parents[2] / "static"
# What each role may open in a browser, and where it is.
PLACES = {
    Role.RATER: [("/rate/", "the rating app", "rate image pairs in the arena")],
    Role.TRAINER: [
        ("/studio/", "the studio", "Reward Lab, Train, Arena and Checkpoints"),
        ("/docs", "the REST API's documentation", "the API a token gives you"),
    ],
}
PLACES[Role.ADMIN] = PLACES[Role.TRAINER]


def _page(title: str, body: str) -> str:
    css = (STATIC / "login.css").read_text()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SRPO Studio: {html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{css}</style></head>
<body><main class="card"><h1>SRPO Studio</h1>{body}</main></body></html>"""


def login_page(target: str, message: str = "") -> str:
    """The login form, which sends the user on to ``target`` once signed in."""
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return _page(
        "sign in",
        f"""<p class="lead">Preference alignment for diffusion models</p>{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(target, quote=True)}">
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label><button type="submit">Sign in</button></form>""",
    )


def role_page(username: str, role: Role, path: str) -> str:
    """What a signed-in user sees at an address their role may not open: who they are, what
    they may use instead, with links, and a way to sign in as someone else."""
    places = "".join(
        f'<li><a href="{href}">{html.escape(name)}</a>: {html.escape(what)}</li>'
        for href, name, what in PLACES[role]
    )
    return _page(
        "not for your role",
        f"""<p class="lead">Signed in as <strong>{html.escape(username)}</strong>
({html.escape(role.value)})</p>
<p class="error" role="alert">A {html.escape(role.value)} may not open
<code>{html.escape(path)}</code>.</p>
<p>You may use:</p><ul class="places">{places}</ul>
<p><a href="/logout">Sign out</a> to sign in as someone else.</p>""",
    )
