"""The two Gradio apps: the studio (trainers and admins) and the rating app (raters)."""

import gradio as gr

from app.models import Role
from app.web.context import Studio
from app.web.ui import arena, checkpoints, lab, train
from app.web.ui.common import caller, text


def _header(studio: Studio, role: Role, title: str):
    banner = gr.HTML(elem_classes=["studio-header"])

    def who(request: gr.Request) -> str:
        user = caller(studio, request, role)
        return (
            f'<div class="studio-bar"><span class="brand">{title}</span><span class="who">'
            f"Signed in as <strong>{text(user.username)}</strong> ({user.role.value}) · "
            '<a href="/logout">Log out</a></span></div>'
        )

    return banner, who


def build_studio(studio: Studio) -> gr.Blocks:
    """Reward Lab, Train, Arena and Checkpoints in tabs."""
    with gr.Blocks(title="SRPO Studio") as demo:
        banner, who = _header(studio, Role.TRAINER, "SRPO Studio")
        loads = []
        with gr.Tabs():
            with gr.Tab("Reward Lab", id="lab"):
                loads.append(lab.build(studio))
            with gr.Tab("Train", id="train"):
                loads.append(train.build(studio))
            with gr.Tab("Arena", id="arena"):
                loads.append(arena.build(studio))
            with gr.Tab("Checkpoints", id="checkpoints"):
                loads.append(checkpoints.build(studio))
        demo.load(who, None, [banner])
        for refresh, outputs in loads:
            demo.load(refresh, None, outputs)
    return demo


def build_rater(studio: Studio) -> gr.Blocks:
    """The raters' app: blind voting and nothing else."""
    with gr.Blocks(title="SRPO Studio: rate") as demo:
        banner, who = _header(studio, Role.RATER, "SRPO Studio · Arena")
        refresh, outputs = arena.build_voting(studio, Role.RATER)
        demo.load(who, None, [banner])
        demo.load(refresh, None, outputs)
    return demo
