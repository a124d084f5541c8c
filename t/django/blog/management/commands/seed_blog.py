"""Fills an empty database with the test blog's content, deterministically:
the same categories, articles (titles, slugs, dates, bodies) and comments on
every run, and two users, `admin` (superuser, password `admin`) and `reader`
(password `reader`). For the demo and the tests only.

    manage.py seed_blog [--articles 300]

Does nothing when the database already has articles. Rows are inserted with
bulk_create, which sends no signals: seeding purges nothing.
"""
import random
from datetime import datetime, timedelta, timezone

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils.text import slugify

from blog.models import Article, Category, Comment

CATEGORIES = ["Django", "nginx", "Python", "Caching", "Rust", "Notes"]
VERBS = ["Serving", "Caching", "Purging", "Generating", "Measuring", "Tuning", "Testing",
         "Deploying", "Profiling", "Rewriting", "Shipping", "Debugging"]
THINGS = ["static pages", "comment counts", "the home page", "category listings",
          "article archives", "RSS feeds", "session cookies", "CSRF tokens", "gunicorn workers",
          "SQLite queries", "template fragments", "upstream responses"]
TOOLS = ["nginx", "Django", "gunicorn", "memcached", "a post_save signal", "sendfile",
         "a purge location", "StaticGenerator", "Zinnia", "wrk", "Rust", "one shell script"]
WORDS = ("page request response cache nginx django worker socket file tree purge header cookie "
         "session template query database signal article comment category listing proxy "
         "upstream static dynamic anonymous visitor second millisecond disk memory").split()
AUTHORS = ["Kevin", "Ada", "Grace", "Linus", "Guido", "Jacob", "Adrian", "Simon", "Barbara", "Ken"]
START = datetime(2011, 6, 26, 9, 0, tzinfo=timezone.utc)


def sentence(rng):
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
    return " ".join(words).capitalize() + "."


def paragraph(rng):
    return " ".join(sentence(rng) for _ in range(rng.randint(3, 6)))


class Command(BaseCommand):
    help = "Creates the test blog's content (deterministic) in an empty database."

    def add_arguments(self, parser):
        parser.add_argument("--articles", type=int, default=300)

    @transaction.atomic
    def handle(self, *args, articles, **options):
        if Article.objects.exists():
            self.stdout.write("seed_blog: the database has articles already, nothing to do")
            return
        rng = random.Random(5000)
        categories = Category.objects.bulk_create(
            Category(name=name, slug=slugify(name)) for name in CATEGORIES
        )
        rows, slugs = [], set()
        for i in range(articles):
            title = f"{rng.choice(VERBS)} {rng.choice(THINGS)} with {rng.choice(TOOLS)}"
            slug = base = slugify(title)
            n = 2
            while slug in slugs:
                slug, n = f"{base}-{n}", n + 1
            slugs.add(slug)
            rows.append(Article(
                title=title,
                slug=slug,
                category=categories[i % len(categories)],
                body="\n\n".join(paragraph(rng) for _ in range(rng.randint(3, 5))),
                published=START + timedelta(days=i, minutes=rng.randint(0, 600)),
            ))
        rows = Article.objects.bulk_create(rows)
        comments = []
        for article in rows:
            for k in range(rng.randint(0, 4)):
                comments.append(Comment(
                    article=article,
                    name=rng.choice(AUTHORS),
                    body=paragraph(rng),
                    posted=article.published + timedelta(hours=k + 1),
                ))
        Comment.objects.bulk_create(comments)
        users = get_user_model()
        if not users.objects.filter(username="admin").exists():
            users.objects.create_superuser("admin", "admin@example.com", "admin")
        if not users.objects.filter(username="reader").exists():
            users.objects.create_user("reader", "reader@example.com", "reader")
        self.stdout.write(
            f"seed_blog: {len(categories)} categories, {len(rows)} articles, "
            f"{len(comments)} comments; users admin/admin and reader/reader"
        )
