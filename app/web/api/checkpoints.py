"""``/api/v1/checkpoints``: list, one, downloads (manifest files only), generated model card."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, PlainTextResponse

from app.core import access, arena_results, downloads, monitoring, reads
from app.core.evaluations import load_evaluation
from app.core.models import Job
from app.web import cards
from app.web.api.deps import MAX_ID, Id, State, Trainer
from app.web.auth import Principal
from app.web.context import Studio

router = APIRouter(tags=["checkpoints"])


@router.get("/checkpoints", summary="checkpoints with step, sha256 and download URL")
def list_checkpoints(
    _: Trainer, state: State, job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> list[dict]:
    with state.db.session() as session:
        return reads.checkpoint_rows(session, job_id)


@router.get("/checkpoints/{checkpoint_id}", summary="one checkpoint")
def get_checkpoint(checkpoint_id: Id, _: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return reads.checkpoint_row(session, reads.checkpoint(session, checkpoint_id))


def serve_file(state: Studio, who: Principal, checkpoint_id: int, name: str | None) -> FileResponse:
    """A checkpoint file as a download named after its job and step, with its sha256
    (for those who may manage its job: :mod:`app.core.access`)."""
    with state.db.session() as session:
        found = reads.checkpoint(session, checkpoint_id)
        access.managed_checkpoint(session, state.settings, found, who.id, who.role)
        path = reads.checkpoint_file(state.settings, found, name)
        digest = found.files[name or found.weights_file]
    filename = f"job{found.job_id}-step{found.step}-{path.name}"
    return FileResponse(path, filename=filename, headers={"X-Checkpoint-SHA256": digest})


@router.get(
    "/checkpoints/{checkpoint_id}/download",
    summary="one file the loading snippet loads: a LoRA's safetensors, or a full model's zip",
)
def download(checkpoint_id: Id, who: Trainer, state: State) -> FileResponse:
    with state.db.session() as session:
        found = reads.checkpoint(session, checkpoint_id)
        access.managed_checkpoint(session, state.settings, found, who.id, who.role)
        path = downloads.download_path(state.settings, found)
        name, digest = downloads.download_name(found), found.sha256
    return FileResponse(path, filename=name, headers={"X-Checkpoint-SHA256": digest})


@router.get("/checkpoints/{checkpoint_id}/files/{name:path}", summary="a file the manifest lists")
def checkpoint_file(checkpoint_id: Id, name: str, who: Trainer, state: State) -> FileResponse:
    return serve_file(state, who, checkpoint_id, name)


@router.get(
    "/checkpoints/{checkpoint_id}/model-card",
    response_class=PlainTextResponse,
    summary="a generated model card (Markdown)",
)
def model_card(checkpoint_id: Id, _: Trainer, state: State) -> str:
    with state.db.session() as session:
        found = reads.checkpoint(session, checkpoint_id)
        config = session.get(Job, found.job_id).config
        arena = arena_results.checkpoint_arena(session, checkpoint_id)
        hacking = monitoring.checkpoint_report(session, found)
    evaluation = load_evaluation(state.settings, checkpoint_id)
    return cards.model_card(found, config, evaluation, arena, hacking)
