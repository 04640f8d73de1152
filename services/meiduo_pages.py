"""An existing meiduo project's register.html / login.html, re-rendered for refused form posts.

meiduo (Django 1.11 + Jinja2) answers a refused register or login by rendering the page again
with a message in `register_errmsg`, `sms_code_errmsg` or `account_errmsg`. With
`families.meiduo_templates` set, the meiduo form routes do the same with the operator's own
templates, in the Jinja2 environment meiduo's utils/jinja2_env.py builds: the globals
`static()` and `url()`, plus `csrf_input` / `csrf_token` as Django's Jinja2 backend adds them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import jinja2
from markupsafe import Markup, escape

Page = Literal["register", "login"]
PAGES: tuple[Page, ...] = ("register", "login")
STATIC_URL = "/static/"  # Django's STATIC_URL in meiduo's settings
# meiduo's URL names (the `namespace:name` of its urls.py) and the paths we serve them at.
URLS = {
    "contents:index": "/",
    "users:register": "/register/",
    "users:login": "/login/",
    "users:logout": "/logout/",
}
# meiduo's Vue instances compile the served page with these delimiters: a submitted value
# holding one would be evaluated in the browser although HTML escaping left it harmless.
VUE_DELIMITERS = ("[[", "]]", "{{", "}}")


class MeiduoTemplateError(Exception):
    """The templates cannot be used: missing, unreadable, not Jinja2, or not meiduo's helpers."""


def static(path: str) -> str:
    """meiduo's static(): staticfiles_storage.url, i.e. STATIC_URL + path."""
    return STATIC_URL + path.lstrip("/")


def url(name: str) -> str:
    """meiduo's url(): Django's reverse() for the routes this server has."""
    try:
        return URLS[name]
    except KeyError:
        # Like Django's NoReverseMatch; the trial render at start turns it into a config error.
        raise MeiduoTemplateError(f"url({name!r}) names no meiduo route served here") from None


def echo(value: str | None) -> str:
    """A submitted field as the page may show it again (autoescaped on output)."""
    if not value or any(mark in value for mark in VUE_DELIMITERS):
        return ""
    return value


def csrf_input(token: str) -> Markup:
    """Django's {{ csrf_input }}: the hidden field meiduo's forms post the token in."""
    return Markup('<input type="hidden" name="csrfmiddlewaretoken" value="{}">').format(
        escape(token)
    )


class MeiduoPages:
    """register.html and login.html from one directory, compiled once at start."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise MeiduoTemplateError(f"{str(directory)!r} is not a directory")
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,  # every value is escaped unless it is Markup (csrf_input)
            undefined=jinja2.Undefined,  # a slot for a variable not given renders empty
        )
        environment.globals.update(static=static, url=url)
        self._templates: dict[str, jinja2.Template] = {}
        for page in PAGES:
            name = f"{page}.html"
            try:
                self._templates[page] = environment.get_template(name)
            except jinja2.TemplateNotFound:
                raise MeiduoTemplateError(f"no {name} in {str(directory)!r}") from None
            except jinja2.TemplateSyntaxError as exc:
                raise MeiduoTemplateError(f"{name} line {exc.lineno}: {exc.message}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise MeiduoTemplateError(f"cannot read {name}: {exc}") from None
        self._trial_render()

    def _trial_render(self) -> None:
        """Render each page once with every message slot filled, so that a template calling
        something meiduo's environment has and we have not (url('goods:list'), a filter...)
        fails now, as a config error, rather than on a user's refused form."""
        sample = {
            "register_errmsg": "-",
            "sms_code_errmsg": "-",
            "account_errmsg": "-",
            "errmsg": "-",
            "username": "-",
            "mobile": "-",
        }
        for page in PAGES:
            try:
                self.render(page, "-", sample)
            except MeiduoTemplateError as exc:
                raise MeiduoTemplateError(f"{page}.html: {exc}") from None
            except Exception as exc:  # whatever a template's expressions raise
                raise MeiduoTemplateError(
                    f"{page}.html does not render: {type(exc).__name__}: {exc}"
                ) from None

    def render(self, page: Page, csrf_token: str, context: Mapping[str, str]) -> str:
        """The page with meiduo's variables, the CSRF field and the given context."""
        return self._templates[page].render(
            csrf_input=csrf_input(csrf_token), csrf_token=csrf_token, **context
        )


@functools.cache
def load_meiduo_pages(directory: str) -> MeiduoPages:
    """The compiled pages of a directory, once per process: the config check at start
    compiles them and the (forked) workers reuse that work."""
    return MeiduoPages(Path(directory))
