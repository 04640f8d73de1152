"""Run one host app on 127.0.0.1:$HOSTAPP_PORT: `python -m tests.hostapps.serve KIND`.

The harness (tests/hostapps/harness.py) starts it with its HOSTAPP_* environment. Each app
makes its own tables first, as the tutorials do: db.create_all() for the Flask apps,
`migrate` for meiduo. Then a threaded werkzeug server serves the WSGI app until SIGTERM."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from werkzeug.serving import run_simple

MEIDUO_PROJECT = Path(__file__).resolve().parent / "meiduo"  # as harness.MEIDUO_PROJECT


def wsgi_app(kind: str):
    if kind in ("ihome", "news"):
        return importlib.import_module(f"tests.hostapps.{kind}").create_app()
    if kind == "meiduo":
        # As meiduo's manage.py does: the project directory on the path, its settings module.
        sys.path.insert(0, str(MEIDUO_PROJECT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meiduo_mall.settings")
        import django
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        return get_wsgi_application()
    raise SystemExit(f"unknown host app {kind!r}: ihome, news or meiduo")


def main() -> None:
    kind = sys.argv[1]
    app = wsgi_app(kind)
    run_simple("127.0.0.1", int(os.environ["HOSTAPP_PORT"]), app, threaded=True)


if __name__ == "__main__":
    main()
