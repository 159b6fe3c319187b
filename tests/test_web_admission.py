"""What the studio refuses at the door (issue 14): paths outside the allowed roots, hub ids,
quotas, loose values, other trainers' jobs, and the inputs that gave 500s."""

from __future__ import annotations

import http.client
import os
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core import access, jobs
from app.core.models import Job, JobRun, JobState, Role, RunOutcome
from app.core.settings import Settings
from app.web.factory import create_app
from app.web.ui import train
from tests.web_support import (
    add_account,
    serve,
    stored_checkpoint,
    tiny_config,
    user_id,
    web_settings,
)

LIMITS = {
    "max_queued_jobs_per_user": 3,
    "max_processes_per_job": 2,
    "max_prompts_per_job": 5,
    "max_campaign_renders": 12,
    "max_campaign_pairs": 10,
    "max_body_bytes": 20_000,
}
TINY = {"steps": 2, "rollout_steps": 2, "batch_size": 1, "sample_every": 0, "prompts": ["a cat"]}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("admission")
    extra = folder / "shared-images"
    extra.mkdir()
    outside = folder / "outside"
    outside.mkdir()
    settings = web_settings(folder, path_roots=(extra,), **LIMITS)
    app = create_app(settings)
    db = app.state.studio.db
    accounts = {
        name: add_account(db, name, role)
        for name, role in [
            ("ann", Role.TRAINER),
            ("bob", Role.TRAINER),
            ("quin", Role.TRAINER),
            ("ada", Role.ADMIN),
        ]
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        yield SimpleNamespace(
            app=app,
            db=db,
            settings=settings,
            client=client,
            accounts=accounts,
            extra=extra,
            outside=outside,
        )


def post_job(ctx, config: dict, who: str = "ann", **body):
    headers = ctx.accounts[who].headers
    payload = {"preset": "tiny-demo", "config": {**TINY, **config}, **body}
    return ctx.client.post("/api/v1/jobs", json=payload, headers=headers)


def stored(ctx, job_id: int) -> dict:
    with ctx.db.session() as session:
        return session.get(Job, job_id).config


# Item 1: paths and hub ids.


def test_paths_outside_the_roots_are_refused_alike_whether_they_exist_or_not(ctx):
    answers = []
    for field in ("offline_images", "model_path", "reward_path"):
        for value in ("/etc", "/no/such/folder", str(ctx.outside), "../../../etc"):
            made = post_job(ctx, {field: value})
            assert made.status_code == 400, (field, value, made.text)
            answers.append(made.json()["detail"].replace(value, "<value>"))
        # the same words for a folder that exists and one that does not: no existence oracle
        assert len({a for a in answers if a.startswith(field)}) == 1, answers


def test_a_symlink_inside_the_data_folder_that_leaves_it_is_refused(ctx):
    link = ctx.settings.data_dir / "sneaky"
    link.symlink_to(ctx.outside, target_is_directory=True)
    made = post_job(ctx, {"offline_images": str(link)})
    assert made.status_code == 400 and "SRPO_PATH_ROOTS" in made.json()["detail"]
    assert post_job(ctx, {"offline_images": "sneaky"}).status_code == 400


def test_folders_in_the_data_folder_and_in_listed_roots_are_stored_resolved(ctx):
    inside = ctx.settings.data_dir / "images"
    inside.mkdir(exist_ok=True)
    for given, wanted in [("images", inside), (str(ctx.extra), ctx.extra)]:
        made = post_job(ctx, {"offline_images": given}, who="bob")
        assert made.status_code == 201, made.text
        job_id = made.json()["id"]
        assert stored(ctx, job_id)["offline_images"] == str(wanted.resolve())
        ctx.db.write(lambda s, i=job_id: jobs.cancel(s, i))


def test_hub_ids_are_refused_unless_allowed_and_hubs_are_offline(ctx, tmp_path):
    made = post_job(ctx, {"model_path": "black-forest-labs/FLUX.1-dev"})
    assert made.status_code == 400 and "SRPO_ALLOW_HUB" in made.json()["detail"]
    assert ctx.settings.environment()["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    opened = Settings(data_dir=tmp_path, allow_hub=True)
    assert "HF_HUB_OFFLINE" not in opened.environment()
    from app.core import admission

    assert admission.source(opened, "model_path", "org/model") == "org/model"


# Item 2: quotas, each named.


def test_queued_jobs_per_user_are_limited_with_a_429_naming_the_setting(ctx):
    made = [post_job(ctx, {}, who="quin") for _ in range(LIMITS["max_queued_jobs_per_user"])]
    assert all(m.status_code == 201 for m in made), [m.text for m in made]
    over = post_job(ctx, {}, who="quin")
    assert over.status_code == 429 and "SRPO_MAX_QUEUED_JOBS_PER_USER" in over.json()["detail"]
    assert over.headers["retry-after"]
    assert post_job(ctx, {}, who="bob").status_code == 201  # another user's own count
    ctx.db.write(lambda s: jobs.cancel(s, made[0].json()["id"]))
    assert post_job(ctx, {}, who="quin").status_code == 201  # a slot freed
    with ctx.db.session() as session:
        for job in session.query(Job).filter(Job.state == JobState.QUEUED):
            jobs.cancel(session, job.id)


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        ({"num_processes": 3}, "SRPO_MAX_PROCESSES_PER_JOB"),
        ({"config": {"prompts": [f"p{n}" for n in range(6)]}}, "SRPO_MAX_PROMPTS_PER_JOB"),
    ],
)
def test_job_size_limits_are_refused_naming_the_setting(ctx, body, setting):
    config = body.pop("config", {})
    made = post_job(ctx, config, **body)
    assert made.status_code == 400 and setting in made.json()["detail"], made.text


def test_the_default_process_limit_is_what_this_machine_has(tmp_path):
    assert Settings(data_dir=tmp_path).max_processes_per_job == (os.cpu_count() or 1)


def test_a_body_over_the_limit_is_a_413_naming_the_setting(ctx):
    big = {"prompts": ["x" * 1000] * 30}
    made = post_job(ctx, big)
    assert made.status_code == 413 and "SRPO_MAX_BODY_BYTES" in made.json()["detail"]


def test_campaign_size_limits_are_refused_naming_the_setting(ctx):
    checkpoints = [
        f"checkpoint:{stored_checkpoint(ctx.db, ctx.settings, step=n)[1]}" for n in (1, 2)
    ]
    models = ["base", *checkpoints]
    headers = ctx.accounts["ann"].headers

    def campaign(name: str, prompts: int, seeds: int):
        body = {
            "name": name,
            "models": models,
            "prompts": [f"p{n}" for n in range(prompts)],
            "seeds": list(range(seeds)),
        }
        return ctx.client.post("/api/v1/campaigns", json=body, headers=headers)

    renders = campaign("too many renders", 5, 1)  # 15 renders > 12
    assert renders.status_code == 400 and "SRPO_MAX_CAMPAIGN_RENDERS" in renders.json()["detail"]
    pairs = campaign("too many pairs", 2, 2)  # 12 renders, 12 pairs > 10
    assert pairs.status_code == 400 and "SRPO_MAX_CAMPAIGN_PAIRS" in pairs.json()["detail"]
    assert campaign("fits", 1, 3).status_code == 201


# Item 8: strict types and bounds.


@pytest.mark.parametrize(
    ("config", "word"),
    [
        ({"steps": True}, "steps"),
        ({"steps": "5"}, "steps"),
        ({"seed": 2**70}, "64 bits"),
        ({"seed": 2**40}, "seed"),
    ],
)
def test_loose_values_are_refused_at_the_door(ctx, config, word):
    made = post_job(ctx, config)
    assert made.status_code in (400, 422) and word in made.text, made.text


def test_a_long_job_name_is_refused_not_cut(ctx):
    made = post_job(ctx, {}, name="n" * 10_000)
    assert made.status_code == 422 and "200" in made.text
    with pytest.raises(Exception, match="at most 200"):
        train.submission.submit_job(ctx.db, ctx.settings, TINY, "tiny-demo", name="n" * 201)


# Item 9: ownership.


def test_trainers_manage_only_their_own_jobs_unless_the_team_shares(ctx):
    job_id, checkpoint_id, _ = stored_checkpoint(ctx.db, ctx.settings, step=7)
    ann = user_id(ctx.db, "ann")
    ctx.db.write(lambda s: s.execute(update(Job).where(Job.id == job_id).values(owner_id=ann)))
    bob, ada = ctx.accounts["bob"].headers, ctx.accounts["ada"].headers
    for path in (f"/api/v1/checkpoints/{checkpoint_id}/download", f"/api/v1/jobs/{job_id}/log"):
        assert ctx.client.get(path, headers=bob).status_code == 403
        assert ctx.client.get(path, headers=ada).status_code == 200
    assert ctx.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bob).status_code == 403
    assert ctx.client.get(f"/api/v1/jobs/{job_id}", headers=bob).status_code == 200  # visible
    team = ctx.settings.model_copy(update={"job_sharing": "team"})
    assert access.may_manage(team, user_id(ctx.db, "bob"), Role.TRAINER, ann)
    assert not access.may_manage(team, user_id(ctx.db, "bob"), Role.RATER, ann)


# The 500s.


def test_huge_ids_and_lone_surrogates_are_4xx_and_the_connection_stays_usable(ctx):
    token = ctx.accounts["ann"].token
    with serve(ctx.app) as url:
        where = urlsplit(url)
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        requests = [
            ("GET", f"/api/v1/jobs/{10**23}", None),
            ("GET", f"/api/v1/checkpoints?job_id={10**23}", None),
            ("POST", f"/api/v1/jobs/{10**23}/cancel", None),
            ("GET", "/api/v1/jobs/%ED%A0%80", None),
            ("POST", "/api/v1/jobs", b'{"preset": "tiny-demo", "name": "\\ud800"}'),
            (
                "POST",
                "/api/v1/jobs",
                b'{"preset": "tiny-demo", "config": {"prompts": ["\\u0000"]}}',
            ),
            ("POST", "/api/v1/campaigns", b'{"name": "\\udfff", "models": [], "prompts": []}'),
            ("POST", "/api/v1/jobs", b'{"config": ' * 200 + b"{}" + b"}" * 200),
        ]
        for method, path, body in requests:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            text = answer.read().decode()
            assert 400 <= answer.status < 500, (path, body, answer.status, text)
            assert "Traceback" not in text
        connection.request("GET", "/api/v1/me", headers=headers)  # same keep-alive connection
        assert connection.getresponse().status == 200
        connection.close()


def test_job_logs_show_users_the_message_and_admins_the_full_log(ctx):
    job_id = ctx.db.write(lambda s: jobs.submit(s, ctx.settings, tiny_config()).id)
    ann = user_id(ctx.db, "ann")
    storage = ctx.settings.storage
    error = (
        "training process exited with status 1; log tail:\n"
        "Traceback (most recent call last):\n"
        f'  File "{storage}/jobs/{job_id}/run.py", line 3, in <module>\n'
        f"FileNotFoundError: {storage}/jobs/{job_id}/missing.bin"
    )
    values = {"owner_id": ann, "state": JobState.FAILED, "error": error}
    ctx.db.write(lambda s: s.execute(update(Job).where(Job.id == job_id).values(**values)))
    ann_sees = ctx.client.get(f"/api/v1/jobs/{job_id}", headers=ctx.accounts["ann"].headers)
    shown = ann_sees.json()["error"]
    assert "Traceback" not in shown and str(storage) not in shown
    assert "status 1" in shown and "FileNotFoundError" in shown
    admin = ctx.client.get(f"/api/v1/jobs/{job_id}", headers=ctx.accounts["ada"].headers)
    assert admin.json()["error"] == error


def test_job_logs_show_owners_the_progress_lines_without_tracebacks(ctx):
    job_id = ctx.db.write(lambda s: jobs.submit(s, ctx.settings, tiny_config()).id)
    ann, storage = user_id(ctx.db, "ann"), ctx.settings.storage
    log_file = storage / "jobs" / str(job_id) / "attempt-1.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(
        "step 1/2 · loss 0.1000 · reward 0.5000 ± 0.1000 · 1.00 s/step · ETA 1 s\n"
        f"checkpoint step 1 saved to {storage}/jobs/{job_id}/checkpoints/step-000001\n"
        "Traceback (most recent call last):\n"
        f'  File "{storage}/jobs/{job_id}/run.py", line 3, in <module>\n'
        "    secret_function()\n"
        f"OSError: disk full at {storage}/jobs/{job_id}\n"
        f"job {job_id} FAILED (attempt 1): OSError: disk full\n"
    )
    values = {"owner_id": ann, "state": JobState.FAILED, "error": "OSError: disk full"}
    ctx.db.write(lambda s: s.execute(update(Job).where(Job.id == job_id).values(**values)))
    ctx.db.write(
        lambda s: s.add(
            JobRun(
                job_id=job_id,
                attempt=1,
                worker="w1",
                lease_token=f"lease-{job_id}",
                log_path=f"jobs/{job_id}/attempt-1.log",
                outcome=RunOutcome.FAILED,
            )
        )
    )
    seen = ctx.client.get(f"/api/v1/jobs/{job_id}/log", headers=ctx.accounts["ann"].headers)
    assert seen.status_code == 200
    assert "step 1/2 · loss 0.1000" in seen.text
    assert "checkpoint step 1 saved to <storage>/jobs/" in seen.text
    assert "OSError: disk full at <storage>" in seen.text
    assert seen.text.rstrip().endswith(f"job {job_id}: failed\nOSError: disk full")
    assert str(storage) not in seen.text
    assert "Traceback" not in seen.text and "secret_function" not in seen.text
    full = ctx.client.get(f"/api/v1/jobs/{job_id}/log", headers=ctx.accounts["ada"].headers)
    assert "secret_function()" in full.text and str(storage) in full.text
    bob = ctx.client.get(f"/api/v1/jobs/{job_id}/log", headers=ctx.accounts["bob"].headers)
    assert bob.status_code == 403


def test_the_train_tab_shows_a_message_not_raw_exception_text(ctx):
    deep = "a:\n" + "".join("  " * n + "- \n" for n in range(1, 3000))
    nested = "x: " + "[" * 5000 + "]" * 5000
    for advanced in (deep, nested):
        with pytest.raises(train.StudioError) as refused:
            train.merged_config(advanced, "", "", "", None, None, None, None, None)
        assert "recursion" not in str(refused.value)
    with pytest.raises(train.StudioError, match="out of range"):
        train.merged_config("seed: 99999999999999999999999999", "", "", "", *[None] * 5)
    verdict = train.validation_message(
        train.merged_config("seed: 1099511627776", "", "", "", *[None] * 5), "tiny-demo"
    )
    assert "Fix before queueing" in verdict and "seed" in verdict
    with pytest.raises(train.StudioError):
        train.merged_config("", "", "", "", float("inf"), None, None, None, None)


def test_a_nul_byte_or_lone_surrogate_in_the_ui_is_refused(ctx):
    for advanced in ('name_words: ["\\0"]', 'prompts: ["\\ud800"]'):
        with pytest.raises(train.StudioError):
            train.merged_config(advanced, "", "", "", *[None] * 5)
    with pytest.raises(train.StudioError, match="NUL"):
        train.merged_config("", "a\x00b", "", "", *[None] * 5)
