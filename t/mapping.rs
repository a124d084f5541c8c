//! URI to file mapping: readable paths, distinct URIs in distinct files, and
//! hostile request paths that bypass without reading or writing outside the
//! root.
mod common;

use std::path::Path;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        merge_slashes off;
        location / {
            static_gen on;
            static_gen_root {{tmp}}/site/gen;
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
        }
    }
"#;

/// Echoes the path the upstream received, so each URI has its own body.
fn echo_upstream() -> Upstream {
    Upstream::start(|req| Plan::html(&format!("page for {}", req.path)))
}

fn raw_get(port: u16, raw_path: &str) -> Response {
    request(port, &build_request("GET", raw_path, &[], b""))
}

/// Every file under `dir`, relative, sorted; the module's own directory left out.
fn generated(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = list_files(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .filter(|p| !p.starts_with(".static_gen"))
        .collect();
    files.sort();
    files
}

#[test]
fn pages_are_stored_at_readable_paths() {
    let up = echo_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    for path in [
        "/",
        "/articles/hello/",
        "/about",
        "/feed.xml",
        "/caf%C3%A9/",
    ] {
        assert_eq!(raw_get(nginx.port(), path).sg_status(), "MISS", "{path}");
    }
    // the page is installed just after its last byte is handed to the client
    wait_until(TIMEOUT, || generated(&nginx.path("site/gen")).len() == 5);
    assert_eq!(
        generated(&nginx.path("site/gen")),
        [
            "about.html",
            "articles/hello/index.html",
            "café/index.html",
            "feed.xml.html",
            "index.html"
        ]
    );
    let file = std::fs::read(nginx.path("site/gen/articles/hello/index.html")).unwrap();
    let (header, body) = split_page(&file);
    assert_eq!(
        header,
        "static_gen 1\ncontent-type: text/html; charset=utf-8\nuri: /articles/hello/\n\n"
    );
    assert!(body.ends_with(b"page for /articles/hello/"), "{header}");
}

#[test]
fn distinct_uris_have_distinct_pages() {
    let up = echo_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    let uris = [
        "/about",
        "/about/",
        "/about/team",
        "/about.html",
        "/a/index.html",
        "/a/",
    ];
    for uri in uris {
        assert_eq!(get(nginx.port(), uri).sg_status(), "MISS", "{uri}");
    }
    wait_until(TIMEOUT, || {
        generated(&nginx.path("site/gen")).len() == uris.len()
    });
    for uri in uris {
        let hit = get(nginx.port(), uri);
        assert_eq!(hit.sg_status(), "HIT", "{uri}: {hit}");
        assert_eq!(hit.text(), format!("page for {uri}"), "{uri}");
    }
    assert_eq!(up.hit_count(), uris.len());
}

#[test]
fn utf8_paths_hit() {
    let up = echo_upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    assert_eq!(raw_get(nginx.port(), "/caf%C3%A9/").sg_status(), "MISS");
    wait_until(TIMEOUT, || nginx.path("site/gen/café/index.html").exists());
    let hit = raw_get(nginx.port(), "/caf%C3%A9/");
    assert_eq!(hit.sg_status(), "HIT", "{hit}");
    assert_eq!(hit.text(), "page for /caf%C3%A9/");
    // other spellings of the same path are not its normal form (RFC 3986):
    // an application that echoes the raw path would write them into the
    // page, so they bypass
    for other in ["/caf%c3%a9/", "/café/", "/%63af%C3%A9/"] {
        let r = raw_get(nginx.port(), other);
        assert_eq!(r.sg_status(), "BYPASS", "{other}: {r}");
        assert_eq!(r.text(), format!("page for {other}"));
    }
}

#[test]
fn hostile_paths_bypass_and_stay_inside_the_root() {
    let up = echo_upstream();
    let setup = Nginx::new(CONF).var("up", up.port());
    // a page-like file just outside the root, which an escape would reach
    let outside = setup.tmp().join("site/secret.html");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::write(
        &outside,
        "static_gen 1\ncontent-type: text/html\nuri: /x\n\nSECRET",
    )
    .unwrap();
    let nginx = setup.start();
    let long_segment = format!("/{}", "a".repeat(300));
    let deep = "/d".repeat(40) + "/";
    let hostile = [
        "/a/../secret",
        "/a/%2e%2e/secret",
        "/%2E%2E/secret",
        "/..%2Fsecret",
        "/a%2Fb",
        "/a/./b",
        "/a//b",
        "/a%00b",
        "/a%0Ab",
        "/a%3Bb",
        "/.static_gen/tmp/x",
        "/index",
        "/x.html/y",
        long_segment.as_str(),
        deep.as_str(),
    ];
    for path in hostile {
        for _ in 0..2 {
            let r = raw_get(nginx.port(), path);
            assert!(!r.text().contains("SECRET"), "{path}: {r}");
            if r.status == 200 {
                assert_eq!(r.sg_status(), "BYPASS", "{path}: {r}");
            } else {
                // nginx itself refuses some (400): never a HIT
                assert_ne!(r.sg_status(), "HIT", "{path}: {r}");
            }
        }
    }
    assert_eq!(generated(&nginx.path("site/gen")), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "static_gen 1\ncontent-type: text/html\nuri: /x\n\nSECRET"
    );
    for entry in std::fs::read_dir(nginx.path("site")).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            name == "secret.html" || name == "gen",
            "nothing new next to the root: {name:?}"
        );
    }
    nginx.assert_no_alerts();
}
