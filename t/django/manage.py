#!/usr/bin/env python3
"""Django's command-line utility for the test blog (see blogsite/settings.py)."""
import os
import sys

if __name__ == "__main__":
    # Without it, settings.py refuses to load, and Django would still run
    # `shell` without the blog's models: say so and stop instead.
    if not os.environ.get("BLOG_DB"):
        sys.exit(
            "manage.py: BLOG_DB is not set: export BLOG_DB=/path/to/blog.sqlite3 "
            "(ci/demo prints the command that opens the demo's database)"
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blogsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
