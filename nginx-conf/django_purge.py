"""Purge generated pages from Django when content changes.

Replaces StaticGenerator's `recursive_delete('/')` on `post_save`: instead of
deleting files itself, Django asks nginx's purge location to do it, and only
for the pages that show what changed. The test blog (t/django/) uses this
very file.

    # settings.py
    STATIC_GEN_PURGE_URL = "http://127.0.0.1/_static_gen/purge"

    # apps.py, in AppConfig.ready()
    import django_purge
    django_purge.connect(Article, lambda a: [
        {"uri": a.get_absolute_url()},          # the article
        {"uri": "/articles/"},                  # the archive...
        {"prefix": "/articles/page/"},          # ...and its other pages
        {"prefix": a.category.get_absolute_url()},
        {"uri": "/"},                           # the home page
    ])
    django_purge.connect(Category, lambda c: [{}])  # {}: the whole tree

A scope is what the purge location takes: {"uri": ...} one page,
{"prefix": ...} every page under a prefix, {} everything.
"""
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

log = logging.getLogger("django_purge")


def purge_url():
    # read at each call, so that settings overrides (tests) apply
    return getattr(settings, "STATIC_GEN_PURGE_URL", "http://127.0.0.1/_static_gen/purge")


def purge(**scope):
    """purge() empties the whole tree; purge(uri="/a/") one page;
    purge(prefix="/articles/") every page under a prefix. Returns nginx's
    JSON reply as a dict, or None when the purge failed (logged: a failed
    purge must not fail the save; the pages then live until the next purge
    that covers them, or until static_gen_valid)."""
    query = "?" + urllib.parse.urlencode(scope) if scope else ""
    request = urllib.request.Request(purge_url() + query, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            result = json.loads(reply.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as err:
        log.error("purge %s failed: %s", scope or "all", err)
        return None
    log.info("purge %s: %s", scope or "all", result)
    return result


def purge_scopes(scopes):
    """Purges each distinct scope once; a {} among them purges everything
    (once) instead."""
    distinct = []
    for scope in scopes:
        if scope not in distinct:
            distinct.append(scope)
    if {} in distinct:
        distinct = [{}]
    for scope in distinct:
        purge(**scope)


def connect(model, scopes):
    """Purges `scopes(instance)` whenever an instance of `model` is saved or
    deleted, and also the scopes of the instance as it was before a save (a
    new slug or category leaves pages at the old URLs).

    The purge runs when the transaction commits, not before: a request that
    arrived between a purge and the commit would render the old content
    from the database and store it again."""

    def before_save(sender, instance, raw=False, **kwargs):
        instance._static_gen_before = []
        if raw or instance.pk is None:
            return
        try:
            old = sender._default_manager.get(pk=instance.pk)
        except sender.DoesNotExist:
            return
        instance._static_gen_before = scopes(old)

    def changed(sender, instance, raw=False, **kwargs):
        if raw:  # loaddata: no pages to purge
            return
        todo = getattr(instance, "_static_gen_before", []) + scopes(instance)
        transaction.on_commit(lambda: purge_scopes(todo))

    uid = f"django_purge.{model._meta.label}"
    pre_save.connect(before_save, sender=model, weak=False, dispatch_uid=uid)
    post_save.connect(changed, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(changed, sender=model, weak=False, dispatch_uid=uid)
