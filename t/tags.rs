//! Purge by tag: `X-Static-Gen-Tags` on the upstream's responses, kept with
//! the page and never shown to clients; `?tag=` purges every page carrying
//! one of the tags, with the promises of `?uri=` (race-free, every worker,
//! across restarts, soft or hard), and nothing but pages can be touched.
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{gen}};
        location / {
            static_gen on;
            {{extra}}
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
            proxy_buffering off;
            # the response header with 16 KB of tags must fit
            proxy_buffer_size 32k;
            proxy_buffers 4 32k;
        }
        location = /_static_gen/purge {
            static_gen_purge;
        }
    }
"#;

const TAGS: &str = "X-Static-Gen-Tags";

/// The tag headers of each test page.
fn tag_headers(path: &str) -> Vec<String> {
    let big = || {
        (0..130)
            .map(|i| format!("{}{i:03}", "t".repeat(125)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match path {
        "/one/" => vec!["article-1 home".into()],
        "/two/" => vec!["article-2, home".into()],
        "/three/" => vec!["article-3".into(), "category-1,x".into()],
        "/slow/" | "/slow/other/" => vec!["article-9".into()],
        "/big/" => vec![big()],
        "/long/" => vec![format!("ok {}", "x".repeat(129))],
        "/latin/" => vec!["caf\u{e9}".into()],
        _ => vec![],
    }
}

/// Answers every page with its path and a version, and its tags; `/slow/`
/// in two halves 600 ms apart; 500 while `failing`.
struct App {
    up: Upstream,
    failing: Arc<AtomicBool>,
}

fn app() -> App {
    let n = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let fail = failing.clone();
    let up = Upstream::start(move |req| {
        let path = req.path_only().to_string();
        let body = format!("{path} v{}", n.fetch_add(1, Ordering::SeqCst));
        if fail.load(Ordering::SeqCst) {
            return Plan::response(500, &[("Content-Type", "text/html")], b"down");
        }
        let tags = tag_headers(&path);
        let mut headers = vec![("Content-Type", "text/html")];
        headers.extend(tags.iter().map(|t| (TAGS, t.as_str())));
        if path.starts_with("/slow/") {
            let (a, b) = body.split_at(body.len() / 2);
            Plan::chunked_slow(
                200,
                &headers,
                &[a.as_bytes(), b.as_bytes()],
                Duration::from_millis(600),
            )
        } else {
            Plan::response(200, &headers, body.as_bytes())
        }
    });
    App { up, failing }
}

fn nginx(app: &App, gen: &TempDir, extra: &str) -> Nginx {
    Nginx::new(CONF)
        .var("up", app.up.port())
        .var("gen", gen.path().display())
        .var("extra", extra)
}

/// MISS, wait for the page, HIT; returns the HIT body.
fn generate(nginx: &NginxHandle, uri: &str) -> String {
    let miss = get(nginx.port(), uri);
    assert_eq!(miss.sg_status(), "MISS", "{uri}: {miss}");
    assert!(!miss.has_header(TAGS), "{miss}");
    assert!(
        wait_until(TIMEOUT, || page_of(nginx, uri).exists()),
        "{uri} not stored"
    );
    let hit = get(nginx.port(), uri);
    assert_eq!(hit.sg_status(), "HIT", "{uri}: {hit}");
    assert!(!hit.has_header(TAGS), "{hit}");
    hit.text()
}

fn page_of(nginx: &NginxHandle, uri: &str) -> std::path::PathBuf {
    let conf = nginx.conf();
    let root = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("static_gen_root "))
        .expect("root")
        .trim_end_matches(';');
    std::path::Path::new(root).join(page_rel(uri))
}

fn purge(nginx: &NginxHandle, args: &str) -> Response {
    let r = post(nginx.port(), &format!("/_static_gen/purge{args}"), b"");
    assert_eq!(r.text().lines().count(), 1, "{r}");
    r
}

const SITE: &[&str] = &["/one/", "/two/", "/three/", "/none/"];

/// Asserts which of SITE were purged (MISS, new content) and which not
/// (HIT, same content); returns the new contents.
fn check_purged(nginx: &NginxHandle, old: &[String], purged: &[&str]) -> Vec<String> {
    let mut now = Vec::new();
    for (uri, old) in SITE.iter().zip(old) {
        if purged.contains(uri) {
            now.push(generate(nginx, uri));
            assert_ne!(now.last().unwrap(), old, "{uri}");
        } else {
            let r = get(nginx.port(), uri);
            assert_eq!(r.sg_status(), "HIT", "{uri} was not purged: {r}");
            assert_eq!(&r.text(), old);
            now.push(r.text());
        }
    }
    now
}

#[test]
fn tag_purge_removes_exactly_the_tagged_pages() {
    let app = app();
    let gen = TempDir::new("");
    let nginx = nginx(&app, &gen, "").start();
    let old: Vec<String> = SITE.iter().map(|uri| generate(&nginx, uri)).collect();
    assert!(
        std::fs::read_to_string(page_of(&nginx, "/three/"))
            .unwrap()
            .contains("\ntags: article-3 category-1 x\n"),
        "tags kept in the page header"
    );
    let r = purge(&nginx, "?tag=article-1");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.text().trim(),
        r#"{"status":"ok","scope":"tag","mode":"hard","tags":["article-1"],"removal":"background"}"#
    );
    let old = check_purged(&nginx, &old, &["/one/"]);
    // several tags per purge, both ways
    let old = check_purged(&nginx, &old, &[]);
    let r = purge(&nginx, "?tag=home&tag=nothing");
    assert!(r.text().contains(r#""tags":["home","nothing"]"#), "{r}");
    let old = check_purged(&nginx, &old, &["/one/", "/two/"]);
    let r = purge(&nginx, "?tag=category-1,article-2");
    assert!(
        r.text().contains(r#""tags":["category-1","article-2"]"#),
        "{r}"
    );
    let old = check_purged(&nginx, &old, &["/two/", "/three/"]);
    // a tag of the second header
    purge(&nginx, "?tag=x");
    check_purged(&nginx, &old, &["/three/"]);
    nginx.assert_no_alerts();
}

#[test]
fn the_header_is_never_sent_to_clients() {
    let app = app();
    let gen = TempDir::new("");
    let nginx = nginx(&app, &gen, "").start();
    generate(&nginx, "/three/");
    let bypass = get(nginx.port(), "/three/?q=1");
    assert_eq!(bypass.sg_status(), "BYPASS", "{bypass}");
    assert!(!bypass.has_header(TAGS), "{bypass}");
    let head = head(nginx.port(), "/one/");
    assert!(!head.has_header(TAGS), "{head}");
    // a response that is not stored: still without the header
    let big = get(nginx.port(), "/big/");
    assert!(!big.has_header(TAGS), "{big}");
}

#[test]
fn a_tag_purge_during_a_fetch_wins() {
    let app = app();
    let gen = TempDir::new("");
    let nginx = nginx(&app, &gen, "").start();
    let uri = "/slow/";
    let (mut conn, head) = open_and_read_head(nginx.port(), &build_request("GET", uri, &[], b""));
    assert_eq!(head.sg_status(), "MISS");
    assert!(!head.has_header(TAGS), "{head}");
    assert_eq!(purge(&nginx, "?tag=article-9").status, 200);
    let mut old = head;
    conn.read_body("GET", &mut old).unwrap();
    assert!(old.text().ends_with(" v0"), "{old}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !page_of(&nginx, uri).exists(),
        "a page fetched before the purge of its tag was installed"
    );
    let fresh = generate(&nginx, uri);
    assert!(fresh.ends_with(" v1"), "{fresh}");
    // a purge of another tag does not stop a fetch
    let (mut conn, head) = open_and_read_head(
        nginx.port(),
        &build_request("GET", "/slow/other/", &[], b""),
    );
    assert_eq!(purge(&nginx, "?tag=article-1").status, 200);
    let mut body = head;
    conn.read_body("GET", &mut body).unwrap();
    assert!(wait_until(TIMEOUT, || page_of(&nginx, "/slow/other/").exists()));
}

#[test]
fn a_tag_purge_is_seen_by_every_worker() {
    let app = app();
    let gen = TempDir::new("");
    let nginx = nginx(&app, &gen, "").workers(4).start();
    let old: Vec<String> = SITE.iter().map(|uri| generate(&nginx, uri)).collect();
    // every worker opens (and keeps) the pages
    for _ in 0..20 {
        for uri in SITE {
            assert_eq!(get(nginx.port(), uri).sg_status(), "HIT");
        }
    }
    assert_eq!(purge(&nginx, "?tag=home").status, 200);
    for _ in 0..5 {
        for (uri, old) in SITE.iter().zip(&old) {
            let r = get(nginx.port(), uri);
            if matches!(*uri, "/one/" | "/two/") {
                assert_ne!(&r.text(), old, "{uri} served from before the purge");
            } else {
                assert_eq!(&r.text(), old, "{uri}");
                assert_eq!(r.sg_status(), "HIT", "{uri}");
            }
        }
    }
}

#[test]
fn tags_survive_a_restart() {
    let app = app();
    let gen = TempDir::new("");
    let mut first = nginx(&app, &gen, "").start();
    let old: Vec<String> = SITE.iter().map(|uri| generate(&first, uri)).collect();
    first.stop();
    let second = nginx(&app, &gen, "").start();
    let old = check_purged(&second, &old, &[]);
    assert_eq!(purge(&second, "?tag=article-2").status, 200);
    check_purged(&second, &old, &["/two/"]);
}

#[test]
fn a_soft_tag_purge_serves_stale_then_fresh() {
    let app = app();
    let gen = TempDir::new("");
    let nginx = nginx(&app, &gen, "static_gen_stale 30s;").start();
    let old = generate(&nginx, "/one/");
    let r = purge(&nginx, "?tag=home");
    assert_eq!(
        r.text().trim(),
        r#"{"status":"ok","scope":"tag","mode":"soft","tags":["home"],"removal":"background"}"#
    );
    app.failing.store(true, Ordering::SeqCst);
    let stale = get(nginx.port(), "/one/");
    assert_eq!(stale.sg_status(), "STALE", "{stale}");
    assert_eq!(stale.text(), old);
    assert!(!stale.has_header(TAGS), "{stale}");
    app.failing.store(false, Ordering::SeqCst);
    let fresh = get(nginx.port(), "/one/");
    assert_ne!(fresh.text(), old, "{fresh}");
    assert!(wait_until(TIMEOUT, || get(nginx.port(), "/one/")
        .sg_status()
        == "HIT"));
    // a hard one: never stale
    let current = get(nginx.port(), "/one/");
    let r = purge(&nginx, "?tag=article-1&hard=1");
    assert!(r.text().contains(r#""mode":"hard""#), "{r}");
    let after = get(nginx.port(), "/one/");
    assert_ne!(after.sg_status(), "STALE", "{after}");
    assert_ne!(after.text(), current.text());
}

#[test]
fn oversized_and_malformed_tags_are_not_stored() {
    let app = app();
    let gen = TempDir::new("");
    let nginx = nginx(&app, &gen, "").log_level("info").start();
    for (uri, reason) in [
        ("/big/", "tags longer than 16384 bytes in all"),
        ("/long/", "tag longer than 128 bytes"),
        ("/latin/", "invalid byte 0xc3 in a tag"),
    ] {
        for _ in 0..2 {
            let r = get(nginx.port(), uri);
            assert_eq!(r.status, 200, "{r}");
            assert_eq!(r.sg_status(), "MISS", "{uri}: {r}");
            assert!(r.text().starts_with(uri), "{uri}: delivered: {r}");
            assert!(!r.has_header(TAGS), "{r}");
        }
        assert!(!page_of(&nginx, uri).exists(), "{uri} stored");
        let log = nginx.error_log();
        assert!(
            log.lines().any(|l| l.contains("[info]")
                && l.contains("page not stored: X-Static-Gen-Tags: ")
                && l.contains(reason)),
            "{uri}: {log}"
        );
    }
}

#[test]
fn hostile_tags_are_refused_and_touch_nothing() {
    let app = app();
    let gen = TempDir::new("");
    let outside = TempDir::new("outside");
    outside.write("index.html", "static_gen 1\ncontent-type: x\n\nmine");
    outside.write("x.html", "static_gen 1\ncontent-type: x\n\nmine");
    let nginx = nginx(&app, &gen, "").start();
    let old: Vec<String> = SITE.iter().map(|uri| generate(&nginx, uri)).collect();
    let long = format!("?tag={}", "a".repeat(200));
    let many = format!(
        "?tag={}",
        (0..300)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    for args in [
        "?tag=",
        "?tag=%00",
        "?tag=a%00b",
        "?tag=%ff",
        "?tag=a,,b",
        "?tag=a+b",
        "?tag=%0d%0aX:%20y",
        "?tag=a%zz",
        "?tag=home&uri=/one/",
        "?tag",
        long.as_str(),
        many.as_str(),
    ] {
        let r = purge(&nginx, args);
        assert_eq!(r.status, 400, "{args}: {r}");
        assert!(
            r.text().starts_with(r#"{"status":"error","error":""#),
            "{r}"
        );
    }
    // `../` is a tag like any other: no page carries it, nothing is touched
    for args in [
        "?tag=../",
        "?tag=%2e%2e%2f..%2f",
        "?tag=..%2f..%2f",
        "?tag=%2e%2e%2f%2e%2e%2findex.html",
        "?tag=/etc/passwd",
    ] {
        assert_eq!(purge(&nginx, args).status, 200, "{args}");
    }
    check_purged(&nginx, &old, &[]);
    assert_eq!(list_files(outside.path()).len(), 2);
    assert!(outside.join("index.html").exists());
    nginx.assert_no_alerts();
}
