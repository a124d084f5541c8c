from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone


def not_a_listing_segment(slug):
    # /articles/page/2/ is the archive's second page, not an article
    if slug == "page" or slug == "feed":
        raise ValidationError(f"{slug!r} is reserved")


class Category(models.Model):
    name = models.CharField(max_length=80, unique=True)
    slug = models.SlugField(max_length=80, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("category", args=[self.slug])

    def static_gen_scopes(self):
        """(BLOG_PURGE_BY=urls, see apps.py) Every article page shows its
        category's name: a renamed category empties the whole tree (rare,
        and instant: the module's purge epoch)."""
        return [{}]


class Article(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True, validators=[not_a_listing_segment])
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="articles")
    body = models.TextField()
    published = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-published", "-id"]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("article", args=[self.slug])

    def static_gen_scopes(self):
        """(BLOG_PURGE_BY=urls, see apps.py) The generated pages that show
        this article (title, date, comment count): its own page, the
        archive, its category's listing and the home page. Other articles'
        pages do not show it, so they stay."""
        return [
            {"uri": self.get_absolute_url()},
            {"uri": reverse("archive")},
            {"prefix": reverse("archive") + "page/"},
            {"prefix": self.category.get_absolute_url()},
            {"uri": "/"},
        ]


class Comment(models.Model):
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="comments")
    name = models.CharField(max_length=80)
    body = models.TextField(max_length=2000)
    posted = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["posted", "id"]

    def __str__(self):
        return f"{self.name} on {self.article}"

    def static_gen_scopes(self):
        # the comment count shows wherever the article does
        return self.article.static_gen_scopes()
