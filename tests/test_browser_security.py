"""Issue 14 in a real browser (Debian's Chromium, driven by Playwright) against a served
studio: logging out ends the session on the server (the old cookie, put back, gets the
login page), a page on another local port cannot read the studio with the user's cookie
while a listed origin can, the studio's page runs under its content security policy, and
/docs renders Swagger UI without a single request leaving the studio."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from app.core.models import Role
from app.web.factory import create_app
from tests.browser_support import CHROMIUM, PAGE_WAIT_MS, new_page
from tests.web_support import PASSWORD, add_account, free_port, serve, web_settings

OTHER = free_port()  # "another local port": an origin the studio does not list
LISTED = free_port()
READ = """async (url) => {
    try {
        const answer = await fetch(url, {credentials: "include"});
        return "read " + answer.status + " " + (await answer.text()).length;
    } catch (error) {
        return "blocked";
    }
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The studio on a free port (as http://localhost:PORT) with a trainer."""
    listed = f"http://localhost:{LISTED}"
    settings = web_settings(tmp_path_factory.mktemp("browser-security"), cors_origins=(listed,))
    app = create_app(settings)
    add_account(app.state.studio.db, "tess", Role.TRAINER)
    with serve(app) as url:
        yield url.replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make test does)")
    expect.set_options(timeout=PAGE_WAIT_MS)
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield found
        found.close()


def sign_in(page: Page, url: str) -> None:
    page.goto(url + "/studio/")
    page.get_by_label("Username").fill("tess")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + "/studio/")
    expect(page.get_by_text("Signed in as")).to_contain_text("tess")


def test_logout_ends_the_session_and_the_old_cookie_gets_the_login_page(
    browser: Browser, served: str
) -> None:
    page = new_page(browser)
    sign_in(page, served)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "srpo_session"]
    assert cookie["httpOnly"]
    page.get_by_role("link", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "srpo_session"]

    replay = new_page(browser)  # a browser that kept a copy of the cookie
    replay.context.add_cookies([cookie])
    replay.goto(served + "/studio/")
    expect(replay).to_have_url(re.compile(r"/login\?next="))
    assert replay.context.request.get(served + "/api/v1/me").status == 401
    page.context.close()
    replay.context.close()


class OtherApp(BaseHTTPRequestHandler):
    """Another local web app: one empty page."""

    def do_GET(self) -> None:
        body = b"<!doctype html><p>another app</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def other_apps() -> Iterator[None]:
    """Pages served on the ports OTHER and LISTED of localhost (really served: Chromium
    treats a page it made up itself as public and refuses it loopback on its own)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", port), OtherApp) for port in (OTHER, LISTED)]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    yield
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_local_port_cannot_read_the_studio(
    browser: Browser, served: str, other_apps: None
) -> None:
    page = new_page(browser)
    sign_in(page, served)
    own = page.evaluate(READ, served + "/studio/config")
    assert own.startswith("read 200")  # the cookie works for the studio's own pages
    page.goto(f"http://localhost:{OTHER}/")
    for path in ("/studio/config", "/rate/config", "/api/v1/me", "/api/v1/jobs"):
        assert page.evaluate(READ, served + path) == "blocked", path
    page.goto(f"http://localhost:{LISTED}/")
    assert page.evaluate(READ, served + "/studio/config").startswith("read 200")
    page.context.close()


def watch(page: Page, origin: str) -> tuple[list[str], list[str]]:
    """Console errors naming the content security policy, and requests to other origins."""
    violations: list[str] = []
    outside: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(message.text)

    def request(found: Request) -> None:
        if not found.url.startswith((origin + "/", "data:", "blob:")):
            outside.append(found.url)

    page.on("console", console)
    page.on("request", request)
    return violations, outside


def test_the_studio_runs_under_its_content_security_policy(browser: Browser, served: str) -> None:
    page = new_page(browser)
    violations, outside = watch(page, served)
    sign_in(page, served)
    page.get_by_role("tab", name="Train").click()
    expect(page.get_by_role("tab", name="Train")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Reward Lab").click()
    expect(page.get_by_role("tab", name="Reward Lab")).to_have_attribute("aria-selected", "true")
    assert violations == [] and outside == []
    page.context.close()


def test_docs_renders_swagger_ui_from_the_studio_alone(browser: Browser, served: str) -> None:
    page = new_page(browser)
    violations, outside = watch(page, served)
    sign_in(page, served)
    page.goto(served + "/docs")
    expect(page.locator(".swagger-ui .title")).to_contain_text("SRPO Studio API")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/tokens").first).to_be_visible()
    assert violations == [] and outside == []
    page.context.close()
