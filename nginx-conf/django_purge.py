"""Purge generated pages from Django when content changes.

Replaces StaticGenerator's `recursive_delete('/')` on `post_save`: instead of
deleting files itself, Django asks nginx's purge location to do it, and only
for the pages that show what changed. One file, no dependency beyond Django;
the test blog (t/django/) uses this very file.

Two ways to say which pages show what changed:

1. Tags (surrogate keys), when the site can tag its pages. Views and
   templates name the objects a page shows; the middleware sends them to
   nginx in `X-Static-Gen-Tags`, which keeps them with the stored page (and
   never passes the header on); a save purges `?tag=<the object's tag>`, so
   exactly the pages that show the object, wherever they are (page 9 of an
   archive included), and no others.

       # settings.py
       MIDDLEWARE = [
           "django.middleware.security.SecurityMiddleware",
           "django_purge.StaticGenTagsMiddleware",   # early: sees the final response
           ...
       ]
       TEMPLATES = [{..., "OPTIONS": {..., "libraries": {"static_gen": "django_purge"}}}]

       # a view: a listing (a QuerySet, or a Page of one) carries its
       # model's tag and the tag of each object it shows
       static_gen_tags(request, page)
       # a template: {% load static_gen %}{% static_gen_tags article article.category %}

       # apps.py, in AppConfig.ready()
       django_purge.connect_tags(Article, listed_by=["published", "category"])
       django_purge.connect_tags(Category)
       django_purge.connect_tags(      # a comment changes its article's pages
           Comment, listed=False,
           tags=lambda c: [django_purge.tag_for_pk(Article, c.article_id)])

2. URLs, for sites that cannot tag their pages: `connect` purges the scopes
   (one page, a prefix, everything) a function of the instance returns.

       django_purge.connect(Article, lambda a: [
           {"uri": a.get_absolute_url()},          # the article
           {"uri": "/articles/"},                  # the archive...
           {"prefix": "/articles/page/"},          # ...and its other pages
           {"prefix": a.category.get_absolute_url()},
           {"uri": "/"},                           # the home page
       ])
       django_purge.connect(Category, lambda c: [{}])  # {}: the whole tree

Tag names: `<app_label>.<model>-<pk>` for an object (`blog.article-12`),
`<app_label>.<model>` for "a listing of that model" (`blog.article`), and any
string of visible ASCII without `,` (1 to 128 bytes) for the rest. A primary
key that is not made of letters, digits, `.`, `_` and `-` (or would make the
tag longer than 128 bytes) is replaced by `~` and the first 40 hex digits of
its SHA-256 (`blog.page-~3a7b...`), so every object still has a tag of its own.

Where purges go (settings, read at each purge so that overrides apply):

    STATIC_GEN_PURGE_URLS = [                 # every front-end server, or
        "http://10.0.0.1:8081/_static_gen/purge",
        "http://10.0.0.2:8081/_static_gen/purge",
    ]
    STATIC_GEN_PURGE_URL = "http://127.0.0.1/_static_gen/purge"   # one server
    STATIC_GEN_PURGE_TIMEOUT = 2      # seconds per attempt
    STATIC_GEN_PURGE_ATTEMPTS = 3     # attempts per server (retries + 1)
    STATIC_GEN_PURGE_BACKOFF = 0.5    # seconds before the first retry, doubled after

Each purge goes to every URL at once (one thread per server). The caller
waits for the first attempt at each server (at most the timeout), so the
servers that answered have purged when the save returns; a server that
failed is retried in the background. Everything is logged on the
`django_purge` logger: each reply at INFO, each failed attempt at WARNING,
a server given up at ERROR. A failed purge never fails the save.
"""
import hashlib
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from django import template
from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save, pre_save

log = logging.getLogger("django_purge")

DEFAULT_PURGE_URL = "http://127.0.0.1/_static_gen/purge"

# The purge location's limits (README, "Purge by tag").
TAG_MAX_BYTES = 128
TAGS_MAX_BYTES = 16 * 1024
TAG_HEADER = "X-Static-Gen-Tags"
# A purge request's query stays well below nginx's request line buffer
# (large_client_header_buffers, 8k by default); more tags take several.
PURGE_QUERY_MAX_BYTES = 2000

_TAG = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,%d}\Z" % TAG_MAX_BYTES)
_PLAIN_PK = re.compile(r"[A-Za-z0-9._-]+\Z")


# ---------------------------------------------------------------------------
# Sending purges
# ---------------------------------------------------------------------------


def _setting(name, default):
    return getattr(settings, name, default)


def purge_urls():
    """The purge locations: STATIC_GEN_PURGE_URLS (a list, or a string of
    URLs separated by spaces or commas), else [STATIC_GEN_PURGE_URL]."""
    urls = _setting("STATIC_GEN_PURGE_URLS", None)
    if urls is None:
        urls = [_setting("STATIC_GEN_PURGE_URL", DEFAULT_PURGE_URL)]
    elif isinstance(urls, str):
        urls = urls.replace(",", " ").split()
    return [u for u in urls if u]


def purge_url():
    """The first purge location (kept for callers of older versions)."""
    urls = purge_urls()
    return urls[0] if urls else DEFAULT_PURGE_URL


def _query(scope):
    """`?uri=...`, `?prefix=...`, `?tag=a&tag=b`, `?hard=1`, or "" for
    everything. Values are form-encoded (a space as `+`, which the module
    reads as such)."""
    pairs = []
    for key in ("uri", "prefix"):
        if key in scope:
            pairs.append((key, scope[key]))
    if "tag" in scope:
        tags = scope["tag"]
        for tag in [tags] if isinstance(tags, str) else tags:
            pairs.append(("tag", tag))
    if scope.get("hard"):
        pairs.append(("hard", "1"))
    unknown = set(scope) - {"uri", "prefix", "tag", "hard"}
    if unknown:
        raise TypeError(f"unknown purge argument(s): {sorted(unknown)}")
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def _post(url):
    """One attempt: (reply dict, None) on success, (None, (error, retry?))."""
    request = urllib.request.Request(url, method="POST")
    timeout = float(_setting("STATIC_GEN_PURGE_TIMEOUT", 2))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = reply.read()
    except urllib.error.HTTPError as err:
        text = err.read(500).decode("utf-8", "replace").strip()
        # 4xx: this request is wrong (a bad tag, a denied address) and will
        # stay wrong; 5xx (the module could not record the purge, a proxy's
        # 502): worth another try
        return None, (f"HTTP {err.code} {text}", err.code >= 500)
    except (urllib.error.URLError, OSError) as err:
        return None, (str(getattr(err, "reason", err)), True)
    try:
        result = json.loads(body)
    except ValueError:
        return None, (f"not a purge reply: {body[:200]!r}", False)
    if not isinstance(result, dict) or result.get("status") != "ok":
        return None, (f"purge refused: {result}", False)
    return result, None


def _send(url, query, label, results, first_done):
    """Purges at one server: up to STATIC_GEN_PURGE_ATTEMPTS attempts, the
    first one waited for by purge(), the retries in the background."""
    attempts = max(1, int(_setting("STATIC_GEN_PURGE_ATTEMPTS", 3)))
    pause = float(_setting("STATIC_GEN_PURGE_BACKOFF", 0.5))
    try:
        for attempt in range(1, attempts + 1):
            result, failure = _post(url + query)
            if failure is None:
                results[url] = result
                note = f" (attempt {attempt})" if attempt > 1 else ""
                log.info("purge %s at %s: %s%s", label, url, result, note)
                return
            error, retry = failure
            if retry and attempt < attempts:
                log.warning(
                    "purge %s at %s failed (attempt %d of %d, retrying in %gs): %s",
                    label, url, attempt, attempts, pause, error,
                )
                first_done.set()
                time.sleep(pause)
                pause *= 2
            else:
                tried = f" after {attempt} attempts" if attempt > 1 else ""
                log.error("purge %s at %s failed%s, given up: %s", label, url, tried, error)
                return
    finally:
        first_done.set()


def purge(**scope):
    """purge() empties the whole tree; purge(uri="/a/") one page;
    purge(prefix="/articles/") every page under a prefix; purge(tag="x") or
    purge(tag=["x", "y"]) every page carrying one of the tags; hard=True
    serves nothing of it stale.

    Sent to every purge URL at once. Returns {url: nginx's JSON reply as a
    dict, or None when the first attempt failed (logged; retried in the
    background when it may help)}. A failed purge must not fail the save:
    the pages then live until the next purge that covers them, or until
    static_gen_valid."""
    query = _query(scope)
    label = scope or "all"
    results = {}
    waits = []
    for url in purge_urls():
        results[url] = None
        done = threading.Event()
        # not a daemon: a manage.py command waits for the retries at exit
        worker = threading.Thread(
            target=_send,
            args=(url, query, label, results, done),
            name=f"django_purge {url}",
        )
        worker.start()
        waits.append(done)
    deadline = float(_setting("STATIC_GEN_PURGE_TIMEOUT", 2)) * 2 + 1
    for done in waits:
        done.wait(deadline)
    return dict(results)


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


def purge_tags(tags, hard=False):
    """Purges every page carrying any of `tags` (objects, models or strings,
    see tags_of), in as few requests as the query length allows."""
    extra = {"hard": True} if hard else {}
    batch, size = [], 0
    for tag in dict.fromkeys(tags_of(tags)):
        cost = len(urllib.parse.quote_plus(tag)) + len("&tag=")
        if batch and size + cost > PURGE_QUERY_MAX_BYTES:
            purge(tag=batch, **extra)
            batch, size = [], 0
        batch.append(tag)
        size += cost
    if batch:
        purge(tag=batch, **extra)


def purge_tags_on_commit(tags, using=None):
    """purge_tags once the transaction commits (at once outside one). The
    tags of every save in a transaction go out together, in the first
    callback that runs at the commit; a rollback drops the callbacks, and
    its tags go out with the next commit's (purging more than needed is
    harmless, purging less is not)."""
    tags = list(dict.fromkeys(tags_of(tags)))
    if not tags:
        return
    connection = transaction.get_connection(using)
    pending = connection.__dict__.setdefault("_static_gen_pending_tags", {})
    pending.update(dict.fromkeys(tags))

    def flush():
        batch = list(pending)
        pending.clear()
        if batch:
            purge_tags(batch)

    transaction.on_commit(flush, using=using)


# ---------------------------------------------------------------------------
# Tags
# ---------------------------------------------------------------------------


def _label(model):
    return model._meta.label_lower  # "blog.article"


def tag_for(item):
    """The tag of one object (`blog.article-12`), of a model class (its
    listings: `blog.article`), or a string, checked."""
    if isinstance(item, str):
        if not _TAG.match(item):
            raise ValueError(
                f"invalid static_gen tag {item!r}: 1 to {TAG_MAX_BYTES} bytes of visible "
                "ASCII without ','"
            )
        return item
    if isinstance(item, type) and issubclass(item, models.Model):
        return _label(item)
    if isinstance(item, models.Model):
        if item.pk is None:
            raise ValueError(f"an unsaved {type(item).__name__} has no static_gen tag")
        return tag_for_pk(type(item), item.pk)
    raise TypeError(f"cannot tag {item!r}")


def tag_for_pk(model, pk):
    """The tag of the `model` object whose primary key is `pk`, without
    fetching it (a comment's article: tag_for_pk(Article, c.article_id))."""
    base = _label(model) + "-"
    pk = str(pk)
    if not _PLAIN_PK.match(pk) or len(base) + len(pk) > TAG_MAX_BYTES:
        pk = "~" + hashlib.sha256(pk.encode("utf-8")).hexdigest()[:40]
    return tag_for(base + pk)


def tags_of(items):
    """The tags of `items`: strings, model instances and model classes as
    tag_for; a QuerySet is a listing: its model's tag and each of its
    objects' (it is evaluated, and keeps its results for the template), and
    so is a paginator's Page of a QuerySet; other iterables (lists) give
    the tags of each of their items."""
    if isinstance(items, (str, models.Model, type)):
        items = [items]
    for item in items:
        if item is None:
            continue
        if isinstance(item, (str, models.Model, type)):
            yield tag_for(item)
        elif isinstance(item, models.QuerySet):
            yield _label(item.model)
            yield from tags_of(list(item))
        elif isinstance(getattr(item, "object_list", None), models.QuerySet):
            yield from tags_of([item.object_list])  # a Page of a QuerySet
        else:
            yield from tags_of(item)


def static_gen_tags(request, *items):
    """Adds the tags of `items` (see tags_of) to the page `request` renders;
    StaticGenTagsMiddleware sends them. Call it for everything the page
    shows that can change: a page that shows an object without its tag is
    not purged when the object changes."""
    page_tags = request.__dict__.setdefault("_static_gen_tags", {})
    page_tags.update(dict.fromkeys(tags_of(items)))


def page_tags(request):
    """The tags added so far for `request`, in order."""
    return list(getattr(request, "_static_gen_tags", {}))


register = template.Library()


@register.simple_tag(takes_context=True, name="static_gen_tags")
def static_gen_tags_tag(context, *items):
    """{% static_gen_tags article article.category %} in a template (with
    `"libraries": {"static_gen": "django_purge"}` in the TEMPLATES options,
    then {% load static_gen %}); needs `request` in the context (the
    `django.template.context_processors.request` context processor). Renders
    nothing."""
    request = context.get("request")
    if request is not None:
        static_gen_tags(request, *items)
    return ""


def _private(request, response):
    """Whether nginx would not share this response anyway: then it gets no
    tags (they would only tell a logged-in visitor how pages are tagged)."""
    if request.method not in ("GET", "HEAD") or response.status_code != 200:
        return True
    if response.cookies or response.get("X-Accel-Expires", "").strip() == "0":
        return True
    directives = {
        d.split("=", 1)[0].strip().lower() for d in response.get("Cache-Control", "").split(",")
    }
    if directives & {"private", "no-store", "no-cache"}:
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    return settings.SESSION_COOKIE_NAME in request.COOKIES


class StaticGenTagsMiddleware:
    """Sends the page's tags (static_gen_tags) in `X-Static-Gen-Tags`, on
    responses nginx may share only (a GET or HEAD answered 200 without a
    cookie, Cache-Control private/no-store/no-cache, X-Accel-Expires: 0, a
    logged-in user or a session cookie).

    One header: Django sends one value per header name (only cookies get
    several lines), and nginx reads all of an upstream's header lines into
    one buffer (proxy_buffer_size) anyway, so splitting would not help. A
    page whose tags would pass 16 KB is too big to tag: it is sent with
    `X-Accel-Expires: 0`, so nginx does not store it, and a warning is
    logged (a stored page that changes must be purged by some tag).

    Place it early in MIDDLEWARE (after SecurityMiddleware): it must see the
    response after the session and CSRF middlewares set their cookies."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        tags = page_tags(request)
        if not tags or _private(request, response):
            return response
        if response.has_header(TAG_HEADER):  # set by the view itself
            tags = response[TAG_HEADER].replace(",", " ").split() + tags
            tags = list(dict.fromkeys(tags))
        value = " ".join(tags)
        if len(value.encode("ascii")) > TAGS_MAX_BYTES:
            log.warning(
                "%s: %d tags (%d bytes) pass the %d bytes nginx keeps: not stored",
                request.path, len(tags), len(value), TAGS_MAX_BYTES,
            )
            del response[TAG_HEADER]
            response["X-Accel-Expires"] = "0"
            return response
        response[TAG_HEADER] = value
        return response


# ---------------------------------------------------------------------------
# Purging on save
# ---------------------------------------------------------------------------


def connect_tags(model, tags=None, listed=True, listed_by=()):
    """Purges by tag whenever an instance of `model` is saved or deleted,
    once the transaction commits (a purge before the commit would let a
    request that arrives in between store the old content again).

    tags(instance) returns what the pages that show the instance carry
    (objects, strings, see tags_of); by default the instance itself. The
    tags of the instance as it was before a save are purged too (a comment
    moved to another article).

    listed: pages list instances of the model (they carry its tag, as
    static_gen_tags(request, queryset) adds it): creating or deleting one
    also purges the model's tag (`blog.article`), since listings and their
    page numbers change. listed_by: the fields that decide where an
    instance is listed (its order, its category): a save that changes one
    of them purges the model's tag too. Any other save purges only the
    pages that show the instance."""
    tags = tags or (lambda instance: [instance])
    fields = [model._meta.get_field(name).attname for name in listed_by]

    def before_save(sender, instance, raw=False, **kwargs):
        instance._static_gen_before = None
        if raw or instance.pk is None:
            return
        try:
            old = sender._default_manager.get(pk=instance.pk)
        except sender.DoesNotExist:
            return
        instance._static_gen_before = (
            list(tags_of(tags(old))),
            [getattr(old, f) for f in fields],
        )

    def saved(sender, instance, created=False, raw=False, using=None, **kwargs):
        if raw:  # loaddata: no pages to purge
            return
        todo = list(tags_of(tags(instance)))
        before = getattr(instance, "_static_gen_before", None)
        moved = created or before is None or before[1] != [getattr(instance, f) for f in fields]
        if before is not None:
            todo = before[0] + todo
        if listed and moved:
            todo.append(_label(model))
        purge_tags_on_commit(todo, using=using)

    def deleted(sender, instance, using=None, **kwargs):
        todo = list(tags_of(tags(instance)))
        if listed:
            todo.append(_label(model))
        purge_tags_on_commit(todo, using=using)

    uid = f"django_purge.tags.{model._meta.label}"
    pre_save.connect(before_save, sender=model, weak=False, dispatch_uid=uid)
    post_save.connect(saved, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(deleted, sender=model, weak=False, dispatch_uid=uid)


def connect(model, scopes):
    """Purges `scopes(instance)` (URLs: {"uri": ...}, {"prefix": ...}, or {}
    for everything) whenever an instance of `model` is saved or deleted,
    and also the scopes of the instance as it was before a save (a new slug
    or category leaves pages at the old URLs). For sites that cannot tag
    their pages; see connect_tags.

    The purge runs when the transaction commits, not before: a request that
    arrived between a purge and the commit would render the old content
    from the database and store it again."""

    def before_save(sender, instance, raw=False, **kwargs):
        instance._static_gen_before_scopes = []
        if raw or instance.pk is None:
            return
        try:
            old = sender._default_manager.get(pk=instance.pk)
        except sender.DoesNotExist:
            return
        instance._static_gen_before_scopes = scopes(old)

    def changed(sender, instance, raw=False, using=None, **kwargs):
        if raw:  # loaddata: no pages to purge
            return
        todo = getattr(instance, "_static_gen_before_scopes", []) + scopes(instance)
        transaction.on_commit(lambda: purge_scopes(todo), using=using)

    uid = f"django_purge.{model._meta.label}"
    pre_save.connect(before_save, sender=model, weak=False, dispatch_uid=uid)
    post_save.connect(changed, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(changed, sender=model, weak=False, dispatch_uid=uid)
