//! `static_gen_purge`: allowed methods, the JSON reply, and no page generated
//! before a purge served after it.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{tmp}}/gen;
        location / {
            static_gen on;
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location = /_static_gen/purge {
            static_gen_purge;
        }
    }
"#;

fn versioned_upstream() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |req| {
        Plan::html(&format!(
            "{} v{}",
            req.path,
            n.fetch_add(1, Ordering::SeqCst)
        ))
    })
}

/// Generates the page for `uri` (MISS, waits for the file, then HIT).
fn generate(nginx: &NginxHandle, uri: &str, file: &str) -> Response {
    let miss = get(nginx.port(), uri);
    assert_eq!(miss.sg_status(), "MISS", "{miss}");
    assert!(wait_until(TIMEOUT, || nginx
        .path(format!("gen/{file}"))
        .exists()));
    let hit = get(nginx.port(), uri);
    assert_eq!(hit.sg_status(), "HIT", "{hit}");
    hit
}

fn pages(nginx: &NginxHandle) -> Vec<std::path::PathBuf> {
    list_files(&nginx.path("gen"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/.static_gen/"))
        .collect()
}

#[test]
fn purge_methods_reply_with_one_line_of_json() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    for verb in ["POST", "PURGE", "DELETE"] {
        generate(&nginx, "/", "index.html");
        generate(&nginx, "/articles/hello/", "articles/hello/index.html");
        let r = method(nginx.port(), verb, "/_static_gen/purge");
        assert_eq!(r.status, 200, "{verb}: {r}");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let body = r.text();
        assert_eq!(body.lines().count(), 1, "{body}");
        assert!(
            body == "{\"status\":\"ok\",\"scope\":\"all\",\"mode\":\"hard\",\"removal\":\"background\"}\n",
            "{body}"
        );
        assert_eq!(get(nginx.port(), "/").sg_status(), "MISS");
        assert_eq!(get(nginx.port(), "/articles/hello/").sg_status(), "MISS");
        assert!(wait_until(TIMEOUT, || nginx
            .path("gen/articles/hello/index.html")
            .exists()));
        method(nginx.port(), verb, "/_static_gen/purge");
        // the stale pages are deleted in the background
        assert!(
            wait_until(TIMEOUT, || pages(&nginx).is_empty()),
            "{verb}: {:?}",
            pages(&nginx)
        );
    }
}

#[test]
fn other_methods_get_405_with_allow() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    generate(&nginx, "/about", "about.html");
    for verb in ["GET", "HEAD", "PUT", "OPTIONS"] {
        let r = method(nginx.port(), verb, "/_static_gen/purge");
        assert_eq!(r.status, 405, "{verb}: {r}");
        assert_eq!(
            r.header("Allow"),
            Some("POST, PURGE, DELETE"),
            "{verb}: {r}"
        );
    }
    assert_eq!(
        get(nginx.port(), "/about").sg_status(),
        "HIT",
        "nothing was purged"
    );
}

#[test]
fn no_page_from_before_the_purge_is_served_after_it() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).workers(2).start();
    let uris = [
        ("/", "index.html"),
        ("/a/", "a/index.html"),
        ("/a/b", "a/b.html"),
        ("/c", "c.html"),
    ];
    let before: Vec<Response> = uris
        .iter()
        .map(|(uri, file)| generate(&nginx, uri, file))
        .collect();
    let purge = post(nginx.port(), "/_static_gen/purge", b"");
    assert_eq!(purge.status, 200, "{purge}");
    for ((uri, _), old) in uris.iter().zip(&before) {
        let after = get(nginx.port(), uri);
        assert_eq!(after.sg_status(), "MISS", "{uri}");
        assert_ne!(after.body, old.body, "{uri} served from before the purge");
    }
}

#[test]
fn a_page_stored_right_after_a_whole_purge_is_served() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    // each round stores within a clock tick of its purge, most of the time:
    // where file times are coarse (kernels before 6.13's multigrain times,
    // such as bookworm's 6.1) the page's time is then no later than the
    // epoch unless the module stamps it (the unit test
    // `a_page_fetched_right_after_a_whole_purge_is_fresh` shows it anywhere)
    for round in 0..20 {
        let purge = post(nginx.port(), "/_static_gen/purge", b"");
        assert_eq!(purge.status, 200, "{purge}");
        let stored = get(nginx.port(), "/a/");
        assert_eq!(stored.sg_status(), "MISS", "round {round}");
        let served = get(nginx.port(), "/a/");
        assert_eq!(
            served.sg_status(),
            "HIT",
            "round {round}: the page stored after the purge was taken for stale"
        );
        assert_eq!(served.body, stored.body, "round {round}");
    }
}

#[test]
fn purged_tree_is_deleted_in_the_background() {
    let up = versioned_upstream();
    let setup = Nginx::new(CONF).var("up", up.port());
    // a tree much bigger than a page or two
    for d in 0..20 {
        for f in 0..100 {
            setup_page(setup.tmp(), &format!("gen/d{d}/p{f}.html"));
        }
    }
    let nginx = setup.start();
    let r = post(nginx.port(), "/_static_gen/purge", b"");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.text(),
        "{\"status\":\"ok\",\"scope\":\"all\",\"mode\":\"hard\",\"removal\":\"background\"}\n"
    );
    // the old pages are never served again, and deleted in the background
    assert_eq!(get(nginx.port(), "/d2/p2").sg_status(), "MISS");
    assert!(
        wait_until(TIMEOUT, || pages(&nginx).len() <= 1),
        "{:?}",
        pages(&nginx).len()
    );
    assert!(get(nginx.port(), "/d1/p1").sg_status() == "MISS");
    nginx.assert_no_alerts();
}

fn setup_page(tmp: &std::path::Path, rel: &str) {
    let path = tmp.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        "static_gen 1\ncontent-type: text/html\nuri: /x\n\nold",
    )
    .unwrap();
}

#[test]
fn purge_of_an_empty_or_missing_tree_is_fine() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    let r = post(nginx.port(), "/_static_gen/purge", b"");
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.text().starts_with("{\"status\":\"ok\",\"scope\":\"all\""),
        "{r}"
    );
}

/// Conditional and range headers do not apply to a purge: it always
/// answers its JSON (nginx's not-modified filter answered `If-None-Match: *`
/// with an empty 304, and `If-Match` with 412).
#[test]
fn conditional_headers_do_not_change_the_reply() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    for header in CONDITIONAL_HEADERS {
        let raw = build_request("POST", "/_static_gen/purge", &[*header], b"");
        let r = request(nginx.port(), &raw);
        assert_eq!(r.status, 200, "{header:?}: {r}");
        assert!(
            r.text().starts_with("{\"status\":\"ok\",\"scope\":\"all\""),
            "{header:?}: {r}"
        );
    }
}

/// A purge that fails says why in its reply (the OS error), not only in
/// the error log: here the worker user cannot create the tree.
#[test]
fn a_failed_purge_answers_with_its_reason() {
    if !is_root() {
        eprintln!("skipped: needs root (the user directive)");
        return;
    }
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF)
        .var("up", up.port())
        .user("nobody nogroup")
        .start();
    let r = post(nginx.port(), "/_static_gen/purge", b"");
    assert_eq!(r.status, 500, "{r}");
    assert_eq!(
        r.text(),
        "{\"status\":\"error\",\"error\":\"permission denied\"}\n",
        "{r}"
    );
    assert!(
        nginx.error_log().contains("static_gen: purge failed"),
        "{}",
        nginx.error_log()
    );
}
