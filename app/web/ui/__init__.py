"""The two Gradio apps: the studio (trainers and admins) and the rating app (raters).

Each tab is a module (:mod:`.lab`, :mod:`.train`, :mod:`.arena`, :mod:`.checkpoints`) of
module-level handlers and a ``build(studio)`` that only lays out components and wires
events to them; :mod:`.common` has the helpers they share.
"""

import gradio as gr

from app.core.models import Role
from app.web.context import Studio
from app.web.ui import admin, arena, checkpoints, lab, train
from app.web.ui.common import bind, caller, text


def banner(studio: Studio, role: Role, title: str, request: gr.Request) -> str:
    """The page header: the app's title and who is signed in."""
    user = caller(studio, request, role)
    return (
        f'<div class="studio-bar"><span class="brand">{title}</span><span class="who">'
        f"Signed in as <strong>{text(user.username)}</strong> ({user.role.value}) · "
        '<a href="/logout">Log out</a></span></div>'
    )


def build_studio(studio: Studio) -> gr.Blocks:
    """Reward Lab, Train, Arena and Checkpoints in tabs, and Admin for admins.

    Each tab's lists (models, checkpoints, campaigns) are read when the page loads and again
    whenever the tab is opened, so a checkpoint trained or a campaign rendered meanwhile shows
    up without reloading the page. The Train tab keeps its own timer instead: re-reading it on
    opening would reset the form's verdict.
    """
    with gr.Blocks(title="SRPO Studio") as demo:
        header = gr.HTML(elem_classes=["studio-header"])
        with gr.Tabs():
            with gr.Tab("Reward Lab", id="lab") as lab_tab:
                lab_lists = lab.build(studio)
            with gr.Tab("Train", id="train"):
                train_lists = train.build(studio)
            with gr.Tab("Arena", id="arena") as arena_tab:
                arena_lists = arena.build(studio)
            with gr.Tab("Checkpoints", id="checkpoints") as checkpoints_tab:
                checkpoint_lists = checkpoints.build(studio)
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin_lists = admin.build(studio, admin_tab)
        demo.load(bind(banner, studio, Role.TRAINER, "SRPO Studio"), None, [header])
        lists = (lab_lists, train_lists, arena_lists, checkpoint_lists, admin_lists)
        for refresh, outputs in lists:
            demo.load(refresh, None, outputs)
        for tab, (refresh, outputs) in (
            (lab_tab, lab_lists),
            (arena_tab, arena_lists),
            (checkpoints_tab, checkpoint_lists),
        ):
            tab.select(refresh, None, outputs, show_progress="hidden")
    return demo


def build_rater(studio: Studio) -> gr.Blocks:
    """The raters' app: blind voting and nothing else."""
    with gr.Blocks(title="SRPO Studio: rate") as demo:
        header = gr.HTML(elem_classes=["studio-header"])
        refresh, outputs = arena.build_voting(studio, Role.RATER)
        demo.load(bind(banner, studio, Role.RATER, "SRPO Studio · Arena"), None, [header])
        demo.load(refresh, None, outputs)
    return demo
