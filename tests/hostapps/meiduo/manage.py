#!/usr/bin/env python
"""Django's manage.py for the meiduo host app (makemigrations wrote users/migrations/)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meiduo_mall.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
