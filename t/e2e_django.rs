//! End to end: the test blog of `t/django/` (Django, SQLite, gunicorn on a
//! unix socket) behind nginx running `nginx-conf/django-gunicorn.conf` with
//! the module, as `ci/demo` runs it. Real sessions, a real login, real forms
//! with Django's CSRF protection, and real purges from `post_save`.
//!
//! Each test gets its own site: a copy of a database migrated and seeded
//! once per test process, its own gunicorn and nginx. The Django venv comes
//! from `ci/django-env` (PyPI); when it cannot be created the tests print
//! "skipped: ..." and pass (ci/test creates it first, so CI really runs them).
mod common;
mod example_conf;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use example_conf::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn django_dir() -> PathBuf {
    repo().join("t/django")
}

/// The venv's directory, created (once per process) by `ci/django-env`;
/// None when that failed (no PyPI).
fn venv() -> Option<&'static Path> {
    static VENV: OnceLock<Option<PathBuf>> = OnceLock::new();
    VENV.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("ci/django-env"))
            .output()
            .expect("run ci/django-env");
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && path.join("bin/gunicorn").exists() {
            Some(path)
        } else {
            eprintln!(
                "ci/django-env failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    })
    .as_deref()
}

macro_rules! venv_or_skip {
    () => {
        match venv() {
            Some(v) => v,
            None => {
                eprintln!(
                    "skipped: the Django virtualenv could not be created (ci/django-env: \
                     no access to PyPI?)"
                );
                return;
            }
        }
    };
}

/// `manage.py` in t/django with `env`; panics with its output on failure.
fn manage(venv: &Path, env: &[(&str, String)], args: &[&str]) -> String {
    let out = Command::new(venv.join("bin/python"))
        .arg("manage.py")
        .args(args)
        .current_dir(django_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("BLOG_FAST_PASSWORD_HASHER", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run manage.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "manage.py {args:?} failed:\n{text}");
    text
}

/// A migrated and seeded database, made once per test process (in cargo's
/// temporary directory for integration tests); each site copies it.
fn template_db(venv: &Path) -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(dir).unwrap();
        let db = dir.join("e2e_django-template.sqlite3");
        let building = dir.join(format!(
            "e2e_django-template-{}.sqlite3",
            std::process::id()
        ));
        let _ = fs::remove_file(&building);
        let env = [("BLOG_DB", building.display().to_string())];
        manage(venv, &env, &["migrate", "--verbosity", "0"]);
        manage(venv, &env, &["seed_blog"]);
        fs::rename(&building, &db).unwrap();
        db
    })
}

/// nginx (django-gunicorn.conf) in front of gunicorn and the blog.
struct Site {
    venv: &'static Path,
    // field order: nginx stops before gunicorn
    nginx: ConfRun,
    _gunicorn: Service,
}

impl Site {
    fn start(venv: &'static Path) -> Site {
        let conf = example("django-gunicorn.conf", "unix:{tmp}/gunicorn.sock");
        fs::copy(template_db(venv), conf.path("blog.sqlite3")).unwrap();
        let nginx = conf.start();
        let mut cmd = Command::new(venv.join("bin/gunicorn"));
        cmd.arg("--chdir")
            .arg(django_dir())
            .arg("--bind")
            .arg(format!("unix:{}", nginx.path("gunicorn.sock").display()))
            // one sync worker: requests one after the other, so that a
            // request's log line is written before the next one is taken
            // (see sync_log)
            .arg("--workers")
            .arg("1")
            .arg("--access-logfile")
            .arg(nginx.path("gunicorn-access.log"))
            // no control socket (gunicorn makes one in ~/.gunicorn by
            // default, the same for every instance)
            .arg("--no-control-socket")
            .arg("blogsite.wsgi")
            .envs(Site::env_of(&nginx));
        let mut gunicorn = Service::spawn("gunicorn", cmd, nginx.path("gunicorn.log"));
        let socket = nginx.path("gunicorn.sock");
        gunicorn.wait_ready(Duration::from_secs(20), || {
            UnixStream::connect(&socket).is_ok()
        });
        Site {
            venv,
            nginx,
            _gunicorn: gunicorn,
        }
    }

    fn env_of(nginx: &ConfRun) -> Vec<(&'static str, String)> {
        vec![
            ("BLOG_DB", nginx.path("blog.sqlite3").display().to_string()),
            (
                "STATIC_GEN_PURGE_URL",
                format!("http://127.0.0.1:{}/_static_gen/purge", nginx.port()),
            ),
            ("BLOG_FAST_PASSWORD_HASHER", "1".into()),
            ("PYTHONDONTWRITEBYTECODE", "1".into()),
        ]
    }

    fn port(&self) -> u16 {
        self.nginx.port()
    }

    /// `manage.py shell -c code` against this site's database and nginx.
    fn shell(&self, code: &str) -> String {
        manage(
            self.venv,
            &Site::env_of(&self.nginx),
            &["shell", "--verbosity", "0", "-c", code],
        )
    }

    /// The generated file of `uri`.
    fn page(&self, uri: &str) -> PathBuf {
        self.nginx.path(format!("generated/{}", page_rel(uri)))
    }

    /// Requests gunicorn logged for exactly `path` (any method), once it
    /// logged everything sent before.
    fn django_saw(&self, path: &str) -> usize {
        self.sync_log();
        let log = fs::read_to_string(self.nginx.path("gunicorn-access.log")).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.split('"')
                    .nth(1)
                    .and_then(|r| r.split(' ').nth(1))
                    .is_some_and(|p| p == path)
            })
            .count()
    }

    fn get(&self, path: &str, jar: &Jar) -> Response {
        let cookie = jar.header();
        let mut headers = vec![];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        get_with(self.port(), path, &headers)
    }

    /// POSTs a form (application/x-www-form-urlencoded), keeping cookies.
    fn post_form(&self, path: &str, jar: &mut Jar, fields: &[(&str, &str)]) -> Response {
        let body = urlencode(fields);
        let cookie = jar.header();
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let r = method_with(self.port(), "POST", path, &headers, body.as_bytes());
        jar.take(&r);
        r
    }

    /// GET `uri` twice: a MISS that Django rendered and nginx stored, then a
    /// HIT with the same bytes that Django never saw.
    fn miss_then_hit(&self, uri: &str) -> Response {
        let before = self.django_saw(uri);
        let miss = self.get(uri, &Jar::default());
        assert_eq!(miss.status, 200, "{miss}");
        assert_eq!(miss.sg_status(), "MISS", "{uri}: {miss}");
        assert_eq!(
            self.django_saw(uri),
            before + 1,
            "{uri}: the MISS reached Django"
        );
        let stored = stored_body(&self.page(uri));
        assert_eq!(stored, miss.body, "{uri}: the file holds the page");
        let hit = self.hit(uri);
        assert_eq!(hit.body, miss.body, "{uri}: the HIT is the stored page");
        hit
    }

    /// GET `uri`, expecting a HIT that Django did not see.
    fn hit(&self, uri: &str) -> Response {
        let before = self.django_saw(uri);
        let hit = self.get(uri, &Jar::default());
        assert_eq!(hit.status, 200, "{hit}");
        assert_eq!(hit.sg_status(), "HIT", "{uri}: {hit}");
        assert_eq!(self.django_saw(uri), before, "{uri}: a HIT reached Django");
        hit
    }

    /// Waits until gunicorn logged a request sent after everything before:
    /// it logs a request just after its response, so a client can be faster
    /// than the log, but its one worker takes the next request only then.
    fn sync_log(&self) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let marker = format!(
            "/csrf/?log-sync={}",
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let r = self.get(&marker, &Jar::default());
        assert_eq!(r.status, 200, "{r}");
        let log = self.nginx.path("gunicorn-access.log");
        assert!(
            wait_until(TIMEOUT, || fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&marker)),
            "gunicorn did not log {marker}"
        );
    }

    /// Logs in through /accounts/login/ (Django's CSRF-protected form).
    fn log_in(&self, user: &str, password: &str) -> Jar {
        let mut jar = Jar::default();
        let form = self.get("/accounts/login/", &jar);
        assert_eq!(form.status, 200, "{form}");
        assert_eq!(form.sg_status(), "BYPASS", "{form}");
        jar.take(&form);
        let token = csrf_token_in(&form.text()).expect("token in the login form");
        let r = self.post_form(
            "/accounts/login/",
            &mut jar,
            &[
                ("csrfmiddlewaretoken", &token),
                ("username", user),
                ("password", password),
                ("next", "/"),
            ],
        );
        assert_eq!(r.status, 302, "login failed: {r}");
        assert!(jar.get("sessionid").is_some(), "no session cookie: {r}");
        jar
    }
}

// ---------------------------------------------------------------------------
// Small HTTP and HTML helpers
// ---------------------------------------------------------------------------

/// Cookies set by the site.
#[derive(Default, Clone)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, r: &Response) {
        for c in r.headers_all("Set-Cookie") {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                let v = v.trim().trim_matches('"');
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.0.remove(k.trim());
                } else {
                    self.0.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn urlencode(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of attribute `name` in one tag's text.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The tags `<name ...>` in `html`, as their text.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    let mut out = vec![];
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let end = rest[i..].find('>').map(|e| i + e + 1).unwrap_or(rest.len());
        out.push(&rest[i..end]);
        rest = &rest[end..];
    }
    out
}

/// The value of the first `csrfmiddlewaretoken` field.
fn csrf_token_in(html: &str) -> Option<String> {
    tags(html, "input")
        .into_iter()
        .find(|t| attr(t, "name").as_deref() == Some("csrfmiddlewaretoken"))
        .and_then(|t| attr(t, "value"))
        .filter(|v| !v.is_empty())
}

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

/// Article URIs linked from a page, in order.
fn article_links(html: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for t in tags(html, "a") {
        let Some(href) = attr(t, "href") else {
            continue;
        };
        let Some(slug) = href
            .strip_prefix("/articles/")
            .and_then(|s| s.strip_suffix('/'))
        else {
            continue;
        };
        if !slug.is_empty() && !slug.contains('/') && slug != "feed" && !out.contains(&href) {
            out.push(href);
        }
    }
    out
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

/// The text of `<tag class="class">...</tag>` (first one).
fn text_of(html: &str, class: &str) -> String {
    let key = format!("class=\"{class}\">");
    let start = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {class} in page"))
        + key.len();
    let end = html[start..].find('<').unwrap() + start;
    unescape(&html[start..end])
}

fn comment_count(html: &str) -> usize {
    text_of(html, "comment-count").parse().unwrap()
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
    site.miss_then_hit(&category_of(&html));
    site.miss_then_hit("/about/");

    // the HIT is a file: conditional requests work, Django is not asked
    let etag = page.header("ETag").expect("ETag on a HIT").to_string();
    let not_modified = get_with(site.port(), &article, &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304, "{not_modified}");
    assert_eq!(site.django_saw(&article), 1);

    // a page that does not exist is not stored
    let missing = site.get("/articles/no-such-article/", &Jar::default());
    assert_eq!(missing.status, 404, "{missing}");
    assert_not_stored(
        &site.page("/articles/no-such-article/"),
        &site.nginx.path("generated"),
    );
    site.nginx.assert_no_alerts();
}

#[test]
fn logged_in_visitors_bypass_and_see_their_name() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
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

#[test]
fn saving_an_article_purges_its_pages_and_no_others() {
    let venv = venv_or_skip!();
    let site = Site::start(venv);
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
        log.contains(&format!("purge {{'uri': '{article}'}}: {{'status': 'ok'")),
        "{log}"
    );
    assert!(!log.contains("failed"), "{log}");

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
