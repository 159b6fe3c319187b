"""The REST API fuzzed from its OpenAPI schema on PostgreSQL; NUL bytes (which PostgreSQL
refuses in text and JSON) and ids beyond its 32-bit keys refused with a 4xx (issue 14)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core import arena, submission
from app.core.errors import StudioError
from app.core.models import Campaign, Job, Role
from app.web.factory import create_app
from tests.api_fuzz import fuzz_studio
from tests.web_support import add_account, tiny_config, web_settings

NUL_JOBS = [
    {"preset": "tiny-demo", "name": "a\x00b"},
    {"preset": "tiny-demo", "config": {"prompts": ["a red\x00 circle"]}},
    {"preset": "tiny-demo", "config": {"positive_words": ["\x00"]}},
]


def test_no_generated_request_gets_a_5xx_on_postgresql(tmp_path, empty_postgres_url) -> None:
    settings = web_settings(tmp_path, database_url=empty_postgres_url)
    assert fuzz_studio(settings, examples=5) >= 100


def test_nul_bytes_in_prompts_and_names_are_a_4xx_on_postgresql(tmp_path, empty_postgres_url):
    settings = web_settings(tmp_path, database_url=empty_postgres_url)
    app = create_app(settings)
    db = app.state.studio.db
    trainer = add_account(db, "nul", Role.TRAINER)
    with TestClient(app, raise_server_exceptions=False) as client:
        for body in NUL_JOBS:
            made = client.post("/api/v1/jobs", json=body, headers=trainer.headers)
            assert made.status_code == 400 and "NUL" in made.json()["detail"], made.text
        for path in ("/api/v1/jobs/2147483648", "/api/v1/campaigns/2147483648/results"):
            assert client.get(path, headers=trainer.headers).status_code == 422  # INTEGER keys
        campaign = {"name": "n\x00", "models": ["base", "x"], "prompts": ["p"], "seeds": [0]}
        made = client.post("/api/v1/campaigns", json=campaign, headers=trainer.headers)
        assert made.status_code == 400 and "NUL" in made.json()["detail"]
    # the core refuses them too (the Train and Arena tabs call it without the API's layer)
    try:
        submission.submit_job(db, settings, tiny_config(prompts=["x\x00"]))
    except StudioError as error:
        assert "NUL" in str(error)
    else:
        raise AssertionError("a NUL byte in a prompt was stored")
    try:
        db.write(
            lambda s: arena.create_campaign(s, "c\x00", ["base", "b"], ["p"], [0], ["overall"])
        )
    except StudioError as error:
        assert "NUL" in str(error)
    else:
        raise AssertionError("a NUL byte in a campaign name was stored")
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0
