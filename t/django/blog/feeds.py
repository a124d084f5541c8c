from django.contrib.syndication.views import Feed

from .models import Article


class LatestArticles(Feed):
    title = "static_gen blog"
    link = "/"
    description = "The latest articles"

    def items(self):
        return Article.objects.select_related("category")[:20]

    def item_title(self, item):
        return item.title

    def item_description(self, item):
        return item.body[:300]
