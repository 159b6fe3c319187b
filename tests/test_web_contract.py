"""gradio_client contract tests of each tab's endpoints on a served studio, and the REST API,
including bad input: each gets a clear message and nothing is stored."""

from __future__ import annotations

import io
import struct
import zlib

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from sqlalchemy import func, select, update

from app.core.models import Campaign, CampaignState, Job, RewardPreset, Role, User, Vote
from app.web.factory import create_app
from tests.web_support import (
    PASSWORD,
    add_account,
    ready_campaign,
    serve,
    stored_checkpoint,
    tiny_config,
    user_id,
    web_settings,
)

STUDIO_ENDPOINTS = {
    "/lab_preview",
    "/lab_sweep",
    "/lab_save_preset",
    "/lab_load_preset",
    "/train_preset",
    "/train_reward_preset",
    "/train_prompt_file",
    "/train_submit",
    "/train_job",
    "/train_samples",
    "/train_compare",
    "/train_seed_strip",
    "/train_cancel",
    "/train_monitor",
    "/arena_create",
    "/arena_stop_rendering",
    "/arena_resume_rendering",
    "/arena_next",
    "/vote_left",
    "/vote_right",
    "/vote_tie",
    "/vote_both_bad",
    "/vote_skip",
    "/arena_results",
    "/arena_exclude",
    "/arena_include",
    "/arena_jsonl",
    "/arena_csv",
    "/checkpoint_show",
    "/checkpoint_compare",
    "/admin_add_user",
    "/admin_change_user",
    "/admin_revoke_token",
    "/checkpoint_evaluate",
}
RATER_ENDPOINTS = {
    "/arena_next",
    "/vote_left",
    "/vote_right",
    "/vote_tie",
    "/vote_both_bad",
    "/vote_undo",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-contract")
    settings = web_settings(folder)
    app = create_app(settings)
    db = app.state.studio.db
    trainer = add_account(db, "tom", Role.TRAINER)
    rater = add_account(db, "rae", Role.RATER)
    admin = add_account(db, "ada", Role.ADMIN)
    with serve(app) as url:
        downloads = folder / "downloads"
        studio = Client(
            url + "/studio/", headers=trainer.headers, verbose=False, download_files=downloads
        )
        yield {
            "url": url,
            "db": db,
            "settings": settings,
            "studio": studio,
            "trainer": trainer,
            "rater": rater,
            "admin": admin,
            "folder": folder,
        }


def count(db, model) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def png(size=(24, 24), colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def claimed_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose header claims another size (a decompression bomb's signature)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[:8] + ihdr + data[33:]


def test_every_tab_exposes_its_named_endpoints(served):
    names = set(
        served["studio"].view_api(print_info=False, return_format="dict")["named_endpoints"]
    )
    assert names >= STUDIO_ENDPOINTS
    rater = Client(
        served["url"] + "/rate/", headers=served["rater"].headers, verbose=False
    ).view_api(print_info=False, return_format="dict")
    assert set(rater["named_endpoints"]) >= RATER_ENDPOINTS
    assert not {"/lab_preview", "/train_submit", "/arena_create"} & set(rater["named_endpoints"])


def test_gradio_api_refuses_raters_on_the_studio(served):
    with pytest.raises(ValueError, match="Could not fetch config"):
        Client(served["url"] + "/studio/", headers=served["rater"].headers, verbose=False)
    join = httpx.post(
        served["url"] + "/studio/gradio_api/queue/join",
        json={"fn_index": 0, "data": [], "session_hash": "x"},
        headers=served["rater"].headers,
    )
    assert join.status_code == 403


def test_reward_lab_preview_sweep_and_presets(served):
    client, db = served["studio"], served["db"]
    message, table, _chart, ranking, images, saliency = client.predict(
        "<b>a red circle</b>",
        "photo",
        "painting",
        0.1,
        "current model",
        "base",
        "0-1",
        [],
        api_name="/lab_preview",
    )
    assert "&lt;b&gt;" in message and "<b>" not in message
    assert len(table["data"]) == 2
    headers = table["headers"]
    assert {"r(p)", "r(photo. p)", "r(painting. p)", "srp", "rank before", "rank after"} <= set(
        headers
    )
    assert "Ranking before" in ranking and len(images) == 2 and len(saliency) == 2
    frame, warning = client.predict("a red circle", "photo, painting, zebra", api_name="/lab_sweep")
    assert [row[0] for row in frame["data"]] == ["photo", "painting", "zebra"]
    assert frame["headers"][-1] == "tokenizer"
    assert [row[-1] for row in frame["data"]] == ["", "", "unknown: zebra"]
    assert "does not know “zebra”" in warning
    status, _ = client.predict("style", "photo", "painting", 0.2, api_name="/lab_save_preset")
    assert "Saved" in status
    with pytest.raises(AppError, match="exists"):
        client.predict("style", "photo", "painting", 0.2, api_name="/lab_save_preset")
    assert count(db, RewardPreset) == 1
    assert client.predict("style", api_name="/lab_load_preset") == ("photo", "painting", 0.2)
    # the preset's k reaches training: as the denoise discount across the window
    import yaml

    advanced = yaml.safe_dump(tiny_config())
    positive, negative, advanced, note = client.predict(
        "style", advanced, api_name="/train_reward_preset"
    )
    assert (positive, negative) == ("photo", "painting") and "k = 0.2" in note
    fields = (positive, negative, "a red circle", 2, 1, 2, 1, 1)
    client.predict("tiny-demo", "k job", advanced, *fields, api_name="/train_submit")
    with db.session() as session:
        job = session.scalars(select(Job).where(Job.name == "k job")).one()
        assert job.config["direct_align"]["discount_denoise"] == {"low": 0.2, "high": 0.2}


def test_reward_lab_scores_with_the_chosen_reward_and_refuses_missing_folders(served):
    client, data = served["studio"], served["folder"] / "data"

    def preview(*chosen):
        common = ("a red circle", "photo", "painting", 0.0, "current model", "base", "0-1", [])
        return client.predict(*common, *chosen, api_name="/lab_preview")

    plain = preview("tiny", "", "tiny", "")[1]["data"]
    biased = preview("tiny-biased", "", "tiny", "")[1]["data"]
    assert len(biased) == 2 and biased != plain  # the same images, another reward's scores
    frame, _ = client.predict("a red circle", "photo", "tiny-biased", "", api_name="/lab_sweep")
    assert [row[0] for row in frame["data"]] == ["photo"]
    (data / "not-diffusers").mkdir(exist_ok=True)
    for chosen, message in (
        (("zebra", "", "tiny", ""), "reward: one of tiny, tiny-biased"),
        (("tiny", "no-such-weights", "tiny", ""), "reward path: nothing at 'no-such-weights'"),
        (("tiny", "/etc", "tiny", ""), "reward path: must be a path inside the studio's data"),
        (("tiny", "", "tiny", "/etc"), "base model path: must be a path inside"),
        (("tiny", "", "flux", "not-diffusers"), "base model: model folder .* not in diffusers"),
    ):
        with pytest.raises(AppError, match=message):
            preview(*chosen)


def test_reward_lab_scores_uploads_and_refuses_bad_ones(served):
    client, folder = served["studio"], served["folder"]
    good = folder / "good.png"
    good.write_bytes(png())

    def preview(upload):
        return client.predict(
            "a red circle",
            "photo",
            "painting",
            0.0,
            "uploads",
            "base",
            "",
            [handle_file(str(upload))],
            api_name="/lab_preview",
        )

    assert len(preview(good)[1]["data"]) == 1
    not_image = folder / "not-image.png"
    not_image.write_text("hello, I am text")
    bomb = folder / "bomb.png"
    bomb.write_bytes(claimed_size(png(), 30_000, 30_000))
    big = folder / "big.png"
    big.write_bytes(b"\0" * (21 * 2**20))
    for path, message in (
        (not_image, "not an image"),
        (bomb, "decompression bomb"),
        (big, "too large|larger|exceeds|size"),
    ):
        with pytest.raises((AppError, ValueError, httpx.HTTPError), match=message):
            preview(path)


def test_train_form_validates_queues_and_refuses_bad_prompt_files(served):
    client, db, folder = served["studio"], served["db"], served["folder"]
    config = tiny_config()
    fields = ("yaml-box", "photo", "painting", "a red circle\na blue square", 2, 1, 2, 1, 1)
    advanced, *rest = fields
    import yaml

    advanced = yaml.safe_dump(config)
    before = count(db, Job)
    bad = list(rest)
    bad[3] = 0
    with pytest.raises(AppError, match="steps"):
        client.predict("tiny-demo", "bad job", advanced, *bad, api_name="/train_submit")
    with pytest.raises(AppError, match="YAML"):
        client.predict("tiny-demo", "bad yaml", "steps: [", *rest, api_name="/train_submit")
    assert count(db, Job) == before
    message, table, _ = client.predict(
        "tiny-demo", "good job", advanced, *rest, api_name="/train_submit"
    )
    assert "Queued job" in message or "saved but not yet queued" in message
    assert count(db, Job) == before + 1
    assert "good job" in [row[1] for row in table["data"]]
    empty = folder / "empty.txt"
    empty.write_bytes(b"\n  \n")
    latin = folder / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    for path, message in ((empty, "empty"), (latin, "not UTF-8")):
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(path)), api_name="/train_prompt_file")
    good = folder / "prompts.txt"
    good.write_text("a red circle\n\na blue square\n", encoding="utf-8")
    assert client.predict(handle_file(str(good)), api_name="/train_prompt_file") == (
        "a red circle\na blue square"
    )
    assert count(db, Job) == before + 1
    preset = client.predict("flux-paper-32gpu", api_name="/train_preset")
    assert "hpsv2.1" in preset[0]


def test_jobs_show_progress_and_cancel(served):
    client, db, settings = served["studio"], served["db"], served["settings"]
    job_id, _, _ = stored_checkpoint(db, settings)
    progress, *_ = client.predict(job_id, api_name="/train_job")
    assert f"Job {job_id}" in progress and "queue position" in progress
    with pytest.raises(AppError, match="another trainer's"):  # a job without owner: admins'
        client.predict(job_id, api_name="/train_cancel")
    owner = user_id(db, "tom")
    db.write(lambda s: s.execute(update(Job).where(Job.id == job_id).values(owner_id=owner)))
    client.predict(job_id, api_name="/train_cancel")
    progress, *_ = client.predict(job_id, api_name="/train_job")
    assert "cancelled" in progress
    with pytest.raises(AppError, match="already cancelled"):
        client.predict(job_id, api_name="/train_cancel")
    with pytest.raises(AppError, match="job: choose"):
        client.predict("../../etc", api_name="/train_cancel")


def test_arena_votes_once_per_pair_results_and_export(served):
    db, settings = served["db"], served["settings"]
    campaign_id, pairs = ready_campaign(db, settings, "contract", pairs=2)
    rater = Client(served["url"] + "/rate/", headers=served["rater"].headers, verbose=False)
    prompt, left, right, status = rater.predict(campaign_id, "overall", api_name="/arena_next")
    assert prompt == "a red circle" and left and right and "overall" in status
    rater.predict(campaign_id, "overall", api_name="/vote_left")
    assert count(db, Vote) == 1
    # the API path: a second vote on the same pair is refused and not stored
    api = httpx.Client(base_url=served["url"], headers=served["rater"].headers)
    with db.session() as session:
        voted = session.scalar(select(Vote.comparison_id))
    again = api.post(
        "/api/v1/votes", json={"comparison_id": voted, "criterion": "overall", "choice": "right"}
    )
    assert again.status_code == 409 and "already voted" in again.json()["detail"]
    assert count(db, Vote) == 1
    other = next(p for p in pairs if p != voted)
    ok = api.post(
        "/api/v1/votes", json={"comparison_id": other, "criterion": "overall", "choice": "left"}
    )
    assert ok.status_code == 201
    done = rater.predict(campaign_id, "overall", api_name="/arena_next")
    assert "judged every pair" in done[-1]
    studio = served["studio"]
    summary, plot, verdict, rates, scores, *_ = studio.predict(
        campaign_id, "overall", api_name="/arena_results"
    )
    assert "2 counted votes" in summary and "agreement" in summary
    assert Image.open(plot).width > 300 and "Verdict" in verdict
    assert {row[0] for row in rates["data"]} == {"base", "other"}
    assert {row[0] for row in scores["data"]} == {"base", "other"}
    exported = studio.predict(campaign_id, "preferences", api_name="/arena_jsonl")
    with open(exported, encoding="utf-8") as handle:
        text = handle.read()
    assert text.count("\n") == 2 and '"winner_model": "base"' in text
    raw = studio.predict(campaign_id, "votes", api_name="/arena_csv")
    assert raw.endswith(f"campaign-{campaign_id}-contract-raw-votes.csv")
    with open(raw, encoding="utf-8") as handle:
        assert handle.read().splitlines()[0].startswith("vote_id,time,criterion,choice")


def test_rest_api_undoes_a_vote_excludes_a_rater_and_exports_either_view(served):
    db, settings, url = served["db"], served["settings"], served["url"]
    campaign_id, pairs = ready_campaign(db, settings, "rest arena", pairs=2)
    rater, trainer, admin = (
        httpx.Client(base_url=url, headers=served[who].headers, timeout=30)
        for who in ("rater", "trainer", "admin")
    )
    votes = [
        rater.post(
            "/api/v1/votes", json={"comparison_id": p, "criterion": "overall", "choice": c}
        ).json()["id"]
        for p, c in zip(pairs, ("tie", "left"), strict=True)
    ]
    assert trainer.delete(f"/api/v1/rate/votes/{votes[0]}").status_code == 404
    undone = rater.delete(f"/api/v1/rate/votes/{votes[0]}")
    assert undone.status_code == 200 and undone.json()["comparison_id"] == pairs[0]
    shown = rater.get(f"/api/v1/rate/campaigns/{campaign_id}/next", params={"criterion": "overall"})
    assert shown.json()["comparison_id"] == pairs[0] and shown.json()["judged"] == 1
    exclusion = f"/api/v1/campaigns/{campaign_id}/excluded_raters"
    rae = user_id(db, "rae")
    assert trainer.put(f"{exclusion}/{rae}").status_code == 403
    assert admin.put(f"{exclusion}/{rae}").json() == {"excluded_raters": [rae]}
    found = trainer.get(f"/api/v1/campaigns/{campaign_id}/results").json()
    assert found["votes"] == 0 and found["all_raters"]["votes"] == 1
    assert admin.put(f"{exclusion}/99999").status_code == 404
    assert admin.delete(f"{exclusion}/{rae}").json() == {"excluded_raters": []}
    export = trainer.get(f"/api/v1/campaigns/{campaign_id}/export", params={"format": "csv"})
    assert export.headers["content-disposition"] == (
        f'attachment; filename="campaign-{campaign_id}-rest-arena-raw-votes.csv"'
    )
    assert export.text.splitlines()[0].startswith("vote_id,") and len(export.text.splitlines()) == 2
    prefs = trainer.get(f"/api/v1/campaigns/{campaign_id}/export", params={"view": "preferences"})
    assert "preferences.jsonl" in prefs.headers["content-disposition"]
    bad = trainer.get(f"/api/v1/campaigns/{campaign_id}/export", params={"view": "nope"})
    assert bad.status_code == 422
    listed = {c["id"]: c for c in trainer.get("/api/v1/campaigns").json()}
    assert listed[campaign_id]["rendered"] == [4, 4]


def test_the_arena_tab_stops_and_resumes_a_campaigns_rendering(served):
    client, db = served["studio"], served["db"]
    tom = user_id(db, "tom")

    def pending(session) -> int:
        found = Campaign(
            name="to stop",
            models=["base", "checkpoint:999999"],
            prompts=["a red circle"],
            seeds=[0],
            criteria=["overall"],
            state=CampaignState.PENDING,
            created_by=tom,
        )
        session.add(found)
        session.flush()
        return found.id

    campaign_id = db.write(pending)
    status, table = client.predict(campaign_id, api_name="/arena_stop_rendering")
    assert "rendering stops" in status
    assert [r[2] for r in table["data"] if r[0] == campaign_id] == ["cancelled"]
    status, _ = client.predict(campaign_id, api_name="/arena_resume_rendering")
    assert "rendering resumes" in status
    with db.session() as session:
        assert not session.get(Campaign, campaign_id).cancel_requested
    ada = user_id(db, "ada")
    db.write(
        lambda s: s.execute(
            update(Campaign).values(created_by=ada).where(Campaign.id == campaign_id)
        )
    )
    with pytest.raises(AppError, match="another trainer's"):
        client.predict(campaign_id, api_name="/arena_stop_rendering")
    with pytest.raises(AppError, match="campaign: choose"):
        client.predict(None, api_name="/arena_resume_rendering")


def test_the_admin_tab_adds_changes_and_revokes_as_the_api_does(served):
    db, url = served["db"], served["url"]
    admin = Client(url + "/studio/", headers=served["admin"].headers, verbose=False)
    with pytest.raises(AppError, match="password"):
        admin.predict("newbie", "password", "rater", api_name="/admin_add_user")
    status, users, *_ = admin.predict("newbie", PASSWORD, "rater", api_name="/admin_add_user")
    assert "Added newbie" in status
    assert ["newbie", "rater", "yes"] in [row[1:] for row in users["data"]]
    with pytest.raises(AppError, match="taken"):
        admin.predict("NEWBIE", PASSWORD, "rater", api_name="/admin_add_user")
    signed_in = add_account(db, "sue", Role.TRAINER)
    api = httpx.Client(base_url=url, headers=signed_in.headers)
    assert api.get("/api/v1/me").status_code == 200
    status, users, tokens, *_ = admin.predict("sue", "disable", "", api_name="/admin_change_user")
    assert "sessions ended" in status
    assert ["sue", "trainer", "no"] in [row[1:] for row in users["data"]]
    assert api.get("/api/v1/me").status_code == 401  # at once, token and all
    admin.predict("sue", "enable", "", api_name="/admin_change_user")
    assert api.get("/api/v1/me").status_code == 200
    (token_id,) = [row[0] for row in tokens["data"] if row[1] == "sue"]
    status, _, tokens, *_ = admin.predict(token_id, api_name="/admin_revoke_token")
    assert f"Token {token_id} revoked" in status
    assert [row[-1] for row in tokens["data"] if row[0] == token_id] == ["no"]
    assert api.get("/api/v1/me").status_code == 401
    with pytest.raises(AppError, match="cannot demote or disable yourself"):
        admin.predict("ada", "make trainer", "", api_name="/admin_change_user")
    own = httpx.Client(base_url=url, headers=served["admin"].headers)
    assert own.patch("/api/v1/users/ada", json={"active": False}).status_code == 409
    with pytest.raises(AppError, match="role"):  # a trainer may not use the tab's handlers
        served["studio"].predict("mallory", PASSWORD, "admin", api_name="/admin_add_user")
    with db.session() as session:
        assert session.scalar(select(func.count()).where(User.username == "mallory")) == 0


def test_checkpoint_tab_shows_sha_card_and_snippet(served):
    db, settings, client = served["db"], served["settings"], served["studio"]
    _, checkpoint_id, weights = stored_checkpoint(db, settings)
    import hashlib

    sha, link, card, snippet = client.predict(checkpoint_id, api_name="/checkpoint_show")
    assert sha == hashlib.sha256(weights).hexdigest()
    assert f"/api/v1/checkpoints/{checkpoint_id}/download" in link
    assert "## Training config" in card and sha in card and "code version" in card
    assert "load_file" in snippet
    with pytest.raises(AppError, match="not found"):
        client.predict(99999, api_name="/checkpoint_show")


def test_rest_api_jobs_and_checkpoints(served):
    api = httpx.Client(base_url=served["url"], headers=served["trainer"].headers, timeout=30)
    before = len(api.get("/api/v1/jobs").json())
    bad = api.post("/api/v1/jobs", json={"preset": "tiny-demo", "config": {"steps": -1}})
    assert bad.status_code == 400 and "steps" in bad.json()["detail"]
    unknown = api.post("/api/v1/jobs", json={"preset": "tiny-demo", "config": {"model": "nope"}})
    assert unknown.status_code == 400 and "unknown model" in unknown.json()["detail"]
    assert len(api.get("/api/v1/jobs").json()) == before
    made = api.post("/api/v1/jobs", json={"config": tiny_config(), "name": "api job"})
    assert made.status_code in (201, 503), made.text
    listed = api.get("/api/v1/jobs").json()
    assert listed[0]["name"] == "api job" and listed[0]["state"] == "queued"
    assert listed[0]["queue_position"] >= 1
    cancelled = api.post(f"/api/v1/jobs/{listed[0]['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    rows = api.get("/api/v1/checkpoints").json()
    assert rows and all(len(r["sha256"]) == 64 for r in rows)
    schema = api.get("/openapi.json").json()
    assert "/api/v1/votes" in schema["paths"] and "HTTPBearer" in str(schema["components"])
