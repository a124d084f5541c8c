//! Redirects and not-found pages (issue 21): `static_gen_valid code ...
//! time` stores the statuses it names; a stored redirect keeps its status
//! and `Location` exactly, a stored 404 is answered 404 with its body, and
//! the storing rules and purges apply to them as to 200 pages.
mod common;

use std::time::Duration;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{tmp}}/gen;
        location / {
            static_gen on;
            {{valid}}
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location = /_static_gen/purge {
            static_gen_purge;
        }
        location = /_static_gen/stats {
            static_gen_stats;
        }
    }
"#;

/// `/moved/...` answers 301 to `/new/?from=<path>`, `/found/` 302,
/// `/temporary/` 307, `/gone/` 410, `/private-missing/` a 404 that sets a
/// cookie, anything under `/missing/` 404 with a body; all numbered.
fn app() -> Upstream {
    let n = std::sync::atomic::AtomicUsize::new(0);
    Upstream::start(move |req| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let html = ("Content-Type", "text/html");
        let location = format!("/new/?from={}", req.path);
        let (status, extra): (u16, Vec<(&str, &str)>) = match req.path.as_str() {
            p if p.starts_with("/moved/") => (301, vec![("Location", location.as_str())]),
            "/found/" => (302, vec![("Location", "/elsewhere/")]),
            "/temporary/" => (307, vec![("Location", "/elsewhere/")]),
            "/gone/" => (410, vec![]),
            "/private-missing/" => (404, vec![("Set-Cookie", "seen=1")]),
            p if p.starts_with("/missing/") => (404, vec![]),
            _ => (200, vec![]),
        };
        let mut headers = vec![html];
        headers.extend(extra);
        let body = format!("{} status={status} render={n}", req.path);
        Plan::new().write(http_response(status, &headers, body.as_bytes()))
    })
}

fn start(up: &Upstream, valid: &str) -> NginxHandle {
    Nginx::new(CONF)
        .var("up", up.port())
        .var("valid", valid)
        .workers(2)
        .start()
}

const SHIPPED: &str = "static_gen_valid 200 1h; static_gen_valid 301 308 1d; \
                       static_gen_valid 404 410 1m;";

/// A MISS, then its page file, then a HIT with the same answer.
fn stored_then_hit(nginx: &NginxHandle, uri: &str) -> Response {
    let first = get(nginx.port(), uri);
    assert_eq!(first.sg_status(), "MISS", "{first}");
    stored_body(&nginx.page(uri));
    let again = get(nginx.port(), uri);
    assert_eq!(again.sg_status(), "HIT", "{again}");
    assert_eq!(again.status, first.status, "{again}");
    assert_eq!(again.body, first.body);
    again
}

#[test]
fn a_stored_redirect_keeps_its_status_and_location() {
    let up = app();
    let nginx = start(&up, SHIPPED);
    let miss = get(nginx.port(), "/moved/a/");
    assert_eq!(miss.status, 301, "{miss}");
    stored_body(&nginx.page("/moved/a/"));
    let hit = get(nginx.port(), "/moved/a/");
    assert_eq!(hit.sg_status(), "HIT", "{hit}");
    assert_eq!(hit.status, 301, "never replayed as 200: {hit}");
    let location = hit.header("Location").unwrap();
    assert_eq!(location, "/new/?from=/moved/a/", "{hit}");
    assert_eq!(
        miss.header("Location"),
        Some(location),
        "as the MISS sent it"
    );
    assert_eq!(hit.body, miss.body);
    assert!(!hit.has_header("ETag"), "{hit}");
    let head = head(nginx.port(), "/moved/a/");
    assert_eq!(head.status, 301, "{head}");
    assert_eq!(head.header("Location"), Some(location));
    assert!(head.body.is_empty());
    // conditional requests do not turn it into a 304
    let etag = get_with(nginx.port(), "/moved/a/", &[("If-None-Match", "*")]);
    assert_eq!(etag.status, 301, "{etag}");
    assert_eq!(up.hits("/moved/a/"), 1);
}

#[test]
fn a_stored_not_found_page_is_answered_404_with_its_body() {
    let up = app();
    let nginx = start(&up, SHIPPED);
    let hit = stored_then_hit(&nginx, "/missing/wp-login.php");
    assert_eq!(hit.status, 404, "{hit}");
    assert!(
        hit.text().starts_with("/missing/wp-login.php status=404"),
        "{hit}"
    );
    let gone = stored_then_hit(&nginx, "/gone/");
    assert_eq!(gone.status, 410, "{gone}");
    let ranged = get_with(
        nginx.port(),
        "/missing/wp-login.php",
        &[("Range", "bytes=0-3")],
    );
    assert_eq!(ranged.status, 404, "{ranged}");
    assert_eq!(ranged.body, hit.body);
}

#[test]
fn only_the_named_statuses_are_stored() {
    let up = app();
    // by default 200 only: nothing changes for existing configurations
    let nginx = start(&up, "");
    for uri in ["/moved/b/", "/missing/x", "/found/"] {
        get(nginx.port(), uri);
        let again = get(nginx.port(), uri);
        assert_eq!(again.sg_status(), "MISS", "{uri}: {again}");
    }
    stored_then_hit(&nginx, "/page/");
    // 302 and 307 only when named; a 404 that sets a cookie never
    let nginx = start(&up, SHIPPED);
    for uri in ["/found/", "/temporary/", "/private-missing/"] {
        get(nginx.port(), uri);
        let again = get(nginx.port(), uri);
        assert_eq!(again.sg_status(), "MISS", "{uri}: {again}");
    }
    let nginx = start(&up, "static_gen_valid 302 10m;");
    let found = stored_then_hit(&nginx, "/found/");
    assert_eq!(found.status, 302);
    stored_then_hit(&nginx, "/page/");
}

#[test]
fn stored_redirects_and_404s_expire_and_are_purged_as_pages() {
    let up = app();
    let nginx = start(&up, "static_gen_valid 404 1s; static_gen_valid 301 1h;");
    stored_then_hit(&nginx, "/missing/old");
    stored_then_hit(&nginx, "/moved/c/");
    // the 404 lives 1 s: only time passing can show it
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(nginx.port(), "/missing/old").sg_status(), "EXPIRED");
    assert_eq!(get(nginx.port(), "/moved/c/").sg_status(), "HIT");
    let r = post(nginx.port(), "/_static_gen/purge?uri=/moved/c/", b"");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(get(nginx.port(), "/moved/c/").sg_status(), "MISS");
}

#[test]
fn static_gen_valid_codes_are_checked_at_nginx_t() {
    for (valid, message) in [
        ("static_gen_valid 500 1m;", "status 500 cannot be stored"),
        ("static_gen_valid 304 1m;", "status 304 cannot be stored"),
        ("static_gen_valid 20x 1m;", "invalid status code \"20x\""),
        ("static_gen_valid 404 soon;", "invalid time \"soon\""),
    ] {
        let (ok, log) = Nginx::new(CONF)
            .var("up", 9)
            .var("valid", valid)
            .config_test();
        assert!(!ok, "{valid} passed nginx -t");
        assert!(log.contains("\"static_gen_valid\""), "{valid}: {log}");
        assert!(log.contains(message), "{valid}: {log}");
    }
    let (ok, log) = Nginx::new(CONF)
        .var("up", 9)
        .var("valid", "static_gen_valid 1w; static_gen_valid any 1m;")
        .config_test();
    assert!(ok, "{log}");
}

#[test]
fn hits_are_counted_by_the_status_of_their_page() {
    let up = app();
    let nginx = start(&up, SHIPPED);
    stored_then_hit(&nginx, "/page/");
    stored_then_hit(&nginx, "/moved/d/");
    stored_then_hit(&nginx, "/missing/e");
    get(nginx.port(), "/missing/e");
    // counted as each request is logged: wait for the last one
    let mut text = String::new();
    let counted = wait_until(TIMEOUT, || {
        text = get(nginx.port(), "/_static_gen/stats?format=json").text();
        text.contains("\"hits_by_status\":{\"2xx\":1,\"3xx\":1,\"4xx\":2}")
    });
    assert!(counted, "{text}");
}
