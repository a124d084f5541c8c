//! Precise and race-free purges: `uri=` and `prefix=` scopes, a purge during
//! a fetch, several workers, and `open_file_cache`.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const CONF: &str = r#"
    {{extra}}
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{tmp}}/gen;
        location / {
            static_gen on;
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
            proxy_buffering off;
        }
        location = /_static_gen/purge {
            static_gen_purge;
        }
    }
"#;

/// Every answer names its path and a version; `/slow/...` pages are sent
/// in two halves 600 ms apart.
fn versioned_upstream() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |req| {
        let body = format!("{} v{}", req.path, n.fetch_add(1, Ordering::SeqCst));
        if req.path.starts_with("/slow/") {
            let (a, b) = body.split_at(body.len() / 2);
            Plan::chunked_slow(
                200,
                &[("Content-Type", "text/html")],
                &[a.as_bytes(), b.as_bytes()],
                Duration::from_millis(600),
            )
        } else {
            Plan::html(&body)
        }
    })
}

fn start(up: &Upstream, extra: &str, workers: usize) -> NginxHandle {
    Nginx::new(CONF)
        .var("up", up.port())
        .var("extra", extra)
        .workers(workers)
        .start()
}

/// MISS, wait for the page, HIT; returns the HIT body.
fn generate(nginx: &NginxHandle, uri: &str) -> String {
    let miss = get(nginx.port(), uri);
    assert_eq!(miss.sg_status(), "MISS", "{uri}: {miss}");
    assert!(
        wait_until(TIMEOUT, || nginx.page(uri).exists()),
        "{uri} not stored"
    );
    let hit = get(nginx.port(), uri);
    assert_eq!(hit.sg_status(), "HIT", "{uri}: {hit}");
    hit.text()
}

fn purge(nginx: &NginxHandle, args: &str) -> Response {
    let r = post(nginx.port(), &format!("/_static_gen/purge{args}"), b"");
    assert_eq!(r.text().lines().count(), 1, "{r}");
    r
}

const SITE: &[&str] = &[
    "/",
    "/articles/",
    "/articles/hello/",
    "/articles/hello",
    "/articles/world/",
    "/about",
];

#[test]
fn uri_scope_removes_one_page() {
    let up = versioned_upstream();
    let nginx = start(&up, "", 1);
    let before: Vec<String> = SITE.iter().map(|uri| generate(&nginx, uri)).collect();
    let r = purge(&nginx, "?uri=/articles/hello/");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.text().trim(),
        r#"{"status":"ok","scope":"uri","mode":"hard","uri":"/articles/hello/","removed":1}"#
    );
    for (uri, old) in SITE.iter().zip(&before) {
        let now = get(nginx.port(), uri);
        if *uri == "/articles/hello/" {
            assert_eq!(now.sg_status(), "MISS", "{uri}");
            assert_ne!(&now.text(), old);
        } else {
            assert_eq!(now.sg_status(), "HIT", "{uri} was not in scope");
            assert_eq!(&now.text(), old);
        }
    }
    let again = purge(&nginx, "?uri=%2Farticles%2Fgone%2F");
    assert!(again.text().contains("\"removed\":0"), "{again}");
}

#[test]
fn prefix_scope_removes_a_subtree() {
    let up = versioned_upstream();
    let nginx = start(&up, "", 1);
    for uri in SITE {
        generate(&nginx, uri);
    }
    let r = purge(&nginx, "?prefix=/articles/");
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.text().starts_with(
            r#"{"status":"ok","scope":"prefix","mode":"hard","prefix":"/articles/","moved":1,"#
        ),
        "{r}"
    );
    for uri in SITE {
        let expected = if uri.starts_with("/articles/") {
            "MISS"
        } else {
            "HIT"
        };
        assert_eq!(get(nginx.port(), uri).sg_status(), expected, "{uri}");
    }
}

#[test]
fn bad_scopes_are_refused() {
    let up = versioned_upstream();
    let nginx = start(&up, "", 1);
    generate(&nginx, "/about");
    for args in [
        "?uri=about",
        "?uri=/a/../b",
        "?prefix=x",
        "?page=/about",
        "?uri=/a&prefix=/b",
        "?uri=/index",
    ] {
        let r = purge(&nginx, args);
        assert_eq!(r.status, 400, "{args}: {r}");
        assert!(r.text().starts_with("{\"status\":\"error\""), "{r}");
    }
    assert_eq!(
        get(nginx.port(), "/about").sg_status(),
        "HIT",
        "nothing purged"
    );
}

/// Starts a slow MISS, purges while its body is on the way, and checks the
/// page fetched before the purge is not installed after it.
fn purge_during_fetch(args: &str) {
    let up = versioned_upstream();
    let nginx = start(&up, "", 1);
    let uri = "/slow/page/";
    let (mut conn, head) = open_and_read_head(nginx.port(), &build_request("GET", uri, &[], b""));
    assert_eq!(head.sg_status(), "MISS");
    let r = purge(&nginx, args);
    assert_eq!(r.status, 200, "{r}");
    let mut old = head;
    conn.read_body("GET", &mut old).unwrap();
    assert!(old.text().ends_with(" v0"), "{old}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !nginx.page(uri).exists(),
        "{args}: a page fetched before the purge was installed"
    );
    assert!(list_files(&nginx.path("gen/.static_gen/tmp")).is_empty());
    // the next request fetches and stores the new content
    let fresh = generate(&nginx, uri);
    assert!(fresh.ends_with(" v1"), "{fresh}");
}

#[test]
fn whole_purge_during_a_fetch_wins() {
    purge_during_fetch("");
}

#[test]
fn uri_purge_during_a_fetch_wins() {
    purge_during_fetch("?uri=/slow/page/");
}

#[test]
fn prefix_purge_during_a_fetch_wins() {
    purge_during_fetch("?prefix=/slow/");
}

#[test]
fn purge_of_another_page_during_a_fetch_does_not_stop_it() {
    let up = versioned_upstream();
    let nginx = start(&up, "", 1);
    let (mut conn, head) =
        open_and_read_head(nginx.port(), &build_request("GET", "/slow/kept/", &[], b""));
    assert_eq!(purge(&nginx, "?uri=/other/").status, 200);
    let mut body = head;
    conn.read_body("GET", &mut body).unwrap();
    assert!(wait_until(TIMEOUT, || nginx.page("/slow/kept/").exists()));
}

/// After a purge answered by one worker, no worker serves an old page,
/// even with `open_file_cache` holding the old descriptors.
fn purge_seen_by_every_worker(extra: &str) {
    let up = versioned_upstream();
    let nginx = start(&up, extra, 4);
    let uris: Vec<String> = (0..8).map(|i| format!("/w/{i}/")).collect();
    let old: Vec<String> = uris.iter().map(|uri| generate(&nginx, uri)).collect();
    // let every worker open (and cache) the pages
    for _ in 0..20 {
        for uri in &uris {
            assert_eq!(get(nginx.port(), uri).sg_status(), "HIT");
        }
    }
    assert_eq!(purge(&nginx, "").status, 200);
    for _ in 0..5 {
        for (uri, old) in uris.iter().zip(&old) {
            let r = get(nginx.port(), uri);
            assert_ne!(
                &r.text(),
                old,
                "{uri} served from before the purge ({})",
                r.sg_status()
            );
        }
    }
}

#[test]
fn purge_is_seen_by_every_worker() {
    purge_seen_by_every_worker("");
}

#[test]
fn purge_is_seen_through_open_file_cache() {
    purge_seen_by_every_worker("open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;");
}

/// `static_gen_purge_on_start`: nginx started again on a tree serves none
/// of its pages (they were rendered before it stopped, maybe before purges
/// it missed); a reload and `nginx -t` purge nothing; without the
/// directive a restart serves the kept pages.
#[test]
fn purge_on_start_empties_the_tree_when_nginx_starts_only() {
    let up = versioned_upstream();
    let shared = TempDir::new("purge-on-start");
    let root = shared.path().to_str().unwrap().to_string();
    let conf = CONF.replace("{{tmp}}/gen", "{{root}}");
    let start_with = |directive: &str| {
        Nginx::new(&conf)
            .var("up", up.port())
            .var("extra", directive)
            .var("root", &root)
            .workers(2)
            .start()
    };
    let generate = |nginx: &NginxHandle, uri: &str| {
        assert_eq!(get(nginx.port(), uri).sg_status(), "MISS");
        let page = shared.join(page_rel(uri));
        assert!(wait_until(TIMEOUT, || page.exists()), "{uri} not stored");
        let hit = get(nginx.port(), uri);
        assert_eq!(hit.sg_status(), "HIT", "{uri}: {hit}");
        hit.text()
    };
    let mut nginx = start_with("static_gen_purge_on_start on;");
    let first = generate(&nginx, "/a/");

    // a reload, and a configuration test, are no start
    nginx.reload().unwrap();
    let (ok, out) = Nginx::new(&conf)
        .var("up", up.port())
        .var("extra", "static_gen_purge_on_start on;")
        .var("root", &root)
        .config_test();
    assert!(ok, "{out}");
    let hit = get(nginx.port(), "/a/");
    assert_eq!((hit.sg_status(), hit.text()), ("HIT", first.clone()));
    nginx.stop();

    let mut nginx = start_with("static_gen_purge_on_start on;");
    let after = get(nginx.port(), "/a/");
    assert_eq!(after.sg_status(), "MISS", "{after}");
    assert_ne!(after.text(), first);
    assert!(
        nginx
            .error_log()
            .contains(&format!("purged every page of \"{root}\" at start (hard)")),
        "{}",
        nginx.error_log()
    );
    // the first worker deletes what the purge moved aside
    assert!(wait_until(TIMEOUT, || list_files(shared.path())
        .iter()
        .all(|f| !f.to_string_lossy().contains("trash"))));
    let second = generate(&nginx, "/b/");
    nginx.stop();

    let nginx = start_with("static_gen_purge_on_start off;");
    let kept = get(nginx.port(), "/b/");
    assert_eq!((kept.sg_status(), kept.text()), ("HIT", second));
}

/// A start purges the trees it can name: a root with variables is refused
/// at `nginx -t`, naming the directive.
#[test]
fn purge_on_start_refuses_a_root_with_variables() {
    let up = versioned_upstream();
    let conf = CONF.replace("{{tmp}}/gen", "{{tmp}}/gen/$host");
    let (ok, out) = Nginx::new(&conf)
        .var("up", up.port())
        .var("extra", "static_gen_purge_on_start on;")
        .config_test();
    assert!(!ok, "{out}");
    assert!(
        out.contains("\"static_gen_purge_on_start\" needs a root without variables"),
        "{out}"
    );
}
