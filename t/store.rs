//! Storing: only complete, shareable responses are installed, atomically;
//! everything else passes through unstored and leaves no temporary file.
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        location / {
            static_gen on;
            static_gen_root {{tmp}}/gen;
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
            proxy_buffering {{buffering}};
            proxy_buffer_size 4k;
            proxy_buffers 4 4k;
            proxy_busy_buffers_size 8k;
            proxy_max_temp_file_size 1024m;
        }
        location /ignore/ {
            static_gen on;
            static_gen_root {{tmp}}/gen;
            proxy_pass http://127.0.0.1:{{up}};
            proxy_buffering {{buffering}};
            proxy_ignore_client_abort on;
        }
    }
"#;

fn start(up: &Upstream, buffering: &str) -> NginxHandle {
    Nginx::new(CONF)
        .var("up", up.port())
        .var("buffering", buffering)
        .start()
}

fn page_file(nginx: &NginxHandle, name: &str) -> PathBuf {
    nginx.path(format!("gen/{name}"))
}

fn assert_not_stored_under(nginx: &NginxHandle, path: &Path) {
    assert_not_stored(path, &nginx.path("gen"));
}

fn big_body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
        .collect()
}

#[test]
fn unshareable_responses_are_not_stored() {
    let up = Upstream::start(|req| {
        let html = ("Content-Type", "text/html");
        match req.path.as_str() {
            "/cookie" => Plan::response(200, &[html, ("Set-Cookie", "a=b")], b"c"),
            "/private" => {
                Plan::response(200, &[html, ("Cache-Control", "private, max-age=60")], b"p")
            }
            "/no-store" => Plan::response(200, &[html, ("Cache-Control", "no-store")], b"n"),
            "/no-cache" => Plan::response(200, &[html, ("Cache-Control", "no-cache")], b"n"),
            "/not-found" => Plan::response(404, &[html], b"nf"),
            "/redirect" => Plan::response(302, &[html, ("Location", "/x")], b""),
            "/error" => Plan::response(500, &[html], b"e"),
            "/json" => Plan::response(200, &[("Content-Type", "application/json")], b"{}"),
            "/gzip" => Plan::response(200, &[html, ("Content-Encoding", "gzip")], b"\x1f\x8b"),
            _ => Plan::html("ok"),
        }
    });
    let nginx = start(&up, "on");
    for name in [
        "cookie",
        "private",
        "no-store",
        "no-cache",
        "not-found",
        "redirect",
        "error",
        "json",
        "gzip",
    ] {
        let r = get(nginx.port(), &format!("/{name}"));
        assert_eq!(r.sg_status(), "MISS", "{name}: {r}");
        assert_not_stored_under(&nginx, &page_file(&nginx, &format!("{name}.html")));
        assert_eq!(
            get(nginx.port(), &format!("/{name}")).sg_status(),
            "MISS",
            "{name}"
        );
    }
    let public = get(nginx.port(), "/public");
    assert_eq!(public.sg_status(), "MISS");
    assert_eq!(stored_body(&page_file(&nginx, "public.html")), b"ok");
}

#[test]
fn stored_page_is_the_exact_body_buffered_or_not() {
    for buffering in ["on", "off"] {
        let body = big_body(300_000);
        let expected = body.clone();
        let up = Upstream::fixed(Plan::response(200, &[("Content-Type", "text/html")], &body));
        let nginx = start(&up, buffering);
        let r = get(nginx.port(), "/big");
        assert_eq!(r.body.len(), expected.len(), "buffering {buffering}");
        assert!(
            r.body == expected,
            "client body differs, buffering {buffering}"
        );
        assert!(
            stored_body(&page_file(&nginx, "big.html")) == expected,
            "buffering {buffering}"
        );
        let hit = get(nginx.port(), "/big");
        assert_eq!(hit.sg_status(), "HIT");
        assert!(hit.body == expected);
        assert_no_temp_files(&nginx.path("gen"));
    }
}

#[test]
fn large_response_spilled_to_proxy_temp_files_is_stored_whole() {
    // A slow client makes nginx spill the upstream body into its proxy temp
    // file: the filter then sees buffers that live in a file, not in memory.
    // (8 MB, just under static_gen_max_size's default: loopback socket
    // buffers grow to several MB and once took all of 4 MB without a spill.)
    let body = big_body(8_000_000);
    let expected = body.clone();
    let up = Upstream::fixed(Plan::response(200, &[("Content-Type", "text/html")], &body));
    let nginx = start(&up, "on");
    let mut conn = Conn::open(nginx.port()).unwrap();
    conn.send(&build_request("GET", "/spill", &[], b""))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let r = conn.read_response("GET").unwrap();
    assert!(r.body == expected, "client got {} bytes", r.body.len());
    assert!(stored_body(&page_file(&nginx, "spill.html")) == expected);
    assert!(
        nginx.error_log().contains("buffered to a temporary file"),
        "the response did not go through a proxy temp file:\n{}",
        nginx.error_log()
    );
}

#[test]
fn chunked_response_is_stored_when_it_ends() {
    let up = Upstream::fixed(Plan::chunked(
        200,
        &[("Content-Type", "text/html")],
        &[b"one ", b"two ", b"three"],
    ));
    let nginx = start(&up, "on");
    let r = get(nginx.port(), "/chunked");
    assert_eq!(r.text(), "one two three");
    assert_eq!(
        stored_body(&page_file(&nginx, "chunked.html")),
        b"one two three"
    );
}

#[test]
fn truncated_upstream_response_is_not_stored() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/short" => Plan::truncated(200, &[("Content-Type", "text/html")], b"only half", 1000),
        _ => Plan::new()
            .write(response_head(
                200,
                &[
                    ("Content-Type", "text/html"),
                    ("Transfer-Encoding", "chunked"),
                ],
            ))
            .write(chunk(b"never ends"))
            .sleep_ms(50)
            .close(),
    });
    for buffering in ["on", "off"] {
        let nginx = start(&up, buffering);
        for path in ["/short", "/cut-chunked"] {
            let r = get(nginx.port(), path);
            assert!(!r.complete || r.body.len() < 1000, "{path}: {r}");
            assert_not_stored_under(&nginx, &page_file(&nginx, &format!("{}.html", &path[1..])));
        }
    }
}

#[test]
fn page_appears_only_when_complete() {
    let up = Upstream::fixed(Plan::chunked_slow(
        200,
        &[("Content-Type", "text/html")],
        &[b"part one, ", b"part two, ", b"part three"],
        Duration::from_millis(300),
    ));
    let nginx = start(&up, "off");
    let file = page_file(&nginx, "slow.html");
    let (mut conn, head) =
        open_and_read_head(nginx.port(), &build_request("GET", "/slow", &[], b""));
    assert_eq!(head.sg_status(), "MISS");
    std::thread::sleep(Duration::from_millis(400));
    assert!(!file.exists(), "a partial page was visible");
    assert_eq!(
        temp_files(&nginx.path("gen")).len(),
        1,
        "the body is teed into one temporary file"
    );
    let mut rest = head;
    conn.read_body("GET", &mut rest).unwrap();
    assert_eq!(rest.text(), "part one, part two, part three");
    assert_eq!(stored_body(&file), b"part one, part two, part three");
    assert_no_temp_files(&nginx.path("gen"));
}

#[test]
fn client_abort_is_not_stored() {
    let up = Upstream::fixed(Plan::chunked_slow(
        200,
        &[("Content-Type", "text/html")],
        &[b"first part ", b"second part ", b"third part"],
        Duration::from_millis(300),
    ));
    for buffering in ["on", "off"] {
        let nginx = start(&up, buffering);
        let mut stream = TcpStream::connect(("127.0.0.1", nginx.port())).unwrap();
        stream
            .write_all(&build_request("GET", "/abort", &[], b""))
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        drop(stream);
        // the upstream finishes its response after the client left
        std::thread::sleep(Duration::from_millis(1000));
        assert_not_stored_under(&nginx, &page_file(&nginx, "abort.html"));
        assert!(
            nginx.access_log().contains(" 499 ")
                || nginx.error_log().contains("client prematurely closed"),
            "buffering {buffering}: the abort was not seen:\n{}\n{}",
            nginx.access_log(),
            nginx.error_log()
        );
        nginx.assert_no_alerts();
    }
}

#[test]
fn complete_response_the_client_did_not_receive_is_stored() {
    // nginx reads the whole response (proxy_ignore_client_abort) but cannot
    // write it: the client reset the connection while the upstream was
    // slow. The body is complete, so the page is (issue 21: a complete
    // body is a complete page whatever the client does).
    let up = Upstream::fixed(Plan::new().sleep_ms(300).write(http_response(
        200,
        &[("Content-Type", "text/html")],
        b"complete",
    )));
    for buffering in ["on", "off"] {
        let nginx = start(&up, buffering);
        let stream = TcpStream::connect(("127.0.0.1", nginx.port())).unwrap();
        (&stream)
            .write_all(&build_request("GET", "/ignore/reset", &[], b""))
            .unwrap();
        assert!(wait_until(TIMEOUT, || up.hits("/ignore/reset") > 0));
        reset(stream);
        let page = nginx.path("gen/ignore/reset.html");
        assert_eq!(stored_body(&page), b"complete", "buffering {buffering}");
        assert_no_temp_files(&nginx.path("gen"));
        up.clear();
    }
}

/// The page is installed when its body is complete, before the client has
/// it: the request that follows a MISS at once, in any worker, is a HIT
/// (before, the install followed the client's write, and the next request
/// in another worker was a MISS about half the time).
#[test]
fn the_request_right_after_a_miss_is_a_hit_in_any_worker() {
    let body = big_body(20_000);
    let up = Upstream::fixed(Plan::response(200, &[("Content-Type", "text/html")], &body));
    let nginx = Nginx::new(CONF)
        .var("up", up.port())
        .var("buffering", "on")
        .workers(4)
        .start();
    let port = nginx.port();
    let mut late = Vec::new();
    for i in 0..200 {
        let uri = format!("/next/{i}/");
        let first = get(port, &uri);
        assert_eq!(first.sg_status(), "MISS", "{first}");
        let next = get(port, &uri);
        if next.sg_status() != "HIT" {
            late.push(uri);
        }
        assert_eq!(next.body, body);
    }
    assert!(late.is_empty(), "not HITs: {late:?}");
}

/// Closes with a RST (SO_LINGER 0), so nginx's next write fails at once.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(stream);
}

#[test]
fn unwritable_root_still_serves_and_logs() {
    let up = Upstream::fixed(Plan::html("served anyway"));
    let setup = Nginx::new(CONF).var("up", up.port()).var("buffering", "on");
    // a file where the root directory should be
    std::fs::write(setup.tmp().join("gen"), b"not a directory").unwrap();
    let nginx = setup.start();
    let r = get(nginx.port(), "/page");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "served anyway");
    assert!(
        wait_until(TIMEOUT, || nginx
            .error_log()
            .contains("static_gen: page not stored")),
        "{}",
        nginx.error_log()
    );
    let line = nginx
        .log_lines(&["error"])
        .into_iter()
        .find(|l| l.contains("static_gen"))
        .unwrap();
    // the root itself is named, with the OS error
    let root = nginx.path("gen");
    assert!(
        line.contains(&format!("\"{}\"", root.display())),
        "path in: {line}"
    );
    assert!(line.contains("File exists"), "errno in: {line}");
}
