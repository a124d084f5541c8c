from django.urls import path

from . import views
from .feeds import LatestArticles

urlpatterns = [
    path("", views.home, name="home"),
    path("articles/", views.archive, name="archive"),
    path("articles/page/<int:page>/", views.archive, name="archive-page"),
    path("articles/feed/", LatestArticles(), name="feed"),
    path("articles/<slug:slug>/", views.article, name="article"),
    path("categories/<slug:slug>/", views.category, name="category"),
    # the old form of a category's pages: a permanent redirect to ?page=
    path("categories/<slug:slug>/page/<int:page>/", views.category_page, name="category-page"),
    path("about/", views.about, name="about"),
    path("about/contact/", views.contact, name="contact"),
    path("csrf/", views.csrf_token, name="csrf-token"),
]
