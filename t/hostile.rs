//! Hostile requests never produce a foreign or private page, never reach
//! outside the tree or into the module's own files: a poisoned `Host`, a
//! symbolic link planted in the tree, purge queries aimed at the reserved
//! directory or malformed, a comma-separated session cookie, another
//! spelling of a canonical path, a purge from another machine. Each was a
//! hole found by a fault campaign (issue 10); each test failed before its
//! fix.
mod common;

use std::fs;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{tmp}}/gen;
        location / {
            static_gen on;
            add_header X-Static-Gen $static_gen_status always;
            # as nginx-conf/django-gunicorn.conf: the application sees the
            # client's Host and renders absolute URLs with it
            proxy_set_header Host $http_host;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location = /_static_gen/purge {
            allow 127.0.0.1;
            deny all;
            static_gen_purge;
        }
    }
"#;

/// An application that writes the host it was asked for into every page.
fn host_echo() -> Upstream {
    Upstream::start(|req| {
        let host = req.header("Host").unwrap_or("-").to_string();
        let forwarded = req.header("X-Forwarded-Host").unwrap_or("-").to_string();
        Plan::html(&format!(
            "<link rel=canonical href=\"http://{host}{}\"> xfh={forwarded}",
            req.path
        ))
    })
}

fn start(up: &Upstream) -> NginxHandle {
    Nginx::new(CONF).var("up", up.port()).start()
}

#[test]
fn a_page_rendered_for_another_host_is_never_stored() {
    let up = host_echo();
    let nginx = start(&up);
    let port = nginx.port();
    for headers in [
        &[("Host", "evil.example")][..],
        &[("Host", "evil.example:8080")],
        &[("X-Forwarded-Host", "evil.example")],
        &[("X-Forwarded-Host", "localhost, evil.example")],
        &[("Forwarded", "for=192.0.2.1;host=evil.example")],
    ] {
        let r = get_with(port, "/article/", headers);
        assert_eq!(r.status, 200, "{headers:?}: {r}");
        assert_eq!(r.sg_status(), "BYPASS", "{headers:?}: {r}");
        assert!(!nginx.page("/article/").exists(), "{headers:?}: stored");
    }
    let miss = get(port, "/article/");
    assert_eq!(miss.sg_status(), "MISS", "{miss}");
    stored_body(&nginx.page("/article/"));
    for headers in [
        &[][..],
        &[("Host", "LOCALHOST:80")],
        &[("X-Forwarded-Host", "localhost")],
    ] {
        let hit = get_with(port, "/article/", headers);
        assert_eq!(hit.sg_status(), "HIT", "{headers:?}: {hit}");
        assert!(hit.text().contains("http://localhost/article/"), "{hit}");
        assert!(!hit.text().contains("evil"), "{hit}");
    }
}

#[test]
fn a_server_without_names_stores_nothing_and_nginx_t_says_so() {
    let up = host_echo();
    let conf = CONF.replace("server_name localhost;", "server_name _;");
    let (ok, output) = Nginx::new(&conf).var("up", up.port()).config_test();
    assert!(ok, "{output}");
    assert!(
        output.contains("without a server_name") && output.contains("static_gen_hosts"),
        "{output}"
    );
    let nginx = Nginx::new(&conf).var("up", up.port()).start();
    let r = get(nginx.port(), "/a/");
    assert_eq!(r.sg_status(), "BYPASS", "{r}");
    // static_gen_hosts names the site instead
    let named = conf.replace(
        "static_gen on;",
        "static_gen on; static_gen_hosts localhost;",
    );
    let nginx = Nginx::new(&named).var("up", up.port()).start();
    assert_eq!(get(nginx.port(), "/a/").sg_status(), "MISS");
    assert_eq!(
        get_with(nginx.port(), "/a/", &[("Host", "evil.example")]).sg_status(),
        "BYPASS"
    );
}

#[test]
fn symbolic_links_in_the_tree_are_never_followed() {
    let up = host_echo();
    let setup = Nginx::new(CONF).var("up", up.port());
    // a page-like file outside the tree, and a link to its directory
    let outside = setup.tmp().join("outside");
    fs::create_dir_all(outside.join("new")).unwrap();
    fs::write(
        outside.join("secret.html"),
        "static_gen 1\ncontent-type: text/html\nuri: /link/secret\n\nSECRET",
    )
    .unwrap();
    fs::create_dir_all(setup.tmp().join("gen")).unwrap();
    std::os::unix::fs::symlink(&outside, setup.tmp().join("gen/link")).unwrap();
    let nginx = setup.start();
    let port = nginx.port();
    let read = get(port, "/link/secret");
    assert!(
        !read.text().contains("SECRET"),
        "read outside the tree: {read}"
    );
    assert_ne!(read.sg_status(), "HIT", "{read}");
    let write = get(port, "/link/new/");
    assert_eq!(write.status, 200, "{write}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !outside.join("new/index.html").exists(),
        "a MISS wrote outside the tree"
    );
    assert_no_temp_files(&nginx.path("gen"));
    let purge = post(port, "/_static_gen/purge?prefix=/link/", b"");
    assert_eq!(purge.status, 200, "{purge}");
    assert!(
        outside.join("secret.html").exists(),
        "a purge reached outside"
    );
}

#[test]
fn purges_never_reach_the_reserved_directory() {
    let up = host_echo();
    let nginx = start(&up);
    let port = nginx.port();
    get(port, "/a/");
    stored_body(&nginx.page("/a/"));
    let reserved = nginx.path("gen/.static_gen");
    let before: Vec<_> = list_files(&reserved);
    for query in [
        "prefix=/.static_gen/",
        "prefix=/.static_gen/s",
        "prefix=/.static_gen/l",
        "prefix=/.static_gen/p",
        "prefix=/.static_gen/tmp/",
        "prefix=%2F.static_gen%2Fstate",
        "uri=/.static_gen/state",
    ] {
        let r = post(port, &format!("/_static_gen/purge?{query}"), b"");
        assert_eq!(r.status, 400, "{query}: {r}");
    }
    assert_eq!(
        list_files(&reserved),
        before,
        "the module's own files moved"
    );
    assert_eq!(get(port, "/a/").sg_status(), "HIT");
    // the tree still works: a whole purge is seen
    assert_eq!(post(port, "/_static_gen/purge", b"").status, 200);
    assert_eq!(get(port, "/a/").sg_status(), "MISS");
}

#[test]
fn malformed_purge_queries_purge_nothing() {
    let up = host_echo();
    let nginx = start(&up);
    let port = nginx.port();
    get(port, "/a/");
    stored_body(&nginx.page("/a/"));
    let long = "x".repeat(300);
    for query in [
        "&".to_string(),
        "&&&".into(),
        "prefix=/&".into(),
        "uri=/a/&".into(),
        "page=/a/".into(),
        "uri".into(),
        format!("prefix=/{long}/"),
        format!("prefix=/{long}"),
    ] {
        let r = post(port, &format!("/_static_gen/purge?{query}"), b"");
        assert_eq!(r.status, 400, "{query}: {r}");
        assert!(r.text().contains("\"status\":\"error\""), "{r}");
        assert_eq!(get(port, "/a/").sg_status(), "HIT", "{query} purged");
    }
}

#[test]
fn a_comma_separated_session_cookie_is_seen() {
    let up = host_echo();
    let nginx = start(&up);
    for cookie in ["a=b, sessionid=1", "a=b,sessionid=1"] {
        let r = get_with(nginx.port(), "/private/", &[("Cookie", cookie)]);
        assert_eq!(r.sg_status(), "BYPASS", "{cookie}: {r}");
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!nginx.page("/private/").exists());
}

#[test]
fn only_the_normal_spelling_of_a_path_is_stored() {
    let up = host_echo();
    let nginx = start(&up);
    let port = nginx.port();
    for spelling in ["/page/%70oison/", "/page/poi%73on/", "/%70age/poison/"] {
        let r = get(port, spelling);
        assert_eq!(r.sg_status(), "BYPASS", "{spelling}: {r}");
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!nginx.page("/page/poison/").exists());
    let miss = get(port, "/page/poison/");
    assert_eq!(miss.sg_status(), "MISS");
    assert!(stored_body(&nginx.page("/page/poison/")).ends_with(b"xfh=-"));
}

/// A client on another machine, as nginx sees it behind `real_ip`.
const OPEN_PURGE: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        location = /purge {
            static_gen_purge;
            static_gen_root {{tmp}}/gen;
        }
        location = /purge-open {
            allow all;
            static_gen_purge;
            static_gen_root {{tmp}}/gen;
        }
    }
"#;

#[test]
fn a_purge_location_without_allow_or_deny_answers_only_this_machine() {
    let (ok, output) = Nginx::new(OPEN_PURGE).config_test();
    assert!(ok, "{output}");
    assert!(
        output.contains("\"static_gen_purge\" without \"allow\"/\"deny\""),
        "{output}"
    );
    let nginx = Nginx::new(OPEN_PURGE).start();
    let port = nginx.port();
    let remote = [("X-Real-IP", "203.0.113.7")];
    let refused = method_with(port, "POST", "/purge", &remote, b"");
    assert_eq!(refused.status, 403, "{refused}");
    assert!(refused.text().contains("allow/deny"), "{refused}");
    for (path, headers) in [
        ("/purge", &[][..]),
        ("/purge", &[("X-Real-IP", "::1")]),
        ("/purge-open", &remote),
    ] {
        let r = method_with(port, "POST", path, headers, b"");
        assert_eq!(r.status, 200, "{path} {headers:?}: {r}");
    }
}
