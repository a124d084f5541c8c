//! The Django blog of `t/django/` (Django, SQLite, gunicorn on a unix
//! socket) behind nginx running `nginx-conf/django-gunicorn.conf`, as
//! `ci/demo` runs it: one [`Site`] per test, with a copy of a database
//! migrated and seeded once per test process. The venv comes from
//! `ci/django-env` (PyPI). Used by `t/e2e_django.rs` and `t/browser.rs`;
//! also small HTTP and HTML helpers for the blog's pages.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::*;
use crate::common::*;

/// `nginx-conf/django-gunicorn.conf` for a site of [`Site::start_with`]:
/// gunicorn's socket in its directory.
pub fn site_conf() -> ExampleConf {
    example("django-gunicorn.conf", "unix:{tmp}/gunicorn.sock")
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn django_dir() -> PathBuf {
    repo().join("t/django")
}

/// The venv (`venv()`), or the test returns at once, saying it is skipped.
#[allow(unused_macros)]
macro_rules! venv_or_skip {
    () => {
        match $crate::example_conf::django::venv() {
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
#[allow(unused_imports)]
pub(crate) use venv_or_skip;

/// The venv's directory, created (once per process) by `ci/django-env`;
/// None when that failed (no PyPI): the tests then print "skipped: ..."
/// and pass.
pub fn venv() -> Option<&'static Path> {
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

/// Panics with a clear message unless the module behind `port` purges by
/// tag (`?tag=`, issue 15): the demo blog's pages carry tags and its saves
/// purge by tag, so a test of its purges (or of the tag header) cannot pass
/// without it. Purges a tag no page carries.
pub fn require_purge_by_tag(port: u16) {
    let r = post(port, "/_static_gen/purge?tag=static-gen-test-probe", b"");
    assert!(
        r.status == 200 && r.text().contains(r#""scope":"tag""#),
        "this build of the module does not purge by tag (`?tag=`, issue 15), which \
         the test needs: {r}"
    );
}

/// `manage.py` in t/django with `env`; panics with its output on failure.
pub fn manage(venv: &Path, env: &[(&str, String)], args: &[&str]) -> String {
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
pub fn template_db(venv: &Path) -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(dir).unwrap();
        let db = dir.join("django-template.sqlite3");
        let building = dir.join(format!("django-template-{}.sqlite3", std::process::id()));
        let _ = fs::remove_file(&building);
        let env = [("BLOG_DB", building.display().to_string())];
        manage(venv, &env, &["migrate", "--verbosity", "0"]);
        manage(venv, &env, &["seed_blog"]);
        fs::rename(&building, &db).unwrap();
        db
    })
}

/// nginx (django-gunicorn.conf) in front of gunicorn and the blog.
pub struct Site {
    pub venv: &'static Path,
    // field order: nginx stops before gunicorn
    pub nginx: ConfRun,
    pub gunicorn: Service,
    /// Environment for Django beyond [`Site::env_of`] (settings.py reads it).
    pub extra_env: Vec<(&'static str, String)>,
}

impl Site {
    pub fn start(venv: &'static Path) -> Site {
        Site::start_with(venv, site_conf())
    }

    /// The site with `conf`: [`site_conf`] changed by the test.
    pub fn start_with(venv: &'static Path, conf: ExampleConf) -> Site {
        Site::start_with_env(venv, conf, &[])
    }

    /// The site with `conf` and more environment for Django (gunicorn and
    /// [`Site::shell`]), such as `BLOG_PURGE_BY=urls`.
    pub fn start_with_env(
        venv: &'static Path,
        conf: ExampleConf,
        extra_env: &[(&'static str, String)],
    ) -> Site {
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
            .envs(Site::env_of(&nginx))
            .envs(extra_env.iter().cloned());
        let mut gunicorn = Service::spawn("gunicorn", cmd, nginx.path("gunicorn.log"));
        let socket = nginx.path("gunicorn.sock");
        gunicorn.wait_ready(Duration::from_secs(20), || {
            UnixStream::connect(&socket).is_ok()
        });
        Site {
            venv,
            nginx,
            gunicorn,
            extra_env: extra_env.to_vec(),
        }
    }

    pub fn env_of(nginx: &ConfRun) -> Vec<(&'static str, String)> {
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

    pub fn port(&self) -> u16 {
        self.nginx.port()
    }

    /// [`require_purge_by_tag`] for this site's nginx.
    pub fn require_purge_by_tag(&self) {
        require_purge_by_tag(self.port());
    }

    /// `manage.py shell -c code` against this site's database and nginx.
    pub fn shell(&self, code: &str) -> String {
        let mut env = Site::env_of(&self.nginx);
        env.extend(self.extra_env.iter().cloned());
        manage(self.venv, &env, &["shell", "--verbosity", "0", "-c", code])
    }

    /// The generated file of `uri`.
    pub fn page(&self, uri: &str) -> PathBuf {
        self.nginx.path(format!("generated/{}", page_rel(uri)))
    }

    /// Requests gunicorn logged for exactly `path` (any method), once it
    /// logged everything sent before.
    pub fn django_saw(&self, path: &str) -> usize {
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

    pub fn get(&self, path: &str, jar: &Jar) -> Response {
        let cookie = jar.header();
        let mut headers = vec![];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        get_with(self.port(), path, &headers)
    }

    /// POSTs a form (application/x-www-form-urlencoded), keeping cookies.
    pub fn post_form(&self, path: &str, jar: &mut Jar, fields: &[(&str, &str)]) -> Response {
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
    pub fn miss_then_hit(&self, uri: &str) -> Response {
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
    pub fn hit(&self, uri: &str) -> Response {
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
    pub fn sync_log(&self) {
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
    pub fn log_in(&self, user: &str, password: &str) -> Jar {
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
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, r: &Response) {
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

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn urlencode(fields: &[(&str, &str)]) -> String {
    pub fn enc(s: &str) -> String {
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
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The tags `<name ...>` in `html`, as their text.
pub fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
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
pub fn csrf_token_in(html: &str) -> Option<String> {
    tags(html, "input")
        .into_iter()
        .find(|t| attr(t, "name").as_deref() == Some("csrfmiddlewaretoken"))
        .and_then(|t| attr(t, "value"))
        .filter(|v| !v.is_empty())
}

/// Article URIs linked from a page, in order.
pub fn article_links(html: &str) -> Vec<String> {
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

/// The text of `<tag class="class">...</tag>` (first one).
pub fn text_of(html: &str, class: &str) -> String {
    let key = format!("class=\"{class}\">");
    let start = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {class} in page"))
        + key.len();
    let end = html[start..].find('<').unwrap() + start;
    unescape(&html[start..end])
}

pub fn comment_count(html: &str) -> usize {
    text_of(html, "comment-count").parse().unwrap()
}
