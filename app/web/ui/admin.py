"""Admin tab (admins only; hidden from everyone else): users and API tokens.

Handlers: :func:`add_user`, :func:`change`, :func:`revoke` and :func:`refresh`. They call
what ``/api/v1/users``, ``/api/v1/tokens`` and ``srpo users`` call (:mod:`app.core.users`):
a change of password or role, or disabling a user, ends their sessions at once, and this
process forgets who a cookie or token belonged to.
"""

import gradio as gr
import pandas as pd
from sqlalchemy import select

from app.core.models import Role, User
from app.core.users import change_user, create_user, revoke_token, token_rows
from app.web.context import Studio
from app.web.ui.common import Refresh, bind, caller, friendly, ident, text

USER_COLUMNS = ["id", "username", "role", "active"]
TOKEN_COLUMNS = ["id", "user", "name", "created_at", "last_used_at", "expires_at", "active"]
ACTIONS = ("make rater", "make trainer", "make admin", "disable", "enable", "set password")


def user_table(studio: Studio) -> pd.DataFrame:
    """Every user with role and status."""
    with studio.db.session() as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        rows = [[u.id, u.username, u.role.value, "yes" if u.active else "no"] for u in users]
    return pd.DataFrame(rows, columns=USER_COLUMNS)


def token_table(studio: Studio) -> pd.DataFrame:
    """Every user's API tokens (never the token itself), oldest first."""
    with studio.db.session() as session:
        rows = token_rows(session)
    shown = [{**r, "active": "yes" if r["active"] else "no"} for r in rows]
    return pd.DataFrame(shown, columns=TOKEN_COLUMNS)


def _lists(studio: Studio, **token) -> tuple:
    """Both tables and the choices of the user and token dropdowns (``token``: more of the
    token dropdown's update, such as ``value=None``)."""
    users, tokens = user_table(studio), token_table(studio)
    active = tokens[tokens["active"] == "yes"]
    return (
        users,
        tokens,
        gr.update(choices=list(users["username"])),
        gr.update(
            choices=[(f"{t.id}: {t.user} · {t.name}", t.id) for t in active.itertuples()], **token
        ),
    )


@friendly
def add_user(studio: Studio, username, password, role, request: gr.Request):
    """Add a user with the password policy and case-blind unique names of the API."""
    caller(studio, request, Role.ADMIN)
    name = (username or "").strip()
    studio.db.write(lambda session: create_user(session, name, password or "", role))
    return (f"Added {text(name)} ({text(role)}).", *_lists(studio))


@friendly
def change(studio: Studio, username, action, password, request: gr.Request):
    """Change a user's role, status or password; their sessions end at once."""
    who = caller(studio, request, Role.ADMIN)
    if not username:
        raise gr.Error("user: choose one from the list", print_exception=False)
    changes = {
        "make rater": {"role": Role.RATER},
        "make trainer": {"role": Role.TRAINER},
        "make admin": {"role": Role.ADMIN},
        "disable": {"active": False},
        "enable": {"active": True},
        "set password": {"password": password or ""},
    }.get(action)
    if changes is None:
        raise gr.Error(f"action: one of {', '.join(ACTIONS)}", print_exception=False)
    studio.db.write(lambda session: change_user(session, username, who.id, **changes))
    studio.authenticator.forget()
    done = "password set" if action == "set password" else action.removeprefix("make ")
    return (f"{text(username)}: {done}; their sessions ended.", *_lists(studio))


@friendly
def revoke(studio: Studio, token_id, request: gr.Request):
    """Revoke any user's API token; it stops working at once."""
    caller(studio, request, Role.ADMIN)
    number = ident(token_id, "token")
    studio.db.write(lambda session: revoke_token(session, None, number))
    studio.authenticator.forget()
    # the revoked token is no longer a choice: clear it rather than show its bare id
    return (f"Token {number} revoked.", *_lists(studio, value=None))


def refresh(studio: Studio, request: gr.Request):
    """The tab shown to admins with its lists; hidden from everyone else."""
    who = caller(studio, request, Role.TRAINER)
    if who.role != Role.ADMIN:
        return gr.update(visible=False), *[gr.update()] * 4
    return gr.update(visible=True), *_lists(studio)


def build(studio: Studio, tab: gr.Tab) -> Refresh:
    """Lay out the Admin tab (inside ``tab``) and wire its events to the handlers above."""
    users = gr.Dataframe(pd.DataFrame(columns=USER_COLUMNS), label="Users", interactive=False)
    with gr.Accordion("Add a user", open=False), gr.Row():
        username = gr.Textbox(label="New user name", max_length=64)
        new_password = gr.Textbox(label="Password", type="password", max_length=1024)
        role = gr.Dropdown([r.value for r in Role], value="rater", label="Role")
        add = gr.Button("Add user", variant="primary", scale=0)
    with gr.Row():
        chosen = gr.Dropdown([], label="User", allow_custom_value=True)
        action = gr.Dropdown(list(ACTIONS), value="disable", label="Change")
        password = gr.Textbox(label="New password (for set password)", type="password")
        apply = gr.Button("Apply", scale=0)
    tokens = gr.Dataframe(
        pd.DataFrame(columns=TOKEN_COLUMNS), label="API tokens", interactive=False
    )
    with gr.Row():
        token = gr.Dropdown([], label="Active token", allow_custom_value=True)
        drop = gr.Button("Revoke token", variant="stop", scale=0)
    status = gr.Markdown(elem_classes=["status"])

    lists = [users, tokens, chosen, token]
    add.click(
        bind(add_user, studio),
        [username, new_password, role],
        [status, *lists],
        api_name="admin_add_user",
    )
    apply.click(
        bind(change, studio),
        [chosen, action, password],
        [status, *lists],
        api_name="admin_change_user",
    )
    drop.click(bind(revoke, studio), [token], [status, *lists], api_name="admin_revoke_token")
    return bind(refresh, studio), [tab, *lists]
