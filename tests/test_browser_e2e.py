"""The studio in a real browser: Debian's Chromium, driven by Playwright, against a served studio
in embedded mode (SQLite, the SQLAlchemy broker, an in-process worker that really trains).

A trainer signs in through the login page, previews a reward shift in the Reward Lab (an empty
table before, then scores, rankings, saliency overlays and their colour scale) and sweeps words
(an unknown one named), queues the tiny demo (shortened in the form's quick fields) and watches
it succeed in the job list and its log, downloads the compared steps' stored grid PNGs and sees
one seed across every sample step (step 0 and the checkpoint's), creates a campaign of the new
checkpoint ("browser demo · step 2") against the base model while the worker is busy, stops its
rendering (cancelled) and resumes it, and sees the campaign table follow its rendering,
downloads the checkpoint with the browser's session cookie (its sha256 matches the page and the
database) and runs the page's snippet on the downloaded file alone, votes (confirmed), sees the
forest plot, verdict, the number of bootstrap resamples behind the Bradley-Terry intervals,
rater quality and exports the raw votes as a named file; the trainer makes an API token through
the API with the browser's session (the studio has no page for it) and a script gets in with
it; a rater votes in the raters' app, undoes the vote and votes again; an admin adds a user in
the Admin tab, which the trainer does not see, sets their password (the new one signs in, the
old one not) and disables them (their session ends), and revokes the trainer's token there (the
API then refuses it); a rater opening the studio gets a page that links to the rating app;
Compare samples pairs step 0 with the newest step and Compare two models renders the base model
beside the checkpoint. Each tab is saved as a full-page screenshot under
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import select

from app.core import arena_results, arena_stats, downloads
from app.core.db import Database
from app.core.models import (
    Campaign,
    CampaignState,
    Checkpoint,
    Comparison,
    Job,
    JobState,
    Role,
    User,
    Vote,
)
from app.web.factory import create_app
from tests.browser_samples import compare_steps, download_grids, fixed_seed_samples, seed_strip
from tests.browser_support import (
    CHROMIUM,
    PAGE_WAIT_MS,
    WORK_WAIT_MS,
    Served,
    WorkerHold,
    choose,
    new_page,
    open_tab,
    run_snippet,
    screenshot,
    table_rows,
)
from tests.browser_tokens import new_token, revoke_token
from tests.web_support import PASSWORD, add_account, serve, user_id, web_settings
from worker.embedded import EmbeddedWorker

QUICK_FIELDS = {
    "steps": 2,
    "batch size": 1,
    "rollout steps": 2,
    "checkpoint every": 2,
    "sample every": 2,
}
LAB_SEEDS = 4
WIN_RATES = "Win rates (Wilson 95% intervals, ties count half)"
SCORES = "Bradley-Terry scores (bootstrap 95% intervals; base = 0)"
RATERS = "Rater quality (gold pairs, repeated pairs, agreement with the majority)"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The studio served on a free port with its embedded worker, a trainer and a rater."""
    folder = tmp_path_factory.mktemp("browser")
    settings = web_settings(
        folder, lease_seconds=10, heartbeat_seconds=0.5, maintenance_seconds=0.5
    )
    app = create_app(settings)
    db = app.state.studio.db
    add_account(db, "tess", Role.TRAINER)
    add_account(db, "rory", Role.RATER)
    worker = EmbeddedWorker(settings)
    hold = WorkerHold(worker.celery, settings)
    with worker, serve(app) as url:
        yield Served(url, db, settings.storage, hold)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from Debian's package (``make test`` installs it)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make test does)")
    expect.set_options(timeout=PAGE_WAIT_MS)
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield found
        found.close()


def sign_in(
    page: Page,
    url: str,
    username: str,
    landing: str,
    password: str = PASSWORD,
    wrong: str = "not the password",
) -> None:
    """Open ``landing``, get sent to the login page, be refused with the ``wrong`` password,
    sign in with ``password`` and come back to ``landing``."""
    page.goto(url + landing)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(wrong)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + landing)
    expect(page.get_by_text("Signed in as")).to_contain_text(username)


def preview_reward_shift(page: Page) -> None:
    """Score images of the base model for photo vs painting: scores and rankings appear."""
    tab = open_tab(page, "Reward Lab")
    grid = tab.get_by_role("grid", name="Scores per image", exact=True)
    # before the first preview: headed and empty, not Gradio's "1 2 3"
    expect(grid.get_by_role("columnheader", name="r(p)", exact=True)).to_be_visible()
    expect(grid.get_by_role("columnheader", name="1", exact=True)).to_have_count(0)
    expect(tab.get_by_text("a job that uses the preset trains its denoise")).to_be_visible()
    tab.get_by_label("Seeds").fill(f"0-{LAB_SEEDS - 1}")
    tab.get_by_role("button", name="Preview reward shift").click()
    expect(tab.get_by_text(f"Scored {LAB_SEEDS} image(s)")).to_be_visible(timeout=WORK_WAIT_MS)
    for header in ("r(p)", "r(photo. p)", "r(painting. p)", "srp", "rank before", "rank after"):
        expect(grid.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
    rows = table_rows(tab, "Scores per image", LAB_SEEDS)
    assert [row[0] for row in rows] == [str(n) for n in range(LAB_SEEDS)]
    ranking = tab.locator("p", has_text="Ranking before")
    for column, title in ((-2, "Ranking before"), (-1, "Ranking after")):
        assert sorted(int(row[column]) for row in rows) == list(range(1, LAB_SEEDS + 1))
        order = ", ".join(f"#{row[0]}" for row in sorted(rows, key=lambda r: int(r[column])))
        expect(ranking).to_contain_text(f"{title} ")
        expect(ranking).to_contain_text(order)
    # one saliency overlay per image, captioned with its SRP, beside the colour scale
    expect(tab.locator('img[alt*=" · SRP "]')).to_have_count(LAB_SEEDS)
    scale = tab.locator(".block", has=page.get_by_text("Colour scale", exact=True))
    expect(scale.locator("img")).to_be_visible()
    tab.get_by_text("Sensitivity sweep", exact=True).click()
    tab.get_by_role("button", name="Sweep", exact=True).click()
    expect(tab.get_by_text("tokenizer does not know “zebra”")).to_be_visible()
    swept = {row[0]: row[-1] for row in table_rows(tab, "Reward shift per word", 7)}
    assert swept["zebra"] == "unknown: zebra" and swept["photo"] == ""
    screenshot(page, "1-reward-lab")


def queue_tiny_demo(page: Page, served: Served) -> int:
    """Queue the tiny demo at a few steps from the Train tab; wait until it succeeds."""
    tab = open_tab(page, "Train")
    tab.get_by_label("Job name").fill("browser demo")
    for field, value in QUICK_FIELDS.items():
        tab.get_by_label(field, exact=True).fill(str(value))
    expect(tab.get_by_text("✓ Valid: srpo on tiny, 2 steps")).to_be_visible()
    tab.get_by_role("button", name="Queue job").click()
    queued = tab.get_by_text(re.compile(r"Queued job \d+\."))
    expect(queued).to_be_visible()
    job_id = int(re.search(r"\d+", queued.inner_text()).group())
    progress = tab.locator(f'.job-progress[data-state="{JobState.SUCCEEDED.value}"]')
    expect(progress).to_be_visible(timeout=WORK_WAIT_MS)
    expect(progress).to_contain_text(f"Job {job_id}: browser demo")
    expect(progress).to_contain_text("step 2/2")
    expect(progress.locator("progress")).to_have_attribute("value", "100")
    # the job list is re-read on the same timer, and may be one tick behind the progress
    jobs = tab.get_by_role("grid", name="Jobs", exact=True)
    expect(jobs.get_by_role("gridcell", name="succeeded", exact=True)).to_be_visible()
    header = jobs.get_by_role("columnheader").first  # headers break between words only
    assert header.evaluate("cell => getComputedStyle(cell).wordBreak") == "keep-all"
    (row,) = [r for r in table_rows(tab, "Jobs") if r[0] == str(job_id)]
    assert row[1:3] == ["browser demo", "succeeded"]
    assert row[4:6] == ["100%", "2/2"]
    log = tab.get_by_label("Job log")
    expect(log).to_have_value(re.compile("succeeded at step 2"))
    for line in (r"step 1/2 · loss \S+ · reward \S+ ± \S+ · \S+ s/step", "checkpoint at step 2"):
        expect(log).to_have_value(re.compile(line))
    with served.db.session() as session:
        job = session.get(Job, job_id)
        assert (job.state, job.step, job.error) == (JobState.SUCCEEDED, 2, None)
    fixed_seed_samples(tab, served, job_id, QUICK_FIELDS["steps"])
    compare_steps(tab, served, job_id, QUICK_FIELDS["steps"])
    download_grids(tab, served, job_id, [0, QUICK_FIELDS["steps"]])
    seed_strip(tab, served, job_id)
    screenshot(page, "2-train")
    return job_id


def final_checkpoint(db: Database, job_id: int) -> Checkpoint | None:
    """The job's last checkpoint row."""
    with db.session() as session:
        return session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step.desc())
        ).first()


def create_campaign(page: Page, label: str, worker: WorkerHold) -> int:
    """Create a campaign of the checkpoint (shown by its ``label``) against the base model in
    the Arena tab while the worker is busy; stop its rendering and resume it; the campaign
    table follows its rendering on its own until it is ready."""
    tab = open_tab(page, "Arena")
    worker.hold()
    tab.get_by_label("Name", exact=True).fill("browser campaign")
    tab.get_by_role("checkbox", name="base", exact=True).check()
    tab.get_by_role("checkbox", name=label, exact=True).check()
    tab.get_by_label("Prompts (one per line)").fill("a red circle")
    tab.get_by_label("Seeds").fill("0")
    tab.get_by_role("button", name="Create campaign").click()
    created = tab.get_by_text(re.compile(r"Created campaign \d+;"))
    expect(created).to_be_visible()
    campaign_id = int(re.search(r"\d+", created.inner_text()).group())
    campaigns = tab.get_by_role("grid", name="Campaigns", exact=True)
    stop_and_resume(tab, campaigns, campaign_id, worker)
    # no click: the tab's timer re-reads the table while the campaign renders
    expect(campaigns.get_by_role("gridcell", name="2 of 2 images", exact=True)).to_be_visible(
        timeout=WORK_WAIT_MS
    )
    (row,) = table_rows(tab, "Campaigns", 1)
    assert row[:5] == [
        str(campaign_id),
        "browser campaign",
        "ready",
        "2 of 2 images",
        f"base, {label}",
    ]
    return campaign_id


def stop_and_resume(tab: Locator, campaigns: Locator, campaign_id: int, worker: WorkerHold) -> None:
    """Stop the new campaign's rendering (Stop and Resume act on the campaign chosen under
    Results, which follows the one just created) while it waits for the worker: the table
    shows it cancelled with no image; resume it and let the worker go on."""
    tab.get_by_role("button", name="Stop rendering").click()
    expect(tab.get_by_text(f"Campaign {campaign_id}: rendering stops")).to_be_visible()
    (row,) = table_rows(tab, "Campaigns", 1)
    assert row[2:4] == ["cancelled", "0 of 2 images"]
    worker.release()  # the queued rendering task finds the campaign cancelled and ends
    tab.get_by_role("button", name="Resume rendering").click()
    expect(tab.get_by_text(f"Campaign {campaign_id}: rendering resumes.")).to_be_visible()
    expect(campaigns.get_by_role("gridcell", name="cancelled", exact=True)).to_have_count(0)


def download_checkpoint(
    browser: Browser, page: Page, served: Served, checkpoint: Checkpoint, folder: Path
) -> None:
    """Download the weights through the page's link with the session cookie (a browser without
    it is refused); the sha256 matches the page and the database."""
    tab = open_tab(page, "Checkpoints")
    (row,) = table_rows(tab, "Checkpoints", 1)
    assert row[:3] == [str(checkpoint.id), f"{checkpoint.job_id}: browser demo", "2"]
    assert row[-1] == checkpoint.sha256[:16] + "…"
    choose(tab, "Checkpoint", f"{checkpoint.id}: job {checkpoint.job_id} step {checkpoint.step}")
    # the box's <label> also holds its copy button, which takes the label's name
    shown = tab.locator("label", has_text="sha256 of the weights").locator("textarea")
    expect(shown).to_have_value(re.compile(r"^[0-9a-f]{64}$"))
    # the tiny demo fine-tunes the whole transformer: its download is a zip of the folder
    link = tab.get_by_role("link", name=re.compile(r"^Download (weights|model folder as zip)"))
    with page.expect_download() as started:
        link.click()
    anonymous = browser.new_context()
    refused = anonymous.request.get(served.url + link.get_attribute("href"))
    assert refused.status == 401
    anonymous.close()
    target = folder / started.value.suggested_filename
    started.value.save_as(target)
    weights = target.read_bytes()
    if downloads.bundled(checkpoint):
        with zipfile.ZipFile(target) as bundle:
            weights = bundle.read(checkpoint.weights_file)
    digest = hashlib.sha256(weights).hexdigest()
    with served.db.session() as session:
        stored = session.get(Checkpoint, checkpoint.id).sha256
    assert digest == shown.input_value() == stored
    assert target.name == downloads.download_name(checkpoint)
    run_snippet(tab, target)
    compare_models(tab, f"browser demo · step {checkpoint.step}")
    screenshot(page, "4-checkpoints")


def compare_models(tab: Locator, label: str) -> None:
    """Compare two models: the base model and the checkpoint (``label``) rendered at the same
    seeds, A left of B."""
    tab.get_by_text("Compare two models (any jobs)", exact=True).click()
    choose(tab, "Model A (left)", "base")
    choose(tab, "Model B (right)", label)
    tab.get_by_label("Seeds", exact=True).fill("0-1")
    tab.get_by_role("button", name="Render A and B").click()
    expect(tab.get_by_text(f"base (left) against {label} (right)")).to_be_visible(
        timeout=WORK_WAIT_MS
    )
    pairs = tab.locator(".block", has=tab.page.get_by_text("A | B at the same seeds", exact=True))
    images = pairs.locator("img")
    expect(images).to_have_count(4)
    expected = ["A · base · seed 0", f"B · {label} · seed 0", "A · base · seed 1"]
    for index, alt in enumerate(expected):
        expect(images.nth(index)).to_have_attribute("alt", alt)


def campaign_ready(db: Database, campaign_id: int) -> bool:
    """Whether the campaign's pairs are rendered (raises if rendering failed)."""
    with db.session() as session:
        found = session.get(Campaign, campaign_id)
        assert found.state != CampaignState.FAILED, found.error
        return found.state == CampaignState.READY


def vote(page: Page, scope: Page | Locator, campaign_id: int, button: str, shot: str) -> None:
    """Pick the campaign in the (first) Campaign dropdown, see its one pair ("pair 1 of N") and
    vote on it: the vote is confirmed and there is nothing left to rate."""
    choose(scope, "Campaign", f"{campaign_id}: browser campaign")
    expect(scope.get_by_text("Which image is better for overall?")).to_contain_text(
        re.compile(r"pair 1 of \d+")
    )
    expect(scope.get_by_label("Prompt", exact=True)).to_have_value("a red circle")
    pictures = scope.locator(".arena-image img")
    expect(pictures).to_have_count(2)
    for picture in pictures.all():
        expect(picture).to_be_visible()
        assert not re.search("base|checkpoint", picture.get_attribute("src")), "models are hidden"
    screenshot(page, shot)
    scope.get_by_role("button", name=button, exact=True).click()
    expect(scope.get_by_text(f"Vote saved: {button} on overall.")).to_be_visible()
    expect(scope.get_by_text("You have judged every pair of")).to_be_visible()


def undo_and_vote_again(scope: Page, button: str) -> None:
    """Undo the last vote: its pair is back on screen; vote on it again."""
    scope.get_by_role("button", name="Undo last vote").click()
    expect(scope.get_by_text("Vote undone")).to_be_visible()
    expect(scope.get_by_text("Which image is better for overall?")).to_contain_text("pair 1 of")
    scope.get_by_role("button", name=button, exact=True).click()
    expect(scope.get_by_text("You have judged every pair of")).to_be_visible()


def manage_users(browser: Browser, page: Page, served: Served) -> None:
    """An admin adds a rater in the Admin tab, sets a new password for them (the old one is
    refused, the new one signs in) and disables them (their session ends): the table and the
    database follow."""
    sign_in(page, served.url, "admin", "/studio/")
    tab = open_tab(page, "Admin")
    tab.get_by_text("Add a user", exact=True).click()
    tab.get_by_label("New user name").fill("nova")
    tab.get_by_label("Password", exact=True).fill("a long enough password")
    tab.get_by_role("button", name="Add user").click()
    expect(tab.get_by_text("Added nova (rater).")).to_be_visible()
    users = tab.get_by_role("grid", name="Users", exact=True)
    expect(users.get_by_role("gridcell", name="nova", exact=True)).to_be_visible()
    choose(tab, "User", "nova")
    choose(tab, "Change", "set password")
    tab.get_by_label("New password (for set password)").fill("another long password")
    tab.get_by_role("button", name="Apply").click()
    expect(tab.get_by_text("nova: password set; their sessions ended.")).to_be_visible()
    nova = new_page(browser)
    sign_in(
        nova, served.url, "nova", "/rate/", "another long password", wrong="a long enough password"
    )
    choose(tab, "User", "nova")
    choose(tab, "Change", "disable")
    tab.get_by_role("button", name="Apply").click()
    expect(tab.get_by_text("nova: disable; their sessions ended.")).to_be_visible()
    with served.db.session() as session:
        found = session.scalars(select(User).where(User.username == "nova")).one()
        assert (found.role, found.active) == (Role.RATER, False)
    nova.reload()
    expect(nova).to_have_url(re.compile(r"/login\?next="))
    nova.context.close()


def votes_of(db: Database, username: str) -> list[str]:
    """The choices a user has voted."""
    with db.session() as session:
        voter = user_id(db, username)
        found = session.scalars(select(Vote.choice).where(Vote.rater_id == voter))
        return [choice.value for choice in found]


def vote_and_see_results(page: Page, db: Database, campaign_id: int, label: str) -> None:
    """Back in the Arena: vote Left and see it counted for that model, named by its label, in
    the tables, the forest plot and the verdict, with the number of bootstrap resamples the
    Bradley-Terry intervals used; export the raw votes as a named file."""
    arena = open_tab(page, "Arena")
    vote(page, arena, campaign_id, "Left", "3-arena")
    assert votes_of(db, "tess") == ["left"]
    arena.get_by_role("button", name="Show results").click()
    expect(arena.get_by_text("1 counted votes")).to_be_visible()
    with db.session() as session:
        query = select(Comparison.left_model).where(Comparison.campaign_id == campaign_id)
        chosen = session.scalars(query).one()
    wins = {row[0]: int(row[1]) for row in table_rows(arena, WIN_RATES, 2)}
    assert wins == {"base": int(chosen == "base"), label: int(chosen != "base")}
    assert {row[0] for row in table_rows(arena, SCORES, 2)} == {"base", label}
    with db.session() as session:
        counted = arena_results.comparisons(session, campaign_id, "overall")
    resamples = arena_results.fit(counted, "base").samples
    assert resamples >= arena_stats.BOOTSTRAP_START
    expect(arena.get_by_text("1 counted votes")).to_contain_text(
        f"1 counted votes · intervals from {resamples} bootstrap resamples · "
    )
    expect(arena.locator(".forest-plot img")).to_be_visible()
    expect(arena.locator(".prose.verdict")).to_contain_text(
        re.compile(r"on overall: not decided yet")
    )
    expect(arena.locator(".prose.verdict")).to_contain_text(label)
    raters = table_rows(arena, RATERS, 1)
    assert raters[0][0] == "tess" and raters[0][-1] == "counted"
    arena.get_by_role("button", name="Export CSV").click()
    name = f"campaign-{campaign_id}-browser-campaign-raw-votes.csv"
    link = arena.locator(f'a[download="{name}"]')
    expect(link).to_be_visible()
    exported = page.request.get(link.get_attribute("href")).text().splitlines()
    assert exported[0].startswith("vote_id,") and ",left," in exported[1]
    screenshot(page, "3-arena-results")


def test_a_trainer_and_a_rater_use_every_tab(
    served: Served, browser: Browser, tmp_path: Path
) -> None:
    page = new_page(browser)
    sign_in(page, served.url, "tess", "/studio/")
    preview_reward_shift(page)
    job_id = queue_tiny_demo(page, served)
    checkpoint = final_checkpoint(served.db, job_id)
    assert checkpoint is not None and checkpoint.step == 2
    label = f"browser demo · step {checkpoint.step}"
    campaign_id = create_campaign(page, label, served.worker)
    assert campaign_ready(served.db, campaign_id)
    download_checkpoint(browser, page, served, checkpoint, tmp_path)
    vote_and_see_results(page, served.db, campaign_id, label)

    token_id, token = new_token(browser, page, served)
    expect(page.get_by_role("tab", name="Admin")).to_have_count(0)  # trainers see no Admin
    admin = new_page(browser)
    manage_users(browser, admin, served)
    revoke_token(browser, admin, served, token_id, token)

    rater = new_page(browser)
    sign_in(rater, served.url, "rory", "/rate/")
    rater.goto(served.url + "/studio/")  # a page that says where a rater goes, not JSON
    expect(rater.get_by_role("link", name="the rating app")).to_have_attribute("href", "/rate/")
    rater.goto(served.url + "/rate/")
    vote(rater, rater, campaign_id, "Right", "5-rate")
    undo_and_vote_again(rater, "Tie")
    assert votes_of(served.db, "rory") == ["tie"]
