//! What is stored and how it comes back: content types, encodings, Vary,
//! size limits, bypass and no-store conditions, roots with variables, file
//! modes and ranges.
mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;

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
        location /gzip/ {
            static_gen on;
            gzip on;
            gzip_min_length 0;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /typed/ {
            static_gen on;
            static_gen_types text/html application/json;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /any/ {
            static_gen on;
            static_gen_types */*;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /text/ {
            static_gen on;
            static_gen_types text/*;
            add_header X-Static-Gen $static_gen_status always;
            add_header X-Static-Gen-Reason $static_gen_reason always;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /small/ {
            static_gen on;
            static_gen_max_size 1k;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /cond/ {
            static_gen on;
            static_gen_bypass $http_x_preview;
            static_gen_no_store $cookie_csrftoken;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /sites/ {
            static_gen on;
            static_gen_root {{tmp}}/sites/$http_x_site;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location /private/ {
            static_gen on;
            static_gen_access user:rw group:r;
            proxy_pass http://127.0.0.1:{{up}};
        }
    }
"#;

fn start(up: &Upstream) -> NginxHandle {
    Nginx::new(CONF).var("up", up.port()).start()
}

fn stored(path: &Path) -> Vec<u8> {
    stored_body(path)
}

fn assert_not_stored_under(nginx: &NginxHandle, path: &Path) {
    assert_not_stored(path, &nginx.path("gen"));
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not gzip data");
    out.stdout
}

#[test]
fn compressing_upstream_still_yields_an_identity_page() {
    // Like Django's GZipMiddleware: gzip when the request allows it.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_upstream = seen.clone();
    let up = Upstream::start(move |req| {
        let accept = req.header("Accept-Encoding").unwrap_or("").to_string();
        seen_by_upstream.lock().unwrap().push(accept.clone());
        let vary = ("Vary", "Accept-Encoding");
        if accept.contains("gzip") || req.path == "/gzip/always" {
            Plan::response(
                200,
                &[
                    ("Content-Type", "text/html"),
                    ("Content-Encoding", "gzip"),
                    vary,
                ],
                b"\x1f\x8bnot really",
            )
        } else {
            Plan::response(
                200,
                &[("Content-Type", "text/html"), vary],
                b"<p>the page</p>",
            )
        }
    });
    let nginx = start(&up);
    let gzip = [("Accept-Encoding", "gzip, deflate, br")];

    let miss = get_with(nginx.port(), "/gzip/page", &gzip);
    assert_eq!(miss.sg_status(), "MISS", "{miss}");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["identity"],
        "the upstream is asked for identity"
    );
    assert_eq!(
        miss.header("Content-Encoding"),
        Some("gzip"),
        "nginx compresses for the client"
    );
    assert_eq!(gunzip(&miss.body), b"<p>the page</p>");
    assert_eq!(
        stored(&nginx.path("gen/gzip/page.html")),
        b"<p>the page</p>"
    );

    let hit = get_with(nginx.port(), "/gzip/page", &gzip);
    assert_eq!(hit.sg_status(), "HIT");
    assert_eq!(hit.header("Content-Encoding"), Some("gzip"));
    assert_eq!(gunzip(&hit.body), b"<p>the page</p>");
    let plain = get(nginx.port(), "/gzip/page");
    assert_eq!(plain.sg_status(), "HIT");
    assert_eq!(plain.header("Content-Encoding"), None);
    assert_eq!(plain.body, b"<p>the page</p>");

    // an upstream that compresses regardless is passed through unstored
    let always = get_with(nginx.port(), "/gzip/always", &gzip);
    assert_eq!(always.body, b"\x1f\x8bnot really");
    assert_not_stored_under(&nginx, &nginx.path("gen/gzip/always.html"));
}

#[test]
fn only_configured_types_are_stored_with_their_exact_type() {
    let up = Upstream::start(|req| {
        let ct = if req.path.ends_with("json") {
            "application/json; charset=utf-8"
        } else {
            "text/html; charset=ISO-8859-1"
        };
        Plan::response(200, &[("Content-Type", ct)], req.path.as_bytes())
    });
    let nginx = start(&up);
    get(nginx.port(), "/data.json");
    assert_not_stored_under(&nginx, &nginx.path("gen/data.json.html"));
    get(nginx.port(), "/typed/data.json");
    stored(&nginx.path("gen/typed/data.json.html"));
    let hit = get(nginx.port(), "/typed/data.json");
    assert_eq!(hit.sg_status(), "HIT");
    assert_eq!(
        hit.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    get(nginx.port(), "/latin1");
    stored(&nginx.path("gen/latin1.html"));
    let hit = get(nginx.port(), "/latin1");
    assert_eq!(
        hit.header("Content-Type"),
        Some("text/html; charset=ISO-8859-1")
    );
}

/// `*/*` stores any type, `text/*` every text type (as nginx's `*_types`
/// accept `*`); `*/*` used to pass `nginx -t` and store nothing.
#[test]
fn wildcard_types_are_stored() {
    let up = Upstream::start(|req| {
        let ct = match req.path.rsplit('.').next() {
            Some("json") => "application/json",
            Some("css") => "text/css; charset=utf-8",
            _ => "image/png",
        };
        Plan::response(200, &[("Content-Type", ct)], req.path.as_bytes())
    });
    let nginx = start(&up);
    for uri in ["/any/data.json", "/any/logo.png", "/text/style.css"] {
        assert_eq!(get(nginx.port(), uri).sg_status(), "MISS");
        stored(&nginx.path(format!("gen{uri}.html")));
        assert_eq!(get(nginx.port(), uri).sg_status(), "HIT", "{uri}");
    }
    let json = get(nginx.port(), "/text/data.json");
    assert_eq!(json.header("X-Static-Gen-Reason"), Some("type"), "{json}");
}

#[test]
fn vary_on_other_headers_is_not_stored() {
    let up = Upstream::start(|req| {
        let vary = match req.path.as_str() {
            "/star" => "*",
            "/language" => "Accept-Language",
            "/agent" => "Accept-Encoding, User-Agent",
            _ => "Accept-Encoding, Cookie",
        };
        Plan::response(200, &[("Content-Type", "text/html"), ("Vary", vary)], b"v")
    });
    let nginx = start(&up);
    for path in ["/star", "/language", "/agent"] {
        get(nginx.port(), path);
        assert_not_stored_under(&nginx, &nginx.path(format!("gen{path}.html")));
    }
    get(nginx.port(), "/ok");
    assert_eq!(stored(&nginx.path("gen/ok.html")), b"v");
}

#[test]
fn bodies_over_max_size_pass_through_unstored() {
    let big = vec![b'x'; 2048];
    let body = big.clone();
    let up = Upstream::start(move |req| match req.path.as_str() {
        "/small/length" => Plan::response(200, &[("Content-Type", "text/html")], &body),
        "/small/chunked" => Plan::chunked(
            200,
            &[("Content-Type", "text/html")],
            &[&body[..1000], &body[1000..]],
        ),
        _ => Plan::response(200, &[("Content-Type", "text/html")], &body[..1024]),
    });
    let nginx = start(&up);
    for path in ["/small/length", "/small/chunked"] {
        let r = get(nginx.port(), path);
        assert_eq!(r.body, big, "{path}: the client gets it all");
        assert_not_stored_under(&nginx, &nginx.path(format!("gen{path}.html")));
    }
    get(nginx.port(), "/small/fits");
    assert_eq!(stored(&nginx.path("gen/small/fits.html")).len(), 1024);
}

#[test]
fn bypass_and_no_store_conditions() {
    let n = Arc::new(Mutex::new(0));
    let up = Upstream::start(move |req| {
        let mut n = n.lock().unwrap();
        *n += 1;
        Plan::html(&format!("{} #{n}", req.path))
    });
    let nginx = start(&up);
    let port = nginx.port();
    get(port, "/cond/a");
    stored(&nginx.path("gen/cond/a.html"));
    assert_eq!(
        get_with(port, "/cond/a", &[("X-Preview", "0")]).sg_status(),
        "HIT"
    );
    let preview = get_with(port, "/cond/a", &[("X-Preview", "1")]);
    assert_eq!(preview.sg_status(), "BYPASS", "{preview}");
    assert_ne!(preview.text(), "/cond/a #1");

    let with_token = get_with(port, "/cond/b", &[("Cookie", "csrftoken=secret")]);
    assert_eq!(with_token.sg_status(), "MISS");
    assert_not_stored_under(&nginx, &nginx.path("gen/cond/b.html"));
    get(port, "/cond/b");
    stored(&nginx.path("gen/cond/b.html"));
}

#[test]
fn root_with_variables_stays_inside_its_tree() {
    let up =
        Upstream::start(|req| Plan::html(&format!("site {}", req.header("X-Site").unwrap_or("-"))));
    let nginx = start(&up);
    let port = nginx.port();
    for site in ["a.example", "b.example"] {
        let r = get_with(port, "/sites/page", &[("X-Site", site)]);
        assert_eq!(r.sg_status(), "MISS");
        assert_eq!(
            stored(&nginx.path(format!("sites/{site}/sites/page.html"))),
            format!("site {site}").as_bytes()
        );
        let hit = get_with(port, "/sites/page", &[("X-Site", site)]);
        assert_eq!(hit.sg_status(), "HIT");
        assert_eq!(hit.text(), format!("site {site}"));
    }
    for hostile in ["..", "../gen", "a/../../x", ".", "a//b"] {
        let r = get_with(port, "/sites/page", &[("X-Site", hostile)]);
        assert_eq!(r.status, 200);
        assert_eq!(r.sg_status(), "BYPASS", "{hostile}: {r}");
    }
    let no_site = get(port, "/sites/page");
    assert_eq!(
        no_site.sg_status(),
        "BYPASS",
        "an empty variable is refused"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut files: Vec<_> = list_files(nginx.tmp())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            nginx.path("sites/a.example/sites/page.html"),
            nginx.path("sites/b.example/sites/page.html")
        ]
    );
}

#[test]
fn pages_and_directories_get_the_configured_modes() {
    let up = Upstream::fixed(Plan::html("m"));
    let nginx = start(&up);
    get(nginx.port(), "/private/dir/page");
    get(nginx.port(), "/open/dir/page");
    let private = nginx.path("gen/private/dir/page.html");
    stored(&private);
    let open = nginx.path("gen/open/dir/page.html");
    stored(&open);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&private), 0o640);
    assert_eq!(mode(private.parent().unwrap()), 0o750);
    assert_eq!(mode(&open), 0o644);
    assert_eq!(mode(open.parent().unwrap()), 0o755);
}

#[test]
fn ranges_on_a_hit() {
    let up = Upstream::fixed(Plan::html("0123456789abcdef"));
    let nginx = start(&up);
    get(nginx.port(), "/ranged");
    stored(&nginx.path("gen/ranged.html"));
    let r = get_with(nginx.port(), "/ranged", &[("Range", "bytes=2-5")]);
    assert_eq!(r.status, 206, "{r}");
    assert_eq!(r.sg_status(), "HIT");
    assert_eq!(r.body, b"2345");
    assert_eq!(r.header("Content-Range"), Some("bytes 2-5/16"));
    let tail = get_with(nginx.port(), "/ranged", &[("Range", "bytes=-3")]);
    assert_eq!(tail.body, b"def");
    let bad = get_with(nginx.port(), "/ranged", &[("Range", "bytes=100-")]);
    assert_eq!(bad.status, 416, "{bad}");
}
