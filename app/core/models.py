"""The studio's tables (SQLAlchemy 2 typed ORM). The schema changes only through migrations/."""

from __future__ import annotations

import enum
import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every backend, returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class TolerantJSON(TypeDecorator[Any]):
    """JSON whose undecodable stored text reads as empty (``empty()``) with a warning, so
    one damaged row cannot break every page that lists its table; ``srpo db check`` names
    such rows (:mod:`app.core.dbcheck`)."""

    impl = JSON
    cache_ok = True

    def __init__(self, empty: type = dict) -> None:
        super().__init__()
        self.empty = empty

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        process = super().result_processor(dialect, coltype)
        if process is None:
            return None

        def tolerant(value: Any) -> Any:
            try:
                return process(value)
            except ValueError:
                log.warning("a stored JSON value does not decode; run `srpo db check`")
                return self.empty()

        return tolerant


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: TolerantJSON(dict),
        list[Any]: TolerantJSON(list),
    }


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class Role(enum.StrEnum):
    ADMIN = "admin"
    TRAINER = "trainer"
    RATER = "rater"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class RunOutcome(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    REQUEUED = "requeued"


class CampaignState(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Choice(enum.StrEnum):
    LEFT = "left"
    RIGHT = "right"
    TIE = "tie"
    BOTH_BAD = "both_bad"
    SKIP = "skip"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


# User names are unique without regard to case: ``ALICE`` cannot sit beside ``alice``.
Index("uq_users_username_lower", func.lower(User.username), unique=True)


class WebSession(Base):
    """A signed-in browser session; the cookie carries a random value, only its sha256 is
    stored, so logout, a password or role change and disabling the user end it at once."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class LoginFailure(Base):
    """Failed sign-ins of one user name (``u:NAME``) or client address (``a:ADDRESS``), kept
    in the database so that every studio process counts and locks out together
    (:mod:`app.core.login_failures`). Times are seconds since the epoch."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
    last_failure: Mapped[float] = mapped_column(Float, default=0.0)


class ApiToken(Base):
    """A bearer token; only its sha256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class RewardPreset(Base):
    """Control words and ``k`` saved in the Reward Lab, reusable in training."""

    __tablename__ = "reward_presets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    positive_words: Mapped[list[Any]]
    negative_words: Mapped[list[Any]]
    k: Mapped[float] = mapped_column(Float)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A training job: its validated config, state, progress and lease."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_queued_at", "state", "queued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    config: Mapped[dict[str, Any]]
    num_processes: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"))
    output_dir: Mapped[str] = mapped_column(String(500))
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None]
    reward_mean: Mapped[float | None]
    eta_seconds: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    dispatched_at: Mapped[datetime | None]
    dispatch_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    runs: Mapped[list[JobRun]] = relationship(back_populates="job", order_by="JobRun.attempt")


class JobRun(Base):
    """One attempt at a job, by one worker, from claim to its end."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job_id", "attempt"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    lease_token: Mapped[str] = mapped_column(String(36), unique=True)
    pid: Mapped[int | None]
    log_path: Mapped[str | None] = mapped_column(String(500))
    # Where each rank ran ({rank, node, host, pid}), for runs that span nodes (Ray).
    nodes: Mapped[list[Any] | None]
    outcome: Mapped[RunOutcome] = mapped_column(_enum(RunOutcome, "run_outcome"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]

    job: Mapped[Job] = relationship(back_populates="runs")


class JobMetric(Base):
    """The trainer's numbers after one update."""

    __tablename__ = "job_metrics"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float] = mapped_column(Float)
    reward_mean: Mapped[float] = mapped_column(Float)
    reward_std: Mapped[float] = mapped_column(Float)
    grad_norm: Mapped[float] = mapped_column(Float)
    seconds_per_step: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorPoint(Base):
    """The hacking monitor at one sample step: the training reward (its mean since the
    previous sample step; None at the base model's step 0) beside the gold signal, and every
    number the monitor measured on the fixed eval prompts and seeds (:mod:`srpo.monitor`)."""

    __tablename__ = "monitor_points"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    train_reward: Mapped[float | None] = mapped_column(Float)
    gold: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    """A verified checkpoint folder under the storage root (never deleted with its job)."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"))
    step: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(500))
    weights_file: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SampleImage(Base):
    """A generated image under the storage root (a training sample or an arena image)."""

    __tablename__ = "sample_images"
    __table_args__ = (
        Index("ix_sample_images_job_id_step", "job_id", "step"),
        Index("ix_sample_images_model_seed", "model", "seed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT")
    )
    model: Mapped[str] = mapped_column(String(64))
    step: Mapped[int | None]
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(500), unique=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    """A blind A/B evaluation of models on a prompt set at fixed seeds."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    models: Mapped[list[Any]]
    prompts: Mapped[list[Any]]
    seeds: Mapped[list[Any]]
    criteria: Mapped[list[Any]]
    state: Mapped[CampaignState] = mapped_column(_enum(CampaignState, "campaign_state"))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # the arena's settings: gold_rate, repeat_rate, vote_budget, excluded_raters (user ids)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    # the rendering task that holds the campaign (one renders at a time) and until when
    render_token: Mapped[str | None] = mapped_column(String(36))
    render_expires_at: Mapped[datetime | None]
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    comparisons: Mapped[list[Comparison]] = relationship(back_populates="campaign")


class Comparison(Base):
    """One blind pair: two models' images of one prompt and seed, sides drawn at random."""

    __tablename__ = "comparisons"
    __table_args__ = (UniqueConstraint("campaign_id", "prompt_index", "seed", "pair_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="RESTRICT"))
    prompt_index: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    pair_key: Mapped[str] = mapped_column(String(140))
    left_model: Mapped[str] = mapped_column(String(64))
    right_model: Mapped[str] = mapped_column(String(64))
    left_image_id: Mapped[int] = mapped_column(ForeignKey("sample_images.id", ondelete="RESTRICT"))
    right_image_id: Mapped[int] = mapped_column(ForeignKey("sample_images.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="comparisons")


class Vote(Base):
    """One rater's answer on one pair for one criterion (at most one, never overwritten)."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("comparison_id", "rater_id", "criterion"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="RESTRICT"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    criterion: Mapped[str] = mapped_column(String(32))
    choice: Mapped[Choice] = mapped_column(_enum(Choice, "choice"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
