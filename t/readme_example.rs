//! The README's "Example" is a complete nginx.conf, and it works: its first
//! `nginx` block passes `nginx -t` and runs in front of a scripted upstream
//! (MISS, HIT, purge) with only its paths, port, upstream and worker user
//! replaced, the way `t/nginx_conf.rs` runs the files of `nginx-conf/`.
//! Its Troubleshooting rows for the module's loading are nginx's messages
//! for the example without its `load_module` line, and with it twice.
mod common;
mod example_conf;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use example_conf::*;

const ORIGIN: &str = "README.md, the first ```nginx block under \"## Example\"";

/// The README's section `## {title}`, up to the next `## `.
fn readme_section(title: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    readme
        .split("\n## ")
        .find(|s| s.starts_with(&format!("{title}\n")))
        .unwrap_or_else(|| panic!("README.md: no \"## {title}\" section"))
        .to_string()
}

/// The first ```nginx block of the README's "## Example" section.
fn readme_block() -> String {
    let section = readme_section("Example");
    let (_, after) = section
        .split_once("\n```nginx\n")
        .unwrap_or_else(|| panic!("README.md: no ```nginx block under \"## Example\""));
    let (block, _) = after
        .split_once("\n```\n")
        .unwrap_or_else(|| panic!("README.md: the Example's ```nginx block does not end"));
    format!("{block}\n")
}

/// The first name of the example's `server_name`: the Host of every request
/// (pages are stored only for the server's names).
fn server_name(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("server_name "))
        .filter_map(|names| names.split_whitespace().next())
        .map(|name| name.trim_end_matches(';').to_string())
        .next()
        .unwrap_or_else(|| panic!("{ORIGIN}: expected a `server_name` line"))
}

/// The README's example with its paths in `{tmp}` and `upstream`
/// (`host:port`) instead of gunicorn's socket. The test's harness runs the
/// workers as root when the test runs as root (`-g`), so the example's own
/// `user` line must go.
fn readme_example(upstream: &str) -> ExampleConf {
    ExampleConf::from_text("readme-example", ORIGIN, readme_block())
        .replace("user www-data;", "# user: the test's")
        .replace("unix:/run/gunicorn.sock", upstream)
        .replace("/srv/site/generated", "{tmp}/generated")
}

#[test]
fn readme_example_passes_nginx_t() {
    let (ok, out) = readme_example("127.0.0.1:9").config_test();
    assert!(ok, "nginx -t failed for the {ORIGIN}:\n{out}");
    assert!(out.contains("test is successful"), "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("[warn]")).collect();
    assert!(warnings.is_empty(), "{ORIGIN}: {warnings:#?}");
}

#[test]
fn readme_example_generates_and_purges() {
    let n = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |req| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Plan::html(&format!("<p>{} {} #{i}</p>\n", req.method, req.path))
    });
    let conf = readme_example(&up.addr());
    let host = server_name(conf.text());
    // the README says the module creates the root's missing directories:
    // nothing else does here
    assert!(!conf.path("generated").exists());
    let run = conf.start();
    let port = run.port();
    let get_page = |uri: &str| get_with(port, uri, &[("Host", &host)]);
    let page = run.path(format!("generated/{}", page_rel("/about/")));

    let first = get_page("/about/");
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.sg_status(), "MISS", "{first}");
    assert_eq!(
        stored_body(&page),
        first.body,
        "the file holds the response"
    );
    let second = get_page("/about/");
    assert_eq!(second.sg_status(), "HIT", "{second}");
    assert_eq!(second.body, first.body);
    assert_eq!(up.hits("/about/"), 1, "the HIT did not reach the upstream");
    // outside the patterns, excluded, with the session cookie: upstream only
    for uri in ["/contact/", "/articles/search/nginx", "/articles/feed.xml"] {
        let r = get_page(uri);
        assert_eq!(r.sg_status(), "BYPASS", "{uri}: {r}");
    }
    let logged_in = get_with(
        port,
        "/about/",
        &[("Host", &host), ("Cookie", "sessionid=s")],
    );
    assert_eq!(logged_in.sg_status(), "BYPASS", "{logged_in}");

    // the purge location, from 127.0.0.1 (its `allow`)
    let reply = method_with(
        port,
        "POST",
        "/_static_gen/purge?uri=/about/",
        &[("Host", &host)],
        b"",
    );
    assert_eq!(reply.status, 200, "{reply}");
    assert!(reply.text().contains(r#""removed":1"#), "{reply}");
    assert!(!page.exists(), "the purge removed {}", page.display());
    assert_eq!(get_page("/about/").sg_status(), "MISS");
    run.assert_no_alerts();
}

/// The Troubleshooting table has a row whose message contains `message`.
fn assert_troubleshooting_row(message: &str) {
    let section = readme_section("Troubleshooting");
    assert!(
        section
            .lines()
            .any(|l| l.starts_with("| `") && l.contains(message)),
        "README.md's Troubleshooting has no row for `{message}`"
    );
}

#[test]
fn without_load_module_nginx_t_says_what_troubleshooting_lists() {
    let conf = readme_example("127.0.0.1:9").replace(LOAD_MODULE, "# load_module forgotten");
    let (ok, out) = conf.config_test();
    assert!(!ok, "nginx -t passed without load_module:\n{out}");
    let message = r#"unknown directive "static_gen""#;
    assert!(out.contains(message), "{out}");
    assert_troubleshooting_row(message);
}

#[test]
fn load_module_twice_nginx_t_says_what_troubleshooting_lists() {
    let conf = readme_example("127.0.0.1:9").replace(
        LOAD_MODULE,
        format!("{LOAD_MODULE}\n# the package's, and one by hand\n{LOAD_MODULE}"),
    );
    let (ok, out) = conf.config_test();
    assert!(!ok, "nginx -t passed with load_module twice:\n{out}");
    let message = r#"module "ngx_http_static_gen_module" is already loaded"#;
    assert!(out.contains(message), "{out}");
    assert_troubleshooting_row(message);
}
