//! Freshness limits and the upstream's say: `static_gen_valid`
//! (`EXPIRED`), `X-Static-Gen: no-store`, `X-Accel-Expires: 0`; and what a
//! crash left behind is cleaned when nginx starts.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{tmp}}/gen;
        add_header X-Static-Gen $static_gen_status always;
        location / {
            static_gen on;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /short/ {
            static_gen on;
            static_gen_valid 1s;
            proxy_pass http://127.0.0.1:{{up}};
        }
    }
"#;

fn versioned_upstream() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |req| {
        let body = format!("{} v{}", req.path, n.fetch_add(1, Ordering::SeqCst));
        let html = ("Content-Type", "text/html");
        match req.path.as_str() {
            "/refused" => {
                Plan::response(200, &[html, ("X-Static-Gen", "no-store")], body.as_bytes())
            }
            "/accel" => Plan::response(200, &[html, ("X-Accel-Expires", "0")], body.as_bytes()),
            "/accel-later" => {
                Plan::response(200, &[html, ("X-Accel-Expires", "60")], body.as_bytes())
            }
            _ => Plan::html(&body),
        }
    })
}

#[test]
fn expired_pages_are_fetched_again_and_replaced() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    let uri = "/short/page";
    assert_eq!(get(nginx.port(), uri).sg_status(), "MISS");
    assert!(wait_until(TIMEOUT, || nginx
        .path("gen/short/page.html")
        .exists()));
    let hit = get(nginx.port(), uri);
    assert_eq!(hit.sg_status(), "HIT");
    assert_eq!(hit.text(), "/short/page v0");
    std::thread::sleep(Duration::from_millis(2100));
    let expired = get(nginx.port(), uri);
    assert_eq!(expired.sg_status(), "EXPIRED", "{expired}");
    assert_eq!(expired.text(), "/short/page v1");
    assert!(wait_until(TIMEOUT, || get(nginx.port(), uri).sg_status() == "HIT"));
    assert_eq!(get(nginx.port(), uri).text(), "/short/page v1");
    // pages elsewhere do not expire
    get(nginx.port(), "/forever");
    assert!(wait_until(TIMEOUT, || nginx
        .path("gen/forever.html")
        .exists()));
    assert_eq!(get(nginx.port(), "/forever").sg_status(), "HIT");
}

#[test]
fn upstream_can_refuse_storage() {
    let up = versioned_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    let refused = get(nginx.port(), "/refused");
    assert_eq!(refused.sg_status(), "MISS");
    assert_eq!(
        refused.headers_all("X-Static-Gen"),
        ["MISS"],
        "the upstream's header is not passed on: {refused}"
    );
    for bypass in [
        get_with(nginx.port(), "/refused", &[("Cookie", "sessionid=x")]),
        get(nginx.port(), "/refused?x=1"),
    ] {
        assert_eq!(bypass.headers_all("X-Static-Gen"), ["BYPASS"], "{bypass}");
    }
    get(nginx.port(), "/accel");
    get(nginx.port(), "/accel-later");
    assert!(wait_until(TIMEOUT, || nginx
        .path("gen/accel-later.html")
        .exists()));
    assert!(!nginx.path("gen/refused.html").exists());
    assert!(!nginx.path("gen/accel.html").exists());
    assert_eq!(get(nginx.port(), "/refused").sg_status(), "MISS");
    assert_eq!(get(nginx.port(), "/accel").sg_status(), "MISS");
}

#[test]
fn leftovers_of_a_crash_are_cleaned_at_start() {
    let up = versioned_upstream();
    let setup = Nginx::new(CONF).var("up", up.port());
    let reserved = setup.tmp().join("gen/.static_gen");
    let trash = reserved.join("trash/4242.0/articles");
    std::fs::create_dir_all(&trash).unwrap();
    std::fs::write(trash.join("index.html"), b"old").unwrap();
    std::fs::create_dir_all(reserved.join("tmp")).unwrap();
    std::fs::write(reserved.join("tmp/999999999.3"), b"partial").unwrap();
    let nginx = setup.start();
    assert!(
        wait_until(TIMEOUT, || list_files(&nginx.path("gen/.static_gen/trash"))
            .is_empty()
            && !nginx.path("gen/.static_gen/tmp/999999999.3").exists()),
        "{:?}",
        list_files(&nginx.path("gen/.static_gen"))
    );
}
