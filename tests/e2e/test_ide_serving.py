"""The platform serves the built IDE under /ide/, next to the API it calls (same origin)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.helpers import Platform


def test_the_platform_serves_the_built_ide_and_its_assets_under_ide(
    platform: Platform, web_build: Path
):
    page = httpx.get(platform.base_url + "/ide/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'content="cep-ide"' in page.text
    assets = re.findall(r'(?:src|href)="(/ide/assets/[^"]+)"', page.text)
    assert any(a.endswith(".js") for a in assets), page.text
    for asset in assets:
        response = httpx.get(platform.base_url + asset, timeout=10)
        assert response.status_code == 200, asset
        built = (web_build / "dist" / asset.removeprefix("/ide/")).read_bytes()
        assert response.content == built, asset
