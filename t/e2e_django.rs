//! End to end: the test blog of `t/django/` (Django, SQLite, gunicorn on a
//! unix socket) behind nginx running `nginx-conf/django-gunicorn.conf` with
//! the module, as `ci/demo` runs it. Real sessions, a real login, real forms
//! with Django's CSRF protection, and real purges from `post_save`.
//!
//! Each test gets its own site: a copy of a database migrated and seeded
//! once per test process, its own gunicorn and nginx. The Django venv comes
//! from `ci/django-env` (PyPI); when it cannot be created the tests print
//! "skipped: ..." and pass (ci/test creates it first, so CI really runs them).
//!
//! The site (`Site`) and the helpers are in `t/example_conf/django.rs`,
//! shared with the real-browser test `t/browser.rs`.
mod common;
mod example_conf;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use common::*;
use example_conf::django::*;

/// The fields a browser would submit for the form whose tag contains
/// `form_marker`: inputs (checked boxes only, no buttons), textareas and
/// selects (the selected option).
fn form_fields(html: &str, form_marker: &str) -> Vec<(String, String)> {
    let start = html.find(form_marker).expect("form in the page");
    let end = html[start..].find("</form>").expect("end of form") + start;
    let form = &html[start..end];
    let mut fields = vec![];
    for t in tags(form, "input") {
        let Some(name) = attr(t, "name") else {
            continue;
        };
        let kind = attr(t, "type").unwrap_or_else(|| "text".into());
        match kind.as_str() {
            "submit" | "button" | "file" | "image" | "reset" => continue,
            "checkbox" | "radio" if !t.contains(" checked") => continue,
            _ => {}
        }
        let value = attr(t, "value").unwrap_or_else(|| {
            if kind == "checkbox" {
                "on".into()
            } else {
                String::new()
            }
        });
        fields.push((name, value));
    }
    let mut rest = form;
    while let Some(i) = rest.find("<textarea ") {
        let tag_end = rest[i..].find('>').unwrap() + i + 1;
        let name = attr(&rest[i..tag_end], "name").unwrap_or_default();
        let close = rest[tag_end..].find("</textarea>").unwrap() + tag_end;
        let text = &rest[tag_end..close];
        let text = text
            .strip_prefix("\r\n")
            .or(text.strip_prefix('\n'))
            .unwrap_or(text);
        fields.push((name, unescape(text)));
        rest = &rest[close..];
    }
    let mut rest = form;
    while let Some(i) = rest.find("<select ") {
        let tag_end = rest[i..].find('>').unwrap() + i + 1;
        let name = attr(&rest[i..tag_end], "name").unwrap_or_default();
        let close = rest[tag_end..].find("</select>").unwrap() + tag_end;
        if let Some(opt) = tags(&rest[tag_end..close], "option")
            .into_iter()
            .find(|o| o.contains(" selected"))
        {
            fields.push((name, attr(opt, "value").unwrap_or_default()));
        }
        rest = &rest[close..];
    }
    fields
}

/// The category link of an article page.
fn category_of(article_html: &str) -> String {
    let meta = &article_html[article_html.find("<p class=\"meta\">").expect("meta")..];
    tags(meta, "a")
        .into_iter()
        .filter_map(|t| attr(t, "href"))
        .find(|h| h.starts_with("/categories/"))
        .expect("category link")
}

/// An article in another category than `uri`, linked from `listing`.
fn article_elsewhere(site: &Site, listing: &str, not_category: &str) -> (String, String) {
    let page = site.get(listing, &Jar::default());
    for uri in article_links(&page.text()) {
        let html = site.get(&uri, &Jar::default()).text();
        let cat = category_of(&html);
        if cat != not_category {
            return (uri, cat);
        }
    }
    panic!("no article outside {not_category} on {listing}");
}

/// The purge location the site's Django posts to.
fn purge_url(site: &Site) -> String {
    format!("http://127.0.0.1:{}/_static_gen/purge", site.port())
}

/// GETs `uri` until it is a HIT (the MISS stored it; its compressed
/// variants may replace the file meanwhile).
fn warm(site: &Site, uri: &str) {
    if site.get(uri, &Jar::default()).sg_status() != "HIT" {
        assert!(wait_until(TIMEOUT, || site.page(uri).exists()), "{uri}");
        site.hit(uri);
    }
}

/// The primary key of the article at `uri`.
fn article_pk(site: &Site, uri: &str) -> String {
    let slug = uri.trim_start_matches("/articles/").trim_end_matches('/');
    site.shell(&format!(
        "from blog.models import Article; print(Article.objects.get(slug='{slug}').pk)"
    ))
    .trim()
    .to_string()
}

/// The page of `category`'s listing (`/categories/x/`,
/// `/categories/x/?page=2`, ...) that shows `article`.
fn category_page_with(site: &Site, category: &str, article: &str) -> String {
    (1..=10)
        .map(|n| match n {
            1 => category.to_string(),
            n => format!("{category}?page={n}"),
        })
        .find(|uri| {
            article_links(&site.get(uri, &Jar::default()).text()).contains(&article.to_string())
        })
        .unwrap_or_else(|| panic!("{article} is on no page of {category}"))
}

/// Posts a comment on `article` as the page's script does (a token from
/// /csrf/, then the form).
fn post_comment(site: &Site, article: &str, body: &str) {
    let mut jar = Jar::default();
    let t = site.get("/csrf/", &jar);
    assert_eq!(t.status, 200, "{t}");
    jar.take(&t);
    let text = t.text();
    let token = text
        .split('"')
        .nth(3)
        .expect("{\"token\": \"...\"}")
        .to_string();
    let posted = site.post_form(
        article,
        &mut jar,
        &[
            ("csrfmiddlewaretoken", &token),
            ("name", "Tagger"),
            ("body", body),
        ],
    );
    assert_eq!(posted.status, 303, "{posted}");
}

/// A raw GET straight to gunicorn's socket (bypassing nginx), to see the
/// headers Django sends to nginx.
fn django_direct(site: &Site, path: &str, cookie: &str) -> String {
    let mut s = UnixStream::connect(site.nginx.path("gunicorn.sock")).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").next().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn anonymous_pages_are_generated_and_served_without_django() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);

    let home = site.miss_then_hit("/");
    assert!(home.text().contains("Recent articles"), "{home}");
    let article = article_links(&home.text())[0].clone();
    let page = site.miss_then_hit(&article);
    let html = page.text();
    // what was stored is the anonymous page: no token, no user, no cookie
    assert!(html.contains("Log in</a>"), "{page}");
    assert!(!html.contains("Logged in as"), "{page}");
    assert_eq!(
        csrf_token_in(&html),
        None,
        "a stored page with a CSRF token"
    );
    assert!(!page.has_header("Set-Cookie"), "{page}");
    let file = fs::read(site.page(&article)).unwrap();
    let (head, _) = split_page(&file);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );

    // listings, the category, about: all generated
    site.miss_then_hit("/articles/");
    site.miss_then_hit("/articles/page/2/");
    let category = category_of(&html);
    site.miss_then_hit(&category);
    site.miss_then_hit("/about/");
    // a category's pages by query: each a page of its own, and the
    // tracking arguments of a campaign link are served from it
    let second = site.miss_then_hit(&format!("{category}?page=2"));
    let campaign = site.get(
        &format!("{category}?utm_source=news&page=2&fbclid=x"),
        &Jar::default(),
    );
    assert_eq!(campaign.sg_status(), "HIT", "{campaign}");
    assert_eq!(campaign.body, second.body);
    // the old URL of that page moved for good
    let old = site.get(&format!("{category}page/2/"), &Jar::default());
    assert_eq!(old.status, 301, "{old}");
    assert_eq!(
        old.header("Location"),
        Some(format!("{category}?page=2").as_str())
    );

    // the HIT is a file: conditional requests work, Django is not asked
    let etag = page.header("ETag").expect("ETag on a HIT").to_string();
    let not_modified = get_with(site.port(), &article, &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304, "{not_modified}");
    assert_eq!(site.django_saw(&article), 1);

    // a page that does not exist is answered 404 from disk once Django
    // said so (static_gen_valid 404 410 in the shipped configuration)
    let missing = site.get("/articles/no-such-article/", &Jar::default());
    assert_eq!(missing.status, 404, "{missing}");
    stored_body(&site.page("/articles/no-such-article/"));
    let again = site.get("/articles/no-such-article/", &Jar::default());
    assert_eq!((again.status, again.sg_status()), (404, "HIT"), "{again}");
    assert_eq!(again.body, missing.body);
    assert_eq!(site.django_saw("/articles/no-such-article/"), 1);
    site.nginx.assert_no_alerts();
}

#[test]
fn logged_in_visitors_bypass_and_see_their_name() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    // the demo purges by tag
    site.require_purge_by_tag();
    let home = site.get("/", &Jar::default());
    let article = article_links(&home.text())[1].clone();
    let anonymous = site.miss_then_hit(&article);

    let mut jar = site.log_in("reader", "reader");
    let before = site.django_saw(&article);
    let mine = site.get(&article, &jar);
    assert_eq!(mine.status, 200, "{mine}");
    assert_eq!(mine.sg_status(), "BYPASS", "{mine}");
    assert_eq!(site.django_saw(&article), before + 1, "Django rendered it");
    let html = mine.text();
    assert!(
        html.contains(r#"Logged in as <strong class="username">reader</strong>"#),
        "{mine}"
    );
    assert_ne!(
        text_of(&html, "rendered-at"),
        text_of(&anonymous.text(), "rendered-at")
    );
    // the logged-in page carries its own token, and the stored page is
    // still the anonymous one
    let token = csrf_token_in(&html).expect("a token on the logged-in page");
    let stored = String::from_utf8(stored_body(&site.page(&article))).unwrap();
    assert!(!stored.contains("reader"), "a personal page was stored");
    let again = site.hit(&article);
    assert!(!again.text().contains("Logged in as"), "{again}");

    // a comment from the logged-in page (token in the page), then log out
    let count = comment_count(&html);
    let r = site.post_form(
        &article,
        &mut jar,
        &[
            ("csrfmiddlewaretoken", &token),
            ("name", "reader"),
            ("body", "Posted while logged in."),
        ],
    );
    assert_eq!(r.status, 303, "{r}");
    let out = site.post_form(
        "/accounts/logout/",
        &mut jar,
        &[("csrfmiddlewaretoken", &token)],
    );
    assert_eq!(out.status, 302, "{out}");
    assert_eq!(jar.get("sessionid"), None, "logged out");
    let after = site.get(&article, &jar);
    assert_eq!(after.sg_status(), "MISS", "purged by the comment: {after}");
    assert_eq!(comment_count(&after.text()), count + 1);
    assert!(!after.text().contains("Logged in as"), "{after}");
    site.nginx.assert_no_alerts();
}

#[test]
fn the_comment_form_of_a_generated_page_passes_csrf() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    // the demo purges by tag
    site.require_purge_by_tag();
    let home = site.get("/", &Jar::default());
    let links = article_links(&home.text());
    let (article, other) = (links[2].clone(), links[3].clone());
    site.miss_then_hit(&other);
    let page = site.miss_then_hit(&article);
    let html = page.text();
    let count = comment_count(&html);
    // the generated form has an empty token field and fetches the token
    // from /csrf/ on submit
    assert!(
        html.contains(r#"<input type="hidden" name="csrfmiddlewaretoken" value="">"#),
        "{page}"
    );
    assert!(html.contains(r#"data-csrf-url="/csrf/""#), "{page}");
    let comment = [("name", "Visitor"), ("body", "Nice article, generated.")];

    // Django's CSRF check is on: no token, no comment
    let mut stranger = Jar::default();
    let refused = site.post_form(&article, &mut stranger, &comment);
    assert_eq!(refused.status, 403, "{refused}");
    assert_eq!(refused.sg_status(), "BYPASS", "{refused}");

    // what the page's script does: fetch the token (and its cookie)...
    let mut jar = Jar::default();
    let t = site.get("/csrf/", &jar);
    assert_eq!(t.status, 200, "{t}");
    assert_eq!(t.sg_status(), "BYPASS", "{t}");
    assert!(
        t.header("Cache-Control").unwrap_or("").contains("no-store"),
        "{t}"
    );
    jar.take(&t);
    assert!(jar.get("csrftoken").is_some(), "{t}");
    let text = t.text();
    let token = text
        .split('"')
        .nth(3)
        .expect("{\"token\": \"...\"}")
        .to_string();
    assert!(!site.page("/csrf/").exists());

    // ...and submit the form to the generated page's own URL
    let mut fields = vec![("csrfmiddlewaretoken", token.as_str())];
    fields.extend(comment);
    let posted = site.post_form(&article, &mut jar, &fields);
    assert_eq!(posted.status, 303, "{posted}");
    assert_eq!(posted.sg_status(), "BYPASS", "{posted}");
    let location = posted.header("Location").unwrap_or("");
    assert!(
        location.starts_with(&format!("{article}#comment-")),
        "{posted}"
    );

    // the comment purged the article (post_save): the next visit renders
    // the new count and comment, and is stored again
    let fresh = site.get(&article, &jar);
    assert_eq!(fresh.sg_status(), "MISS", "{fresh}");
    assert_eq!(comment_count(&fresh.text()), count + 1, "{fresh}");
    assert!(fresh.text().contains("Nice article, generated."));
    // (the purge was soft: the old page stays on disk until this one
    // replaces it)
    let page = site.page(&article);
    assert!(
        wait_until(TIMEOUT, || fs::read(&page).is_ok_and(|file| split_page(
            &file
        )
        .1 == fresh
            .body)),
        "the new page was not stored"
    );
    assert!(site
        .hit(&article)
        .text()
        .contains("Nice article, generated."));
    // the home page shows comment counts: purged too; other articles stay
    assert_eq!(site.get("/", &Jar::default()).sg_status(), "MISS");
    site.hit(&other);
    site.nginx.assert_no_alerts();
}

/// A site that cannot tag its pages (`BLOG_PURGE_BY=urls`): a save purges
/// the URLs that may show the article (django_purge.connect).
#[test]
fn saving_an_article_purges_its_urls_where_pages_are_not_tagged() {
    let venv = venv_or_skip!();
    let site = Site::start_with_env(venv, site_conf(), &[("BLOG_PURGE_BY", "urls".into())]);
    let home = site.get("/", &Jar::default());
    let article = article_links(&home.text())[0].clone();
    let html = site.miss_then_hit(&article).text();
    let category = category_of(&html);
    let (other, other_category) = article_elsewhere(&site, "/articles/page/3/", &category);
    // warm everything
    for uri in [
        "/",
        "/articles/",
        "/articles/page/2/",
        &category,
        &other,
        &other_category,
    ] {
        if site.get(uri, &Jar::default()).sg_status() != "HIT" {
            assert!(wait_until(TIMEOUT, || site.page(uri).exists()), "{uri}");
            site.hit(uri);
        }
    }

    let slug = article
        .trim_start_matches("/articles/")
        .trim_end_matches('/');
    let log = site.shell(&format!(
        "from blog.models import Article\n\
         a = Article.objects.get(slug='{slug}')\n\
         a.title = 'Five thousand pages per second, revisited'\n\
         a.save()"
    ));
    assert!(
        log.contains(&format!(
            "purge {{'uri': '{article}'}} at {}: {{'status': 'ok'",
            purge_url(&site)
        )),
        "{log}"
    );
    assert!(!log.contains("failed"), "{log}");
    assert!(!log.contains("'tag'"), "{log}");

    // the article, the archive, its category and the home page show it
    for uri in [article.as_str(), "/", "/articles/", category.as_str()] {
        let r = site.get(uri, &Jar::default());
        assert_eq!(r.sg_status(), "MISS", "{uri} was not purged: {r}");
        assert!(
            r.text()
                .contains("Five thousand pages per second, revisited"),
            "{uri}: {r}"
        );
    }
    // ...and nothing else was purged
    // the archive's other pages, by prefix (the article may move between them)
    assert_eq!(
        site.get("/articles/page/2/", &Jar::default()).sg_status(),
        "MISS"
    );
    // ...and nothing else was purged
    site.hit(&other);
    site.hit(&other_category);
    site.nginx.assert_no_alerts();
}

#[test]
fn saving_in_the_admin_purges_the_article() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    // the demo purges by tag
    site.require_purge_by_tag();
    let home = site.get("/", &Jar::default());
    let links = article_links(&home.text());
    let (article, other) = (links[4].clone(), links[5].clone());
    site.miss_then_hit(&article);
    site.miss_then_hit(&other);
    let slug = article
        .trim_start_matches("/articles/")
        .trim_end_matches('/');
    let id = site
        .shell(&format!(
            "from blog.models import Article; print(Article.objects.get(slug='{slug}').pk)"
        ))
        .trim()
        .to_string();

    let mut jar = site.log_in("admin", "admin");
    let change = format!("/admin/blog/article/{id}/change/");
    let form = site.get(&change, &jar);
    assert_eq!(form.status, 200, "{form}");
    assert_eq!(form.sg_status(), "BYPASS", "{form}");
    let mut fields = form_fields(&form.text(), "id=\"article_form\"");
    for (name, value) in fields.iter_mut() {
        if name == "title" {
            *value = "Edited in the admin".into();
        }
    }
    fields.push(("_save".into(), "Save".into()));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let saved = site.post_form(&change, &mut jar, &borrowed);
    assert_eq!(saved.status, 302, "the admin did not save:\n{saved}");

    let r = site.get(&article, &Jar::default());
    assert_eq!(r.sg_status(), "MISS", "{r}");
    assert!(r.text().contains("Edited in the admin"), "{r}");
    site.hit(&other);
    site.nginx.assert_no_alerts();
}

#[test]
fn pages_that_set_a_cookie_or_embed_a_token_are_not_stored() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    let root = site.nginx.path("generated");

    // the contact page: a classic {% csrf_token %} form
    let mut jar = Jar::default();
    let first = site.get("/about/contact/", &jar);
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.sg_status(), "MISS", "{first}");
    assert!(first.has_header("Set-Cookie"), "{first}");
    // (Django's X-Accel-Expires: 0, below, does not reach the client)
    assert!(!first.has_header("X-Accel-Expires"), "{first}");
    let token1 = csrf_token_in(&first.text()).expect("token");
    assert_not_stored(&site.page("/about/contact/"), &root);
    jar.take(&first);
    // with the cookie, Django sends it again: still not stored
    let second = site.get("/about/contact/", &jar);
    assert_eq!(second.sg_status(), "MISS", "{second}");
    let token2 = csrf_token_in(&second.text()).expect("token");
    assert_ne!(token1, token2, "a masked token is new on every page");
    assert_not_stored(&site.page("/about/contact/"), &root);
    // ...and the form works
    let mut sent_jar = jar.clone();
    let sent = site.post_form(
        "/about/contact/",
        &mut sent_jar,
        &[
            ("csrfmiddlewaretoken", &token2),
            ("email", "a@example.org"),
            ("message", "Hello"),
        ],
    );
    assert_eq!(sent.status, 200, "{sent}");
    assert!(sent.text().contains("Thank you"), "{sent}");

    // Django also tells nginx itself (blog/middleware.py): a token used...
    let head = django_direct(&site, "/about/contact/", "");
    assert!(head.contains("X-Accel-Expires: 0"), "{head}");
    // ...or a logged-in user
    let jar = site.log_in("reader", "reader");
    let head = django_direct(&site, "/about/", &jar.header());
    assert!(head.contains("X-Accel-Expires: 0"), "{head}");
    // but not an anonymous page
    let head = django_direct(&site, "/about/", "");
    assert!(!head.contains("X-Accel-Expires"), "{head}");
    // nginx never passes that header on
    let r = site.get("/about/", &jar);
    assert_eq!(r.headers_all("X-Static-Gen"), ["BYPASS"], "{r}");
    assert!(!r.has_header("X-Accel-Expires"), "{r}");

    // the token endpoint and the login page are outside the patterns
    for uri in ["/csrf/", "/accounts/login/"] {
        let r = site.get(uri, &Jar::default());
        assert_eq!(r.sg_status(), "BYPASS", "{uri}: {r}");
        assert!(r.has_header("Set-Cookie"), "{uri}: {r}");
    }
    assert!(!site.page("/csrf/").exists());
    assert!(!site.page("/accounts/login/").exists());
    site.nginx.assert_no_alerts();
}

#[test]
fn pages_carry_the_tags_of_what_they_show_and_clients_never_see_them() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    // the module must keep the tags and strip the header
    site.require_purge_by_tag();
    let listing = "/articles/page/9/";
    // nginx stores the listing (MISS) and never passes its tags on
    let miss = site.get(listing, &Jar::default());
    assert_eq!(miss.sg_status(), "MISS", "{miss}");
    let article = article_links(&miss.text())[3].clone();
    let pk = article_pk(&site, &article);

    // what Django sends nginx: the listing's tag and each article's
    let head = django_direct(&site, listing, "");
    let tags = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Static-Gen-Tags: "))
        .unwrap_or_else(|| panic!("no tags from Django:\n{head}"));
    let tags: Vec<&str> = tags.split(' ').collect();
    assert!(tags.contains(&"blog.article"), "{tags:?}");
    assert!(
        tags.contains(&format!("blog.article-{pk}").as_str()),
        "{tags:?}"
    );
    assert_eq!(
        tags.iter()
            .filter(|t| t.starts_with("blog.article-"))
            .count(),
        20
    );
    assert!(
        tags.iter().any(|t| t.starts_with("blog.category-")),
        "{tags:?}"
    );
    let head = django_direct(&site, &article, "");
    assert!(
        head.contains(&format!(
            "X-Static-Gen-Tags: blog.article-{pk} blog.category-"
        )),
        "{head}"
    );
    // none on pages nginx must not share: a logged-in visitor's, the
    // contact page (its cookie), a 404
    let jar = site.log_in("reader", "reader");
    assert!(!django_direct(&site, listing, &jar.header()).contains("X-Static-Gen-Tags"));
    assert!(!django_direct(&site, "/about/contact/", "").contains("X-Static-Gen-Tags"));
    assert!(!django_direct(&site, "/articles/no-such/", "").contains("X-Static-Gen-Tags"));

    // nginx keeps them and never passes them on: MISS, HIT, BYPASS
    let hit = site.miss_then_hit(&article);
    let bypass = site.get(&article, &jar);
    assert_eq!(bypass.sg_status(), "BYPASS", "{bypass}");
    for r in [&miss, &hit, &bypass] {
        assert!(!r.has_header("X-Static-Gen-Tags"), "{r}");
    }
    site.nginx.assert_no_alerts();
}

#[test]
fn editing_an_article_purges_every_page_that_shows_it_and_no_other() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    // the demo purges by tag
    site.require_purge_by_tag();
    // an article deep in the archive, which no list of URLs would name
    let listing = "/articles/page/9/";
    let links = article_links(&site.get(listing, &Jar::default()).text());
    let (article, neighbour) = (links[7].clone(), links[8].clone());
    let category = category_of(&site.get(&article, &Jar::default()).text());
    let category_page = category_page_with(&site, &category, &article);
    let neighbour_category = category_of(&site.get(&neighbour, &Jar::default()).text());
    assert_ne!(category, neighbour_category);
    let other_category_page = if category_page == category {
        format!("{category}?page=2")
    } else {
        category.clone()
    };
    let shows_it = [article.as_str(), listing, category_page.as_str()];
    let others = [
        "/",
        "/articles/",
        "/articles/page/8/",
        "/articles/page/10/",
        neighbour.as_str(),
        neighbour_category.as_str(),
        other_category_page.as_str(),
        "/about/",
    ];
    for uri in shows_it.iter().chain(&others) {
        warm(&site, uri);
    }
    let pk = article_pk(&site, &article);

    let log = site.shell(&format!(
        "from blog.models import Article\n\
         a = Article.objects.get(pk={pk})\n\
         a.title = 'Tagged and purged, page nine'\n\
         a.save()"
    ));
    // one purge, of the article's tag only (not `blog.article`: the
    // listings did not shift)
    assert!(
        log.contains(&format!(
            "purge {{'tag': ['blog.article-{pk}']}} at {}: {{'status': 'ok'",
            purge_url(&site)
        )),
        "{log}"
    );
    assert_eq!(log.matches("purge {").count(), 1, "{log}");

    for uri in shows_it {
        let r = site.get(uri, &Jar::default());
        assert_eq!(
            r.sg_status(),
            "MISS",
            "{uri} shows the article and was not purged: {r}"
        );
        assert!(
            r.text().contains("Tagged and purged, page nine"),
            "{uri}: {r}"
        );
    }
    // every other page stays generated (a HIT that Django does not see)
    for uri in others {
        site.hit(uri);
    }
    site.nginx.assert_no_alerts();
}

#[test]
fn a_comment_purges_the_pages_of_its_article_only() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    // the demo purges by tag
    site.require_purge_by_tag();
    let listing = "/articles/page/3/";
    let links = article_links(&site.get(listing, &Jar::default()).text());
    let (article, neighbour) = (links[4].clone(), links[5].clone());
    let html = site.get(&article, &Jar::default()).text();
    let count = comment_count(&html);
    let category_page = category_page_with(&site, &category_of(&html), &article);
    let neighbour_category = category_of(&site.get(&neighbour, &Jar::default()).text());
    let shows_it = [article.as_str(), listing, category_page.as_str()];
    let others = [
        "/",
        "/articles/page/4/",
        neighbour.as_str(),
        neighbour_category.as_str(),
    ];
    for uri in shows_it.iter().chain(&others) {
        warm(&site, uri);
    }

    post_comment(&site, &article, "A tag purged this page.");

    for uri in shows_it {
        let r = site.get(uri, &Jar::default());
        assert_eq!(r.sg_status(), "MISS", "{uri} was not purged: {r}");
    }
    let page = site.get(&article, &Jar::default()).text();
    assert_eq!(comment_count(&page), count + 1);
    assert!(page.contains("A tag purged this page."));
    for uri in others {
        site.hit(uri);
    }
    let log = site.gunicorn.log();
    assert!(log.contains("purge {'tag': ['blog.article-"), "{log}");
    site.nginx.assert_no_alerts();
}

#[test]
fn a_new_article_purges_the_listings_and_no_article() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
    // the demo purges by tag
    site.require_purge_by_tag();
    let home = site.get("/", &Jar::default());
    let article = article_links(&home.text())[0].clone();
    let category = category_of(&site.get(&article, &Jar::default()).text());
    let listings = ["/", "/articles/", "/articles/page/15/", category.as_str()];
    for uri in listings.iter().chain([&article.as_str()]) {
        warm(&site, uri);
    }
    let log = site.shell(
        "from datetime import datetime, timezone\n\
         from blog.models import Article, Category\n\
         Article.objects.create(title='Brand new', slug='brand-new', body='New.',\n\
             category=Category.objects.get(slug='rust'),\n\
             published=datetime(2030, 1, 1, tzinfo=timezone.utc))",
    );
    assert!(log.contains("'blog.article']} at "), "{log}");
    // every listing shifted (one more article, one more page)
    for uri in listings {
        assert_eq!(site.get(uri, &Jar::default()).sg_status(), "MISS", "{uri}");
    }
    assert!(site.get("/", &Jar::default()).text().contains("Brand new"));
    // the articles' own pages did not change
    site.hit(&article);
    site.nginx.assert_no_alerts();
}
