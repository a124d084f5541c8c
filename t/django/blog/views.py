from django.core.paginator import EmptyPage, Paginator
from django.db.models import Count
from django.http import Http404, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe, require_http_methods

from django_purge import static_gen_tags

from .forms import CommentForm, ContactForm
from .models import Article, Category

PER_PAGE = 20


def articles():
    # Meta.ordering does not apply to a query with GROUP BY (the comment
    # count): without order_by the listings come in whatever order SQLite
    # picks, and Paginator warns (UnorderedObjectListWarning)
    return (
        Article.objects.select_related("category")
        .annotate(comment_count=Count("comments"))
        .order_by(*Article._meta.ordering)
    )


def page_of(queryset, number):
    try:
        return Paginator(queryset, PER_PAGE, allow_empty_first_page=True).page(number)
    except EmptyPage:
        raise Http404("no such page")


def context(**values):
    # "rendered at": a page served from the generated tree shows the time
    # Django rendered it, which makes HIT and MISS easy to tell apart
    values["rendered_at"] = timezone.now().strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return values


@require_safe
def home(request):
    recent = articles()[:10]
    categories = Category.objects.annotate(article_count=Count("articles")).order_by(
        *Category._meta.ordering
    )
    # two listings: `blog.article` and `blog.category`, and the tag of each
    # article and category shown (the templates tag what each item shows)
    static_gen_tags(request, recent, categories)
    return render(request, "blog/home.html", context(articles=recent, categories=categories))


@require_safe
def archive(request, page=1):
    if "page" in request.resolver_match.kwargs and page == 1:
        return redirect("archive", permanent=True)
    page = page_of(articles(), page)
    static_gen_tags(request, page)  # `blog.article` and each article shown
    return render(
        request,
        "blog/article_list.html",
        context(title="Archive", page=page, page_url="archive-page"),
    )


@require_safe
def category(request, slug):
    """A category's listing, paginated by query (`?page=2`, which nginx
    stores as a page of its own: `static_gen_key_args page`)."""
    cat = get_object_or_404(Category, slug=slug)
    number = request.GET.get("page", "1")
    if not number.isdigit() or number.startswith("0"):
        raise Http404("no such page")
    if number == "1" and "page" in request.GET:
        return redirect(cat, permanent=True)
    page = page_of(articles().filter(category=cat), int(number))
    static_gen_tags(request, cat, page)  # its name, `blog.article`, each article
    return render(
        request,
        "blog/article_list.html",
        context(title=cat.name, category=cat, page=page),
    )


@require_safe
def category_page(request, slug, page):
    """The old URL of a category's page: moved to `?page=` for good."""
    cat = get_object_or_404(Category, slug=slug)
    url = cat.get_absolute_url()
    return redirect(url if page == 1 else f"{url}?page={page}", permanent=True)


@require_http_methods(["GET", "HEAD", "POST"])
def article(request, slug):
    """The article page. Anonymous visitors get a page without any per-visitor
    data, which nginx stores; its comment form fetches a CSRF token from
    /csrf/ when it is submitted (see article.html). A POST to the same URL
    posts a comment (POST always reaches Django, even when nginx has the
    page), with Django's usual CSRF check."""
    art = get_object_or_404(articles(), slug=slug)
    form = CommentForm()
    status = 200
    if request.method == "POST":
        form = CommentForm(request.POST)
        if form.is_valid():
            comment = form.save(commit=False)
            comment.article = art
            comment.save()  # purges the article's pages (apps.py)
            response = redirect(f"{art.get_absolute_url()}#comment-{comment.pk}")
            response.status_code = 303
            return response
        status = 400
    return render(
        request,
        "blog/article.html",
        context(article=art, comments=art.comments.all(), form=form),
        status=status,
    )


@require_safe
def about(request):
    return render(request, "blog/about.html", context())


@require_http_methods(["GET", "HEAD", "POST"])
def contact(request):
    """A classic Django form with {% csrf_token %} in the page: every visitor
    gets their own token and the csrftoken cookie, so nginx never stores this
    page (Set-Cookie, and X-Static-Gen: no-store from blog.middleware)."""
    sent = False
    form = ContactForm()
    if request.method == "POST":
        form = ContactForm(request.POST)
        sent = form.is_valid()
    return render(request, "blog/contact.html", context(form=form, sent=sent))


@never_cache
@require_safe
def csrf_token(request):
    """The CSRF token for forms on generated pages, with the csrftoken cookie
    it belongs to. Outside nginx's static_gen_pattern, and never stored: it
    sets a cookie and says Cache-Control: private, no-store."""
    response = JsonResponse({"token": get_token(request)})
    response["Cache-Control"] = "private, no-store, no-cache, max-age=0"
    return response
