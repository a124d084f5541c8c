from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "blog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # nginx-conf/django_purge.py (on sys.path, see settings.py)
        import django_purge

        from .models import Article, Category, Comment

        for model in (Article, Category, Comment):
            django_purge.connect(model, model.static_gen_scopes)
