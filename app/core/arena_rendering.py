"""A campaign's render lease: one rendering task renders a campaign at a time.

The task holds the lease (:func:`claim_rendering`) while it renders a chunk and renews it at
heartbeats; the maintenance loop sends a rendering task only for the pending campaigns no
task holds (:func:`rendering_campaigns`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.core.models import Campaign, CampaignState, utcnow


def claim_rendering(
    session: Session, campaign_id: int, token: str, seconds: float, now=None
) -> bool:
    """Take, or renew, the campaign's render lease for the rendering task ``token``: only
    while the campaign is pending, not cancelled, and no other task holds an unexpired lease.

    One task renders a campaign at a time: the maintenance loop re-sends a pending campaign's
    task, and a restart may find an earlier one in the broker; without the lease both would
    render the same chunk and each send the next, two chains from then on.
    """
    now = now or utcnow()
    claimed = session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.state == CampaignState.PENDING,
            Campaign.cancel_requested.is_(False),
            or_(
                Campaign.render_token.is_(None),
                Campaign.render_token == token,
                Campaign.render_expires_at < now,
            ),
        )
        .values(render_token=token, render_expires_at=now + timedelta(seconds=seconds))
    )
    return claimed.rowcount == 1


def release_rendering(session: Session, campaign_id: int, token: str) -> None:
    """Give the render lease back (the next chunk's task, or none, may take it)."""
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.render_token == token)
        .values(render_token=None, render_expires_at=None)
    )


def rendering_campaigns(session: Session, now=None) -> dict[int, bool]:
    """The campaigns waiting for their images (pending, not cancelled) that no rendering task
    holds now, each with whether a task held it and its lease ran out (its worker was lost)."""
    now = now or utcnow()
    rows = session.execute(
        select(Campaign.id, Campaign.render_expires_at).where(
            Campaign.state == CampaignState.PENDING, Campaign.cancel_requested.is_(False)
        )
    )
    return {
        campaign_id: expires is not None
        for campaign_id, expires in rows
        if expires is None or expires < now
    }
