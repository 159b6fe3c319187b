"""A damaged database: a bad row leaves the UI up, a damaged file stops startup with one line,
and ``srpo db check`` names what is wrong (issue 14)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from app import db_cli
from app.core.dbcheck import DatabaseDamaged
from app.core.models import Role
from app.core.startup import prepare
from app.web.factory import create_app
from srpo.cli import build_parser
from tests.web_support import add_account, web_settings

BAD_CAMPAIGN = (
    "insert into campaigns (name, models, prompts, seeds, criteria, state, options, created_at,"
    " cancel_requested) values ('bad', '{not json', '[]', '[]', '[]', 'pending', '{}',"
    " '2026-01-01 00:00:00', 0)"
)


def srpo(capsys, *args: str) -> SimpleNamespace:
    """Run the ``srpo`` command in this process (with ``srpo db`` registered even where the
    installed entry points predate it); its exit status, stdout and stderr."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "db" not in commands.choices:
        db_cli.register(commands)
    parsed = parser.parse_args(list(args))
    try:
        code = parsed.run(parsed)
    except ValueError as error:  # what srpo.cli.main prints as one line
        print(f"srpo: error: {error}", file=sys.stderr)
        code = 2
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.fixture
def studio_file(tmp_path):
    settings = web_settings(tmp_path)
    prepare(settings).engine.dispose()
    return settings, settings.data_dir / "studio.db"


def test_one_undecodable_campaign_row_leaves_the_studio_up_and_db_check_names_it(
    studio_file, capsys
):
    settings, path = studio_file
    with sqlite3.connect(path) as connection:
        connection.execute(BAD_CAMPAIGN)
    app = create_app(settings)  # building the Arena tab lists the campaigns
    admin = add_account(app.state.studio.db, "ada", Role.ADMIN)
    with TestClient(app) as client:
        assert client.get("/studio/", headers=admin.headers).status_code == 200
        listed = client.get("/api/v1/campaigns", headers=admin.headers)
        assert listed.status_code == 200 and listed.json()[0]["name"] == "bad"
    checked = srpo(capsys, "db", "check", "--data-dir", str(settings.data_dir))
    assert checked.returncode == 1
    assert "campaigns id=1: models is not valid JSON" in checked.stdout


@pytest.mark.parametrize("damage", ["header", "truncated"])
def test_a_damaged_file_stops_startup_with_one_line_naming_the_recovery(
    studio_file, damage, capsys
):
    settings, path = studio_file
    data = path.read_bytes()
    if damage == "header":
        path.write_bytes(b"\x00" * 100 + data[100:])
    else:
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatabaseDamaged) as refused:
        prepare(settings)
    message = str(refused.value)
    assert "\n" not in message and "damaged" in message and "srpo db check" in message
    started = srpo(capsys, "studio", "--data-dir", str(settings.data_dir), "--port", "1")
    assert started.returncode == 2
    assert started.stderr.count("\n") == 1 and "Traceback" not in started.stderr
    assert "srpo db check" in started.stderr
    checked = srpo(capsys, "db", "check", "--data-dir", str(settings.data_dir))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr


def test_db_check_passes_a_sound_database(studio_file, capsys):
    settings, _ = studio_file
    checked = srpo(capsys, "db", "check", "--data-dir", str(settings.data_dir))
    assert checked.returncode == 0 and "no problems found" in checked.stdout
