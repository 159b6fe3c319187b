"""The REST API fuzzed from its OpenAPI schema in embedded mode (SQLite): no generated input,
shaped or hostile, gets a 5xx (issue 14). The PostgreSQL run is in tests/integration."""

from __future__ import annotations

from pathlib import Path

from tests.api_fuzz import fuzz_studio
from tests.web_support import web_settings


def test_no_generated_request_gets_a_5xx_in_embedded_mode(tmp_path: Path) -> None:
    assert fuzz_studio(web_settings(tmp_path)) >= 200
