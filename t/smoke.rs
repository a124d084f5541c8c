//! Smoke test: the module loads, a first anonymous GET is a MISS that goes to
//! the upstream, the second is a HIT served from the generated file.
mod common;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        location / {
            static_gen on;
            static_gen_root {{tmp}}/gen;
            proxy_pass http://127.0.0.1:{{port2}};
            add_header X-Static-Gen $static_gen_status always;
        }
    }
    server {
        listen 127.0.0.1:{{port2}};
        access_log {{tmp}}/backend.log;
        location / {
            default_type "text/html; charset=utf-8";
            return 200 "hello";
        }
    }
"#;

#[test]
fn miss_then_hit() {
    let nginx = Nginx::new(CONF).start();
    let port = nginx.port();
    let backend_hits = || {
        std::fs::read_to_string(nginx.path("backend.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    let first = get(port, "/");
    assert_eq!(first.status, 200, "first response:\n{first}");
    assert_eq!(first.text(), "hello", "first response:\n{first}");
    assert_eq!(first.sg_status(), "MISS", "first response:\n{first}");
    assert_eq!(backend_hits(), 1);
    // the page is installed right after its last byte went to the client
    assert!(wait_until(TIMEOUT, || nginx
        .path("gen/index.html")
        .exists()));

    let second = get(port, "/");
    assert_eq!(second.status, 200, "second response:\n{second}");
    assert_eq!(second.text(), "hello", "second response:\n{second}");
    assert_eq!(second.sg_status(), "HIT", "second response:\n{second}");
    assert_eq!(
        second.header("Content-Type"),
        Some("text/html; charset=utf-8"),
        "second response:\n{second}"
    );
    assert_eq!(backend_hits(), 1, "a HIT must not reach the upstream");

    nginx.assert_no_alerts();
}
