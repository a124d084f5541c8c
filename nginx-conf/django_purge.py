"""Purge generated pages from Django when content changes.

Replaces StaticGenerator's `recursive_delete('/')` on `post_save`: instead of
deleting files itself, Django asks nginx's purge location to do it, precisely.
Add to one of your apps (e.g. in `signals.py`, imported from `AppConfig.ready`)
and set STATIC_GEN_PURGE_URL in settings.py if nginx is elsewhere.
"""
import logging
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

log = logging.getLogger(__name__)
PURGE_URL = getattr(settings, "STATIC_GEN_PURGE_URL", "http://127.0.0.1/_static_gen/purge")


def purge(**scope):
    """purge() empties the whole tree; purge(uri="/a/") one page;
    purge(prefix="/articles/") every page under a prefix."""
    query = "?" + urllib.parse.urlencode(scope) if scope else ""
    request = urllib.request.Request(PURGE_URL + query, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.read()
    except urllib.error.URLError as err:
        # a failed purge must not fail the save; pages then expire with
        # static_gen_valid, or the next purge takes them
        log.error("static_gen purge %s failed: %s", scope or "all", err)
        return None


def purge_article(article):
    """An article changed: its page, the listings that show it, the home page."""
    purge(uri=article.get_absolute_url())
    purge(prefix="/articles/")
    purge(uri="/")


def connect(model):
    """connect(Article): purge precisely whenever an Article is saved or deleted."""

    @receiver([post_save, post_delete], sender=model, weak=False)
    def _changed(sender, instance, **kwargs):
        purge_article(instance)
