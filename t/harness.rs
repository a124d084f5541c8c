//! Self-test of the test harness (`t/common`), without the module: the HTTP
//! client against the scripted upstream, and plain nginx (same binary the
//! module tests use) started, reloaded, tested and stopped by the harness.
mod common;

use common::*;
use std::time::Duration;

#[test]
fn client_against_upstream() {
    let up = Upstream::start(|req| match req.path_only() {
        "/plain" => Plan::response(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
            ],
            b"plain body",
        ),
        "/chunked" => Plan::chunked(200, &[("X-Kind", "chunked")], &[b"hel", b"lo ", b"world"]),
        "/slow" => Plan::chunked_slow(200, &[], &[b"a", b"b", b"c"], Duration::from_millis(50)),
        "/truncated" => Plan::truncated(200, &[], b"only part", 100),
        "/close-delimited" => Plan::new().write("HTTP/1.0 200 OK\r\n\r\nuntil close"),
        "/304" => Plan::response(304, &[("ETag", "\"x\"")], b""),
        "/echo" => Plan::response(200, &[], &req.body),
        _ => Plan::response(404, &[], b"nope"),
    });
    let port = up.port();

    let r = get(port, "/plain");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "plain body");
    assert!(r.complete && !r.chunked);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.headers_all("SET-COOKIE"), vec!["a=1", "b=2"]);

    let r = get(port, "/chunked");
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    assert!(r.chunked && r.complete);
    assert_eq!(r.header("X-Kind"), Some("chunked"));

    let r = get(port, "/slow");
    assert_eq!(r.text(), "abc");
    assert!(r.complete);

    let r = get(port, "/truncated");
    assert_eq!(r.text(), "only part");
    assert!(!r.complete, "a short Content-Length body is incomplete");

    let r = get(port, "/close-delimited");
    assert_eq!(
        (r.version.as_str(), r.text().as_str()),
        ("HTTP/1.0", "until close")
    );

    let r = head(port, "/plain");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("Content-Length"), Some("10"));

    let r = get(port, "/304");
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty() && r.complete);

    let r = post(port, "/echo", b"form=data");
    assert_eq!(r.text(), "form=data");
    let chunked_post =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(request(port, chunked_post).text(), "abc");

    let r = method(port, "PURGE", "/x?y=1");
    assert_eq!(r.status, 404);

    // Early close: read only the head and drop the connection.
    let (mut conn, r) = open_and_read_head(port, &build_request("GET", "/slow", &[], b""));
    assert_eq!(r.status, 200);
    assert_eq!(conn.read_bytes(3).unwrap(), b"1\r\n");
    drop(conn);

    assert_eq!(up.hits("/plain"), 2);
    assert_eq!(up.hits("/x?y=1"), 1);
    let reqs = up.requests();
    let purge = reqs.iter().find(|r| r.method == "PURGE").unwrap();
    assert_eq!(purge.path_only(), "/x");
    assert_eq!(purge.header("host"), Some("localhost"));
    let echo = reqs.iter().find(|r| r.path == "/echo").unwrap();
    assert_eq!(echo.body, b"form=data");
    up.clear();
    assert_eq!(up.hit_count(), 0);
}

#[test]
fn keep_alive_connection() {
    let up = Upstream::start(|req| Plan::response(200, &[], req.path.as_bytes()).keep_alive());
    let mut c = Conn::open(up.port()).unwrap();
    c.send(&build_request(
        "GET",
        "/one",
        &[("Connection", "keep-alive")],
        b"",
    ))
    .unwrap();
    assert_eq!(c.read_response("GET").unwrap().text(), "/one");
    c.send(&build_request(
        "GET",
        "/two",
        &[("Connection", "keep-alive")],
        b"",
    ))
    .unwrap();
    assert_eq!(c.read_response("GET").unwrap().text(), "/two");
    assert_eq!(up.connection_count(), 1);
}

const PLAIN: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{port2}};
            add_header X-Front yes always;
        }
        location /up/ {
            proxy_pass http://{{upstream}};
        }
        location /files/ {
            root {{tmp}}/www;
        }
    }
    server {
        listen 127.0.0.1:{{port2}};
        location / {
            default_type "text/html; charset=utf-8";
            return 200 "{{greeting}}";
        }
    }
"#;

#[test]
fn plain_nginx() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/up/cut" => Plan::truncated(200, &[], b"12345", 50),
        _ => Plan::html(&format!("{} {}", req.method, req.path)),
    });
    let builder = Nginx::new(PLAIN)
        .without_module()
        .workers(2)
        .var("upstream", up.addr())
        .var("greeting", "hello");
    std::fs::create_dir_all(builder.tmp().join("www/files")).unwrap();
    std::fs::write(builder.tmp().join("www/files/a.html"), "static").unwrap();
    let mut nginx = builder.start();
    let port = nginx.port();
    assert_eq!(nginx.worker_pids().len(), 2);

    let r = get(port, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{r}");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("x-front"), Some("yes"));

    let r = get(port, "/up/a%2e%2e/b?q=1");
    assert_eq!(r.text(), "GET /up/a%2e%2e/b?q=1");
    let r = method(port, "PURGE", "/up/p");
    assert_eq!(r.text(), "PURGE /up/p");
    let r = request(port, b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(up.hits("/up/p"), 1);

    // Upstream cut short: nginx sends the head, then closes early.
    let r = get(port, "/up/cut");
    assert_eq!(r.status, 200);
    assert!(!r.complete, "{r}");

    let r = get(port, "/files/a.html");
    assert_eq!(r.text(), "static");
    let lm = r.header("Last-Modified").unwrap().to_string();
    let r = get_with(port, "/files/a.html", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    let r = head(port, "/files/a.html");
    assert_eq!((r.status, r.body.len()), (200, 0));

    nginx
        .reload_with(&PLAIN.replace("{{greeting}}", "reloaded"))
        .unwrap();
    assert_eq!(get(port, "/").text(), "reloaded");
    assert!(nginx.access_log().contains("GET /files/a.html"));
    nginx.assert_no_alerts();
    let err = nginx.reload_with("bogus_directive on;").unwrap_err();
    assert!(err.contains("bogus_directive"), "{err}");
    assert_eq!(get(port, "/").text(), "reloaded", "old config still serves");
    nginx.reload().unwrap();
    assert_eq!(get(port, "/").text(), "reloaded");

    let tmp = nginx.tmp().to_path_buf();
    let pid = nginx.pid();
    drop(nginx);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    if std::env::var_os("STATIC_GEN_KEEP").is_none() {
        assert!(!tmp.exists(), "temp dir removed on drop");
    }
}

#[test]
fn config_test_reports_the_directive() {
    let (ok, out) =
        Nginx::new("server { listen 127.0.0.1:{{port}}; location / { proxy_buffering maybe; } }")
            .without_module()
            .config_test();
    assert!(!ok);
    assert!(out.contains("proxy_buffering"), "{out}");
    let (ok, out) = Nginx::new("server { listen 127.0.0.1:{{port}}; }")
        .without_module()
        .config_test();
    assert!(ok, "{out}");
    assert!(out.contains("test is successful"), "{out}");
}

#[test]
fn start_failure_shows_the_log() {
    let err = Nginx::new("server { listen 127.0.0.1:{{port}}; unknown_thing; }")
        .without_module()
        .try_start()
        .err()
        .expect("must fail");
    assert!(err.contains("unknown_thing"), "{err}");
}
