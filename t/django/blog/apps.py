from django.apps import AppConfig
from django.conf import settings


class BlogConfig(AppConfig):
    name = "blog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # nginx-conf/django_purge.py (on sys.path, see settings.py)
        import django_purge

        from .models import Article, Category, Comment

        if settings.BLOG_PURGE_BY == "urls":
            # for sites that cannot tag their pages: the URLs that may show
            # the instance (models.py)
            for model in (Article, Category, Comment):
                django_purge.connect(model, model.static_gen_scopes)
            return
        # The pages carry the tags of what they show (views.py, templates):
        # a save purges the instance's tag, so exactly the pages that show
        # it. A new or deleted article, or one whose date or category
        # changed, also purges `blog.article`, which every listing carries
        # (their pages shift); a new or deleted category `blog.category`
        # (the home page lists them).
        django_purge.connect_tags(Article, listed_by=["published", "category"])
        django_purge.connect_tags(Category)
        # a comment shows on its article's page and counts in its listings:
        # the pages that carry its article's tag
        django_purge.connect_tags(
            Comment,
            listed=False,
            tags=lambda c: [django_purge.tag_for_pk(Article, c.article_id)],
        )
