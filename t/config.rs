//! Configuration errors are caught by `nginx -t`, naming the directive; a
//! valid configuration passes.
mod common;

use common::*;

fn server(location_body: &str) -> String {
    format!(
        "server {{ listen 127.0.0.1:{{{{port}}}}; server_name localhost; \
         location / {{ {location_body} }} }}"
    )
}

/// `nginx -t` must fail and its output contain every one of `expected`.
fn rejected(location_body: &str, expected: &[&str]) {
    let (ok, output) = config_test(&server(location_body));
    assert!(!ok, "accepted: {location_body}\n{output}");
    for text in expected {
        assert!(output.contains(text), "missing {text:?} in:\n{output}");
    }
}

#[test]
fn valid_configuration_passes() {
    let (ok, output) = config_test(&format!(
        "static_gen_session_cookie sessionid; {} server {{ listen 127.0.0.1:{{{{port2}}}}; \
         location = /purge {{ static_gen_purge; static_gen_root {{{{tmp}}}}/gen; }} }}",
        server(
            "static_gen on; static_gen_root gen; static_gen_pattern ^/$ ^/(a|b); \
             static_gen_exclude \\.xml$; static_gen_session_cookie wordpress_logged_in_* x; \
             proxy_pass http://127.0.0.1:1;"
        )
    ));
    assert!(ok, "{output}");
}

#[test]
fn invalid_flag_value() {
    rejected("static_gen maybe;", &["\"static_gen\"", "maybe"]);
}

#[test]
fn invalid_regular_expressions() {
    rejected(
        "static_gen on; static_gen_pattern ^/(articles;",
        &["static_gen_pattern", "^/(articles"],
    );
    rejected(
        "static_gen on; static_gen_exclude [z-a];",
        &["static_gen_exclude", "[z-a]"],
    );
    rejected(
        "static_gen_pattern ^/ok (;",
        &["static_gen_pattern", "\"(\""],
    );
}

#[test]
fn invalid_cookie_names() {
    rejected(
        "static_gen_session_cookie \"a b\";",
        &["static_gen_session_cookie", "a b"],
    );
    rejected(
        "static_gen_session_cookie *;",
        &["static_gen_session_cookie"],
    );
}

#[test]
fn purge_needs_a_root() {
    rejected(
        "static_gen_purge;",
        &["static_gen_purge", "static_gen_root"],
    );
}

#[test]
fn root_with_variables_or_alias() {
    let (ok, output) = config_test(&server("static_gen on; static_gen_root /srv/$host;"));
    assert!(ok, "variables are allowed in static_gen_root: {output}");
    // nginx names the variable; the module names its directive and place
    rejected(
        "static_gen on; static_gen_root /srv/$no_such_var;",
        &[
            "\"static_gen_root\" uses the unknown variable \"$no_such_var\" in",
            "nginx.conf:",
            "unknown \"no_such_var\" variable",
        ],
    );
    rejected(
        "static_gen on; static_gen_root /srv/x; static_gen_no_store $http_x $no_such_var;",
        &["\"static_gen_no_store\" uses the unknown variable \"$no_such_var\""],
    );
    rejected(
        "static_gen on; root /srv/$host;",
        &["\"static_gen\"", "static_gen_root"],
    );
    rejected(
        "static_gen on; alias /srv/x/;",
        &["\"static_gen\"", "alias"],
    );
}

#[test]
fn storage_directives() {
    let (ok, output) = config_test(&server(
        "static_gen on; static_gen_root /tmp/x; static_gen_types text/html application/json; \
         static_gen_max_size 1m; static_gen_access user:rw group:r; \
         static_gen_bypass $http_x_preview $arg_nocache; static_gen_no_store $cookie_csrftoken;",
    ));
    assert!(ok, "{output}");
    assert!(!output.contains("unknown variable"), "{output}");
    rejected(
        "static_gen_types \"text/html;charset=utf-8\";",
        &["static_gen_types"],
    );
    rejected("static_gen_types html;", &["static_gen_types", "\"html\""]);
    rejected(
        "static_gen_max_size lots;",
        &["static_gen_max_size", "invalid value"],
    );
    rejected(
        "static_gen_access user:rwx;",
        &["static_gen_access", "user:rwx"],
    );
    rejected(
        "static_gen_access all:r user:rw group:r other:r;",
        &["static_gen_access", "invalid number of arguments"],
    );
    rejected(
        "static_gen_bypass;",
        &["static_gen_bypass", "invalid number of arguments"],
    );
}

#[test]
fn lock_and_stale_directives() {
    let (ok, output) = config_test(&server(
        "static_gen on; static_gen_root /tmp/x; static_gen_lock on; \
         static_gen_lock_timeout 2s; static_gen_stale 30s; static_gen_stale_updates 4;",
    ));
    assert!(ok, "{output}");
    rejected("static_gen_lock maybe;", &["static_gen_lock", "maybe"]);
    rejected(
        "static_gen_lock_timeout soon;",
        &["static_gen_lock_timeout", "invalid value"],
    );
    rejected(
        "static_gen_stale forever;",
        &["static_gen_stale", "invalid value"],
    );
    rejected(
        "static_gen_stale_updates 0;",
        &[
            "static_gen_stale_updates",
            "\"static_gen_stale_updates\" must be at least 1",
        ],
    );
    rejected(
        "static_gen_stale_updates many;",
        &["static_gen_stale_updates", "invalid number"],
    );
}

#[test]
fn open_cache_directive() {
    let with = |http: &str| config_test(&format!("{http} {}", server("static_gen on;")));
    for good in [
        "static_gen_open_cache off;",
        "static_gen_open_cache max=10;",
        "static_gen_open_cache max=5000 inactive=20s valid=1m;",
        "static_gen_open_cache max=5000 memory=64m;",
        "static_gen_open_cache max=5000 memory=0;",
    ] {
        let (ok, output) = with(good);
        assert!(ok, "{good}\n{output}");
    }
    for (bad, expected) in [
        ("static_gen_open_cache on;", "\"on\""),
        ("static_gen_open_cache max=0;", "invalid value \"max=0\""),
        (
            "static_gen_open_cache max=9 inactive=soon;",
            "invalid value \"inactive=soon\"",
        ),
        ("static_gen_open_cache max=9 size=1;", "\"size=1\""),
        (
            "static_gen_open_cache max=9 memory=lots;",
            "invalid value \"memory=lots\"",
        ),
        (
            "static_gen_open_cache max=1; static_gen_open_cache max=2;",
            "duplicate",
        ),
    ] {
        let (ok, output) = with(bad);
        assert!(!ok, "accepted: {bad}");
        assert!(output.contains("static_gen_open_cache"), "{output}");
        assert!(output.contains(expected), "{expected} not in {output}");
    }
    rejected(
        "static_gen_open_cache max=1;",
        &["\"static_gen_open_cache\" directive is not allowed here"],
    );
}

#[test]
fn duplicates_and_wrong_places() {
    rejected(
        "static_gen_root /a; static_gen_root /b;",
        &["static_gen_root", "duplicate"],
    );
    rejected(
        "static_gen on; static_gen on;",
        &["static_gen", "duplicate"],
    );
    let (ok, output) = config_test("static_gen_purge; server { listen 127.0.0.1:{{port}}; }");
    assert!(!ok);
    assert!(
        output.contains("\"static_gen_purge\" directive is not allowed here"),
        "{output}"
    );
    rejected(
        "static_gen on off;",
        &["static_gen", "invalid number of arguments"],
    );
}

/// What a newcomer trips over says so at `nginx -t` (warnings: the
/// configuration is valid).
#[test]
fn risky_set_ups_are_named_at_nginx_t() {
    let warned = |location_body: &str, expected: &[&str]| {
        let (ok, output) = config_test(&server(location_body));
        assert!(ok, "{location_body}: {output}");
        for text in expected {
            assert!(output.contains(text), "missing {text:?} in:\n{output}");
        }
    };
    // a pattern line that lost its `;` swallowed the next directive
    warned(
        "static_gen on; static_gen_root /tmp/x; \
         static_gen_exclude ^/search static_gen_session_cookie sessionid;",
        &[
            "[warn]",
            "\"static_gen_session_cookie\" looks like a directive name",
        ],
    );
    // no static_gen_root: pages go to the location's root
    warned(
        "static_gen on; root /tmp/docroot;",
        &["[warn]", "without \"static_gen_root\"", "/tmp/docroot"],
    );
    let (ok, output) = config_test(
        "server { listen 127.0.0.1:{{port}}; location / { static_gen on; \
         static_gen_root /tmp/x; } }",
    );
    assert!(ok, "{output}");
    assert!(output.contains("without a server_name"), "{output}");
}

/// A `static_gen_hosts` value that names no host would make every request
/// bypass, silently: refused.
#[test]
fn empty_host_names_are_refused() {
    for value in ["\"\"", "_", "example.org \"\""] {
        rejected(
            &format!("static_gen on; static_gen_root /tmp/x; static_gen_hosts {value};"),
            &["\"static_gen_hosts\"", "no host"],
        );
    }
    let (ok, output) = config_test(&server(
        "static_gen on; static_gen_root /tmp/x; static_gen_hosts example.org .example.net;",
    ));
    assert!(ok, "{output}");
}

/// nginx's own message about an invalid variable does not say which
/// directive; the module's next line does, for every directive that takes
/// variables.
#[test]
fn variable_errors_name_the_directive() {
    for directive in [
        "static_gen_bypass",
        "static_gen_no_store",
        "static_gen_root",
    ] {
        for value in ["$", "/srv/$", "${x", "$;"] {
            let body = format!("static_gen on; static_gen_root /tmp/y; {directive} {value};")
                .replace("static_gen_root /tmp/y; static_gen_root", "static_gen_root");
            let (ok, output) = config_test(&server(&body));
            assert!(!ok, "accepted: {body}\n{output}");
            assert!(
                output.contains(&format!("\"{directive}\": invalid value")),
                "{body}: the directive is not named in:\n{output}"
            );
        }
    }
}

/// The warning about a server without a name cites that server's own file
/// and line (it cited the end of the `http` block, where nginx merges).
#[test]
fn a_server_without_a_name_is_cited_at_its_own_line() {
    let nginx = Nginx::new(
        "server { listen 127.0.0.1:{{port}}; server_name localhost; }\n\
         include {{tmp}}/site.conf;\n\
         server { listen 127.0.0.1:{{port2}}; server_name example.org; }\n",
    );
    let site = nginx.tmp().join("site.conf");
    std::fs::write(
        &site,
        "\n\nserver {\n    listen 127.0.0.1:1;\n    location / { static_gen on; \
         static_gen_root /tmp/x; }\n}\n",
    )
    .unwrap();
    let (ok, output) = nginx.config_test();
    assert!(ok, "{output}");
    let line = output
        .lines()
        .find(|l| l.contains("without a server_name"))
        .unwrap_or_else(|| panic!("no warning in:\n{output}"));
    assert!(
        line.ends_with(&format!(" in {}:3", site.display())),
        "not cited at the server's line: {line}"
    );
}

/// `nginx -t` warns when the worker user cannot create or write a
/// `static_gen_root` (every request would be a MISS, the reason only in the
/// error log), naming the directive, the path, the user and the place.
#[test]
fn a_root_the_worker_user_cannot_write_is_named_at_nginx_t() {
    if !is_root() {
        eprintln!("skipped: needs root (the user directive)");
        return;
    }
    use std::os::unix::fs::{chown, PermissionsExt};
    let test = |user: &str, root: &str, prepare: &dyn Fn(&std::path::Path)| {
        let nginx = Nginx::new(&server(&format!(
            "static_gen on; static_gen_root {{{{tmp}}}}/{root};"
        )))
        .user(user);
        prepare(nginx.tmp());
        let tmp = nginx.tmp().to_owned();
        let (ok, output) = nginx.config_test();
        assert!(ok, "a warning, not an error: {output}");
        (tmp, output)
    };
    let nothing = |_: &std::path::Path| {};
    // a missing root under a directory only root may write
    let (tmp, output) = test("nobody nogroup", "gen", &nothing);
    assert!(
        output.contains(&format!(
            "[warn] \"static_gen_root\" \"{}/gen\": the worker user \"nobody\" cannot create it: \
             no write permission on \"{}\"",
            tmp.display(),
            tmp.display()
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!(" in {}/nginx.conf:", tmp.display())),
        "{output}"
    );
    // an existing root the user does not own
    let (tmp, output) = test("nobody nogroup", "gen", &|tmp| {
        std::fs::create_dir(tmp.join("gen")).unwrap();
    });
    assert!(
        output.contains(&format!(
            "\"{}/gen\": the worker user \"nobody\" cannot write it",
            tmp.display()
        )),
        "{output}"
    );
    // the user's own root, and root's: nothing to say
    let (_, output) = test("nobody nogroup", "gen", &|tmp| {
        std::fs::create_dir(tmp.join("gen")).unwrap();
        chown(tmp.join("gen"), Some(65534), Some(65534)).unwrap();
    });
    assert!(!output.contains("the worker user"), "{output}");
    let (_, output) = test("root", "gen", &nothing);
    assert!(!output.contains("the worker user"), "{output}");
    // a group the user belongs to may write the parent
    let (_, output) = test("nobody nogroup", "site/gen", &|tmp| {
        std::fs::create_dir(tmp.join("site")).unwrap();
        std::fs::set_permissions(tmp.join("site"), std::fs::Permissions::from_mode(0o775)).unwrap();
        chown(tmp.join("site"), Some(0), Some(65534)).unwrap();
    });
    assert!(!output.contains("the worker user"), "{output}");
}
