"""The brand comes from config (issue 23 item 5): every page rendered with a second brand holds
nothing of the first; no template, script or SMS text names the site itself."""

from __future__ import annotations

import pytest

from services.config import ConfigError, load_config
from tests.conftest import ROOT, serving

FIRST = "爱家租房"  # the shipped brand.site_name
PAGES = [
    "/",
    "/index.html",
    "/register.html",
    "/login.html",
    "/reset_password.html",
    "/my.html",
    "/terms.html",
    "/privacy.html",
]
SECOND = {
    "site_name": "青松公寓",
    "logo_url": "/static/img/favicon.svg",
    "colour": "#1d4ed8",
    "colour_dark": "#1e3a8a",
    "support_phone": "400-000-0000",
    "support_email": "help@example.com",
}


@pytest.mark.gen_test(timeout=60)
async def test_every_page_in_a_second_brand_holds_nothing_of_the_first(make_app):
    app = await make_app(brand=SECOND, consent={"terms_url": "https://example.com/terms"})
    async with serving(app) as client:
        for path in PAGES:
            response = await client.fetch(path)
            assert response.code == 200, path
            page = response.body.decode()
            assert FIRST not in page and "爱" not in page, path
            assert "<title>" in page and "青松公寓</title>" in page, path
            assert 'src="/static/img/favicon.svg"' in page, path  # the logo, not a letter
            assert "400-000-0000" in page and "help@example.com" in page, path
        register = (await client.fetch("/register.html")).body.decode()
        assert 'href="https://example.com/terms"' in register
        css = await client.fetch("/brand.css")
        assert css.headers["Content-Type"].startswith("text/css")
        assert css.body.decode() == ":root {\n  --brand: #1d4ed8;\n  --brand-dark: #1e3a8a;\n}\n"


def test_no_template_or_script_names_the_site():
    for folder, pattern in [("templates", "*.html"), ("static/js", "*.js")]:
        for path in (ROOT / folder).glob(pattern):
            assert FIRST not in path.read_text(encoding="utf-8"), path
    # The SMS texts are the providers' templates: the server sends an id and data only.
    for path in (ROOT / "services").rglob("*.py"):
        if path.parts[-2] != "config":  # the shipped default lives in the config alone
            assert FIRST not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("colour", "#ffff00", "4.5:1"),
        ("colour", "red", "#rrggbb"),
        ("site_name", " ", "must not be empty"),
        ("logo_url", "https://cdn.example.com/logo.png", "path of this site"),
        ("logo_url", "//evil.example/x.png", "path of this site"),
    ],
)
def test_a_brand_that_cannot_work_stops_start_up(setting, value, problem):
    environ = {f"SMSREG_BRAND_{setting.upper()}": value}
    with pytest.raises(ConfigError, match=problem.replace("+", r"\+")):
        load_config(ROOT / "config.yml", environ=environ)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("terms_url", "javascript:alert(1)"), ("privacy_version", "v 1"), ("terms_url", "")],
)
def test_agreement_links_and_versions_are_checked(setting, value):
    with pytest.raises(ConfigError):
        load_config(ROOT / "config.yml", environ={f"SMSREG_CONSENT_{setting.upper()}": value})
