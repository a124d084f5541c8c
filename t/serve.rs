//! Lookup and HIT serving: headers of a HIT, conditional requests, HEAD,
//! methods that always reach the upstream, session cookies, patterns and
//! query strings, and `$static_gen_status`.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        location / {
            static_gen on;
            static_gen_root {{tmp}}/gen;
            static_gen_pattern ^/$ ^/(articles|about);
            static_gen_exclude \.xml$;
            static_gen_exclude ^/articles/search;
            static_gen_session_cookie sessionid wordpress_logged_in_*;
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /off/ {
            add_header X-Static-Gen "[$static_gen_status]" always;
            proxy_pass http://127.0.0.1:{{up}};
        }
    }
"#;

/// An upstream whose every answer is unique: "<method> <path> #<n>".
fn counting_upstream() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |req| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let body = format!("{} {} #{i}", req.method, req.path);
        Plan::html(&body)
    })
}

fn start(up: &Upstream) -> NginxHandle {
    Nginx::new(CONF).var("up", up.port()).start()
}

/// GETs `path` twice; returns both responses after checking MISS then HIT.
/// The page is installed just after the last byte went to the client, so
/// the second request waits for the file.
fn miss_then_hit(nginx: &NginxHandle, path: &str) -> (Response, Response) {
    let port = nginx.port();
    let first = get(port, path);
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.sg_status(), "MISS", "{first}");
    assert!(
        wait_until(TIMEOUT, || nginx.page(path).exists()),
        "{path} not stored"
    );
    let second = get(port, path);
    assert_eq!(second.status, 200, "{second}");
    assert_eq!(second.sg_status(), "HIT", "{second}");
    (first, second)
}

#[test]
fn hit_answers_from_the_file_with_static_headers() {
    let up = counting_upstream();
    let nginx = start(&up);
    let (first, hit) = miss_then_hit(&nginx, "/articles/hello/");
    assert_eq!(hit.body, first.body, "a HIT returns the stored body");
    assert_eq!(
        up.hits("/articles/hello/"),
        1,
        "a HIT never reaches the upstream"
    );
    assert_eq!(hit.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        hit.header("Content-Length"),
        Some(first.body.len().to_string().as_str())
    );
    assert!(hit.has_header("Last-Modified"), "{hit}");
    assert!(
        hit.header("ETag").is_some_and(|e| e.starts_with('"')),
        "{hit}"
    );
    nginx.assert_no_alerts();
}

#[test]
fn conditional_requests_get_304() {
    let up = counting_upstream();
    let nginx = start(&up);
    let (_, hit) = miss_then_hit(&nginx, "/about");
    let etag = hit.header("ETag").unwrap();
    let by_etag = get_with(nginx.port(), "/about", &[("If-None-Match", etag)]);
    assert_eq!(by_etag.status, 304, "{by_etag}");
    assert!(by_etag.body.is_empty());
    let modified = hit.header("Last-Modified").unwrap();
    let by_date = get_with(nginx.port(), "/about", &[("If-Modified-Since", modified)]);
    assert_eq!(by_date.status, 304, "{by_date}");
    let stale = get_with(nginx.port(), "/about", &[("If-None-Match", "\"other\"")]);
    assert_eq!(stale.status, 200, "{stale}");
    assert_eq!(stale.body, hit.body);
    assert_eq!(up.hits("/about"), 1);
}

#[test]
fn head_is_answered_from_the_file_without_body() {
    let up = counting_upstream();
    let nginx = start(&up);
    let (first, _) = miss_then_hit(&nginx, "/about");
    let head = head(nginx.port(), "/about");
    assert_eq!(head.status, 200, "{head}");
    assert_eq!(head.sg_status(), "HIT");
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("Content-Length"),
        Some(first.body.len().to_string().as_str())
    );
    assert_eq!(up.hits("/about"), 1);
}

#[test]
fn head_miss_is_not_stored() {
    let up = counting_upstream();
    let nginx = start(&up);
    let head = head(nginx.port(), "/articles/x/");
    assert_eq!(head.sg_status(), "MISS", "{head}");
    assert!(!nginx.page("/articles/x/").exists());
    assert_eq!(get(nginx.port(), "/articles/x/").sg_status(), "MISS");
}

#[test]
fn other_methods_always_reach_the_upstream() {
    let up = counting_upstream();
    let nginx = start(&up);
    miss_then_hit(&nginx, "/articles/hello/");
    let posted = post(nginx.port(), "/articles/hello/", b"comment=hi");
    assert_eq!(posted.status, 200, "{posted}");
    assert_eq!(posted.sg_status(), "BYPASS");
    assert!(
        posted.text().starts_with("POST /articles/hello/"),
        "{posted}"
    );
    for verb in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = method(nginx.port(), verb, "/articles/hello/");
        assert!(
            r.text().starts_with(&format!("{verb} /articles/hello/")),
            "{r}"
        );
        assert_eq!(r.sg_status(), "BYPASS");
    }
    // and the page stays as it was
    let again = get(nginx.port(), "/articles/hello/");
    assert_eq!(again.sg_status(), "HIT");
    assert!(
        again.text().starts_with("GET /articles/hello/ #0"),
        "{again}"
    );
}

#[test]
fn session_cookie_is_neither_served_nor_stored() {
    let up = counting_upstream();
    let nginx = start(&up);
    let port = nginx.port();
    miss_then_hit(&nginx, "/about");

    for cookie in [
        "sessionid=abc",
        "csrftoken=1; sessionid=abc",
        "wordpress_logged_in_12ab=x",
    ] {
        let logged_in = get_with(port, "/about", &[("Cookie", cookie)]);
        assert_eq!(logged_in.sg_status(), "BYPASS", "{cookie}: {logged_in}");
        assert!(logged_in.text().starts_with("GET /about #"), "{logged_in}");
        assert_ne!(
            logged_in.text(),
            "GET /about #0",
            "logged-in visitors get a fresh page"
        );
    }

    // a logged-in MISS is not stored
    let private = get_with(port, "/articles/mine/", &[("Cookie", "sessionid=abc")]);
    assert_eq!(private.sg_status(), "BYPASS");
    assert!(!nginx.page("/articles/mine/").exists());
    assert_eq!(get(port, "/articles/mine/").sg_status(), "MISS");
}

#[test]
fn authenticated_requests_bypass() {
    let up = counting_upstream();
    let nginx = start(&up);
    miss_then_hit(&nginx, "/about");
    let auth = [("Authorization", "Basic dXNlcjpwYXNz")];
    let r = get_with(nginx.port(), "/about", &auth);
    assert_eq!(r.sg_status(), "BYPASS", "{r}");
    assert_eq!(
        r.text(),
        "GET /about #1",
        "an authenticated visitor gets a fresh page"
    );
    let private = get_with(nginx.port(), "/articles/private/", &auth);
    assert_eq!(private.sg_status(), "BYPASS");
    assert!(!nginx.page("/articles/private/").exists());
}

#[test]
fn other_cookies_do_not_count() {
    let up = counting_upstream();
    let nginx = start(&up);
    let port = nginx.port();
    let first = get_with(port, "/about", &[("Cookie", "csrftoken=abc; _ga=GA1.2.3")]);
    assert_eq!(first.sg_status(), "MISS", "{first}");
    assert!(wait_until(TIMEOUT, || nginx.page("/about").exists()));
    let second = get_with(
        port,
        "/about",
        &[("Cookie", "csrftoken=abc"), ("Cookie", "theme=dark")],
    );
    assert_eq!(second.sg_status(), "HIT", "{second}");
    assert_eq!(second.body, first.body);
}

#[test]
fn patterns_excludes_and_query_strings_bypass() {
    let up = counting_upstream();
    let nginx = start(&up);
    let port = nginx.port();
    for path in [
        "/contact/",
        "/articles/feed.xml",
        "/articles/search/",
        "/about?x=1",
    ] {
        for _ in 0..2 {
            let r = get(port, path);
            assert_eq!(r.status, 200, "{path}: {r}");
            assert_eq!(r.sg_status(), "BYPASS", "{path}: {r}");
        }
    }
    assert_eq!(up.hits("/contact/"), 2);
    assert!(!nginx.path("gen/contact/index.html").exists());
    assert!(!nginx.path("gen/articles/feed.xml.html").exists());
    assert!(!nginx.path("gen/articles/search/index.html").exists());
    assert!(!nginx.path("gen/about.html").exists());
}

#[test]
fn status_variable_is_empty_where_the_module_is_off() {
    let up = counting_upstream();
    let nginx = start(&up);
    let r = get(nginx.port(), "/off/page");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("X-Static-Gen"), Some("[]"));
    assert!(!nginx.path("gen/off").exists());
}

#[test]
fn a_file_not_written_by_the_module_is_neither_served_nor_replaced() {
    let up = counting_upstream();
    let setup = Nginx::new(CONF).var("up", up.port());
    std::fs::create_dir_all(setup.tmp().join("gen")).unwrap();
    std::fs::write(setup.tmp().join("gen/about.html"), b"<p>hand-written</p>").unwrap();
    let nginx = setup.start();
    for _ in 0..2 {
        let r = get(nginx.port(), "/about");
        assert_eq!(r.sg_status(), "BYPASS", "{r}");
        assert!(r.text().starts_with("GET /about #"), "{r}");
    }
    assert_eq!(
        std::fs::read(nginx.path("gen/about.html")).unwrap(),
        b"<p>hand-written</p>"
    );
}
