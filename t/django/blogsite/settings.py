"""Settings of the test blog behind nginx and ngx_http_static_gen_module.

Everything that differs between the demo, the tests and a real deployment
comes from the environment:

- BLOG_DB: the SQLite file (required: ci/demo prints the command that
  opens `manage.py shell` on the demo's database)
- BLOG_STATIC_ROOT: where `collectstatic` puts the admin's CSS/JS
  (default: t/django/static), served by nginx under /static/
- STATIC_GEN_PURGE_URL: nginx's purge location, POSTed to when content
  changes (default: http://127.0.0.1/_static_gen/purge); or
  STATIC_GEN_PURGE_URLS: several (separated by spaces or commas), one per
  front-end server, each purge going to all of them
- STATIC_GEN_PURGE_TIMEOUT, STATIC_GEN_PURGE_ATTEMPTS,
  STATIC_GEN_PURGE_BACKOFF: see nginx-conf/django_purge.py
- BLOG_PURGE_BY: `tags` (default: pages carry the tags of what they show,
  and a save purges its object's tag) or `urls` (a save purges the URLs of
  the pages that may show it, for sites that cannot tag)
- BLOG_SECRET_KEY, BLOG_DEBUG, BLOG_ALLOWED_HOSTS (comma-separated)
- BLOG_FAST_PASSWORD_HASHER=1: a cheap password hash (tests only)
"""
import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# The purge helper documented in the README lives in nginx-conf/; the blog
# uses that very file, so what the README shows is what the tests run.
sys.path.append(str(BASE_DIR.parent.parent / "nginx-conf"))

SECRET_KEY = os.environ.get(
    "BLOG_SECRET_KEY", "static-gen-demo-only-not-secret-5000-pages-per-second"
)
DEBUG = os.environ.get("BLOG_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("BLOG_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "blog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Sends the page's tags to nginx (X-Static-Gen-Tags). Early, so that it
    # sees the response with the cookies the middlewares below set (a page
    # that sets one is never shared, and gets no tags).
    "django_purge.StaticGenTagsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # After the CSRF middleware, so that it sees a response before the CSRF
    # middleware does (see blog/middleware.py).
    "blog.middleware.StaticGenMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "blogsite.urls"
WSGI_APPLICATION = "blogsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # {% load static_gen %}{% static_gen_tags article %} (django_purge.py)
            "libraries": {"static_gen": "django_purge"},
        },
    },
]

# No default: SQLite would create an empty file in the source tree, and
# `manage.py shell` would then fail with "no such table: blog_article".
BLOG_DB = os.environ.get("BLOG_DB", "")
if not BLOG_DB:
    raise ImproperlyConfigured(
        "BLOG_DB is not set: export BLOG_DB=/path/to/blog.sqlite3 (ci/demo prints "
        "the command that opens the demo's database)"
    )

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BLOG_DB,
        "OPTIONS": {"timeout": 20},
    }
}

if os.environ.get("BLOG_FAST_PASSWORD_HASHER") == "1":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("BLOG_STATIC_ROOT", str(BASE_DIR / "static"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# nginx's purge location (nginx-conf/django_purge.py reads these at each
# call), or one per front-end server.
STATIC_GEN_PURGE_URL = os.environ.get(
    "STATIC_GEN_PURGE_URL", "http://127.0.0.1/_static_gen/purge"
)
if os.environ.get("STATIC_GEN_PURGE_URLS"):
    STATIC_GEN_PURGE_URLS = os.environ["STATIC_GEN_PURGE_URLS"].replace(",", " ").split()
for _name, _kind in [
    ("STATIC_GEN_PURGE_TIMEOUT", float),
    ("STATIC_GEN_PURGE_ATTEMPTS", int),
    ("STATIC_GEN_PURGE_BACKOFF", float),
]:
    if os.environ.get(_name):
        globals()[_name] = _kind(os.environ[_name])

# How a save purges the pages that show what changed (blog/apps.py).
BLOG_PURGE_BY = os.environ.get("BLOG_PURGE_BY", "tags")
if BLOG_PURGE_BY not in ("tags", "urls"):
    raise ImproperlyConfigured(f"BLOG_PURGE_BY={BLOG_PURGE_BY!r}: expected tags or urls")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(name)s] %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_purge": {"handlers": ["stderr"], "level": "INFO"}},
}
