//! Query arguments (issue 21): tracking arguments (`static_gen_ignore_args`)
//! are served from and stored as the page of the path, key arguments
//! (`static_gen_key_args`) make pages of their own under a canonical form,
//! anything else bypasses with reason `args`; argument pages never leave
//! the root and every purge scope reaches them.
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
            {{extra}}
            add_header X-Static-Gen $static_gen_status always;
            add_header X-Static-Gen-Reason $static_gen_reason always;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location = /_static_gen/purge {
            static_gen_purge;
        }
    }
"#;

fn start(up: &Upstream, extra: &str) -> NginxHandle {
    Nginx::new(CONF)
        .var("up", up.port())
        .var("extra", extra)
        .workers(2)
        .start()
}

/// A MISS whose page is then installed: waits for its file.
fn stored(nginx: &NginxHandle, uri: &str, rel: &str) -> Response {
    let r = get(nginx.port(), uri);
    assert_eq!(r.sg_status(), "MISS", "{uri}: {r}");
    stored_body(&nginx.path(format!("gen/{rel}")));
    r
}

fn purge(nginx: &NginxHandle, query: &str) {
    let r = post(nginx.port(), &format!("/_static_gen/purge{query}"), b"");
    assert_eq!(r.status, 200, "{r}");
}

/// Every page file under the root (the reserved directory left out).
fn pages(nginx: &NginxHandle) -> Vec<String> {
    let root = nginx.path("gen");
    list_files(&root)
        .into_iter()
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !p.starts_with(".static_gen/"))
        .collect()
}

#[test]
fn tracking_arguments_are_served_from_the_page_of_the_path() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = start(&up, "");
    let port = nginx.port();
    let first = stored(
        &nginx,
        "/a/?utm_source=news&utm_medium=mail",
        "a/index.html",
    );
    // the application got the request as the client sent it
    assert!(
        first
            .text()
            .starts_with("/a/?utm_source=news&utm_medium=mail "),
        "{first}"
    );
    for uri in ["/a/", "/a/?fbclid=IwAR123", "/a/?gclid=x&_ga=1.2", "/a/?"] {
        let r = get(port, uri);
        assert_eq!(r.sg_status(), "HIT", "{uri}: {r}");
        assert_eq!(r.body, first.body, "{uri}");
    }
    assert_eq!(up.hit_count(), 1);
    assert_eq!(pages(&nginx), ["a/index.html"]);
    // an argument the application may read is not ignored
    let r = get(port, "/a/?ref=hn");
    assert_eq!(r.sg_status(), "BYPASS", "{r}");
    assert_eq!(r.header("X-Static-Gen-Reason"), Some("args"));
    let r = get(port, "/a/?ref=hn&utm_source=x");
    assert_eq!(r.sg_status(), "BYPASS", "{r}");
}

#[test]
fn with_ignore_args_off_every_argument_bypasses() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = start(&up, "static_gen_ignore_args off;");
    let r = get(nginx.port(), "/a/?utm_source=x");
    assert_eq!(r.sg_status(), "BYPASS", "{r}");
    assert_eq!(r.header("X-Static-Gen-Reason"), Some("args"));
    let nginx2 = start(&up, "static_gen_ignore_args ref src_*;");
    stored(&nginx2, "/b/?ref=hn&src_a=1", "b/index.html");
    // the list replaces the default: utm_* is no longer ignored
    assert_eq!(get(nginx2.port(), "/b/?utm_source=x").sg_status(), "BYPASS");
    assert_eq!(get(nginx2.port(), "/b/?src_b=2").sg_status(), "HIT");
}

#[test]
fn key_arguments_make_pages_of_their_own_in_canonical_order() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = start(&up, "static_gen_key_args page sort;");
    let port = nginx.port();
    let list = stored(&nginx, "/l/", "l/index.html");
    let second = stored(
        &nginx,
        "/l/?sort=new&page=2",
        "l/index.html?page=2&sort=new",
    );
    assert_ne!(second.body, list.body);
    for uri in [
        "/l/?page=2&sort=new",
        "/l/?sort=new&page=2",
        "/l/?page=%32&sort=new&utm_campaign=x",
    ] {
        let r = get(port, uri);
        assert_eq!(r.sg_status(), "HIT", "{uri}: {r}");
        assert_eq!(r.body, second.body, "{uri}");
    }
    assert_eq!(get(port, "/l/").body, list.body);
    for uri in [
        "/l/?page=2&page=3",
        "/l/?=2",
        "/l/?page=%zz",
        "/l/?page=2&ref=x",
    ] {
        let r = get(port, uri);
        assert_eq!(r.sg_status(), "BYPASS", "{uri}: {r}");
        assert_eq!(r.header("X-Static-Gen-Reason"), Some("args"), "{uri}");
    }
    // a path page's name never holds `?`: the two kinds cannot collide
    assert_eq!(get(port, "/l/index.html%3Fpage=2").sg_status(), "BYPASS");
    assert_eq!(
        pages(&nginx),
        ["l/index.html", "l/index.html?page=2&sort=new"]
    );
}

#[test]
fn hostile_argument_bytes_stay_in_the_page_file_name() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = start(&up, "static_gen_key_args q;");
    let port = nginx.port();
    let beside_root = || {
        let gen = nginx.path("gen");
        let mut files = list_files(nginx.tmp());
        files.retain(|f| !f.starts_with(&gen));
        files
    };
    let before = beside_root();
    let hostile = [
        "/h/?q=../../../../etc/passwd",
        "/h/?q=%2F..%2F..%2Fx",
        "/h/?q=a/b/c",
        "/h/?q=%00x",
        "/h/?q=.",
        "/h/?q=..",
        "/h/?q=%C3%A9%FF%FE",
        "/h/?q=a%3Fb%23c",
    ];
    for uri in hostile {
        let r = get(port, uri);
        assert_eq!(r.status, 200, "{uri}: {r}");
    }
    let long = format!("/h/?q={}", "x".repeat(300));
    assert_eq!(get(port, &long).sg_status(), "BYPASS");
    assert!(wait_until(TIMEOUT, || pages(&nginx).len() == hostile.len()));
    for page in pages(&nginx) {
        let name = page.strip_prefix("h/index.html?q=").unwrap_or_else(|| {
            panic!("a page outside its directory: {page}");
        });
        assert!(!name.contains('/') && !name.contains('\0'), "{page}");
    }
    // nothing written beside the root
    assert_eq!(beside_root(), before);
    for uri in hostile {
        assert_eq!(get(port, uri).sg_status(), "HIT", "{uri}");
    }
}

#[test]
fn every_purge_scope_reaches_argument_pages() {
    let up = Upstream::start(|req| {
        let body = format!("{} version={}", req.path, std::process::id());
        Plan::new().write(http_response(
            200,
            &[
                ("Content-Type", "text/html"),
                ("X-Static-Gen-Tags", "listing"),
            ],
            body.as_bytes(),
        ))
    });
    let nginx = start(&up, "static_gen_key_args page;");
    let port = nginx.port();
    for purge_query in [
        "?uri=/p/",
        "?uri=/p/&hard=1",
        "?prefix=/p/",
        "?prefix=/&hard=1",
        "?tag=listing",
        "",
        "?hard=1",
    ] {
        stored(&nginx, "/p/?page=2", "p/index.html?page=2");
        assert_eq!(get(port, "/p/?page=2").sg_status(), "HIT");
        purge(&nginx, purge_query);
        let r = get(port, "/p/?page=2");
        assert_eq!(r.sg_status(), "MISS", "after {purge_query:?}: {r}");
        stored_body(&nginx.path("gen/p/index.html?page=2"));
        purge(&nginx, "?hard=1");
        assert!(
            wait_until(TIMEOUT, || pages(&nginx).is_empty()),
            "{:?}",
            pages(&nginx)
        );
    }
}
