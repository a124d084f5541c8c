//! `static_gen_stats` and `$static_gen_reason`: the counters match the
//! requests sent to several workers, survive a reload, parse as Prometheus
//! text (with the `prometheus_client` parser) and as JSON; the access log
//! says why each request bypassed or was not stored.
mod common;
mod example_conf;

use std::collections::HashMap;
use std::process::Command;

use common::*;
use serde_json::Value;

const CONF: &str = r#"
    log_format reasons "$request_uri $static_gen_status:$static_gen_reason";
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{tmp}}/gen;
        location / {
            static_gen on;
            add_header X-Static-Gen $static_gen_status always;
            access_log {{tmp}}/reasons.log reasons;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location = /_static_gen/purge {
            static_gen_purge;
        }
        location = /_static_gen/stats {
            static_gen_stats;
        }
    }
"#;

/// Pages; `/private/` sets a cookie (never stored).
fn upstream() -> Upstream {
    Upstream::start(|req| {
        let body = format!("<p>{}</p>", req.path);
        let mut headers = vec![("Content-Type", "text/html")];
        if req.path.starts_with("/private/") {
            headers.push(("Set-Cookie", "sessionid=1"));
        }
        Plan::new().write(http_response(200, &headers, body.as_bytes()))
    })
}

/// The samples of a Prometheus text scrape, by name with labels, read by
/// the `prometheus_client` parser from PyPI (in the test venv); None
/// without the venv.
fn parse_prometheus(text: &str) -> Option<HashMap<String, f64>> {
    let venv = example_conf::django::venv()?;
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = String::from_utf8(out.stdout).unwrap();
    Some(
        samples
            .lines()
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').unwrap();
                (name.to_string(), value.parse().unwrap())
            })
            .collect(),
    )
}

/// The counters as JSON.
fn scrape_json(port: u16) -> Value {
    let r = get(port, "/_static_gen/stats?format=json");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    serde_json::from_str(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// The requests are counted in the log phase, after the answer: waits
/// until `want` holds of the JSON counters.
fn counters_reach(port: u16, want: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let reached = wait_until(TIMEOUT, || {
        last = scrape_json(port);
        want(&last)
    });
    assert!(reached, "counters: {last}");
    last
}

#[test]
fn counters_match_the_requests_and_survive_a_reload() {
    let up = upstream();
    let mut nginx = Nginx::new(CONF).var("up", up.port()).workers(2).start();
    let port = nginx.port();

    assert_eq!(get(port, "/a/").sg_status(), "MISS");
    assert!(wait_until(TIMEOUT, || nginx.page("/a/").exists()));
    let page_len = get(port, "/a/").body.len() as u64;
    for _ in 0..3 {
        assert_eq!(get(port, "/a/").sg_status(), "HIT");
    }
    assert_eq!(get(port, "/a/?q=1").sg_status(), "BYPASS");
    let cookie = get_with(port, "/a/", &[("Cookie", "sessionid=abc")]);
    assert_eq!(cookie.sg_status(), "BYPASS");
    assert_eq!(get(port, "/private/").sg_status(), "MISS");
    assert_eq!(post(port, "/_static_gen/purge?uri=/a/", b"").status, 200);

    // every request counted (each in its worker's log phase) before the
    // counts are compared
    let json = counters_reach(port, |j| {
        j["requests"]["HIT"] == 4 && j["requests"]["BYPASS"] == 2 && j["requests"]["MISS"] == 2
    });
    assert_eq!(json["bypasses"]["args"], 1, "{json}");
    assert_eq!(json["bypasses"]["cookie"], 1, "{json}");
    assert_eq!(json["not_stored"]["set_cookie"], 1, "{json}");
    assert_eq!(json["stored_pages"], 1, "{json}");
    assert_eq!(json["stored_bytes"], page_len, "{json}");
    assert_eq!(json["served_bytes"]["identity"], 4 * page_len, "{json}");
    assert_eq!(json["purges"]["uri"]["hard"], 1, "{json}");

    let text = get(port, "/_static_gen/stats");
    assert_eq!(text.status, 200);
    assert!(text
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    if let Some(samples) = parse_prometheus(&text.text()) {
        let sample = |name: &str| samples.get(name).copied();
        assert_eq!(
            sample("static_gen_requests_total{status=\"HIT\"}"),
            Some(4.0)
        );
        assert_eq!(
            sample("static_gen_bypasses_total{reason=\"args\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample("static_gen_not_stored_total{reason=\"set_cookie\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample("static_gen_purges_total{mode=\"hard\",scope=\"uri\"}"),
            Some(1.0)
        );
    } else {
        eprintln!("skipped: the Prometheus parser (no test venv)");
    }

    // the zone is kept by a reload: the counts go on
    nginx.reload().unwrap();
    assert_eq!(get(port, "/b/").sg_status(), "MISS");
    counters_reach(port, |j| {
        j["requests"]["MISS"] == 3 && j["requests"]["HIT"] == 4
    });

    // the access log says why, per request
    nginx.stop();
    let log = std::fs::read_to_string(nginx.path("reasons.log")).unwrap();
    for line in [
        "/a/ MISS:-",
        "/a/ HIT:-",
        "/a/?q=1 BYPASS:args",
        "/private/ MISS:set_cookie",
    ] {
        assert!(log.lines().any(|l| l == line), "{line:?} in\n{log}");
    }
    assert!(
        log.lines().filter(|l| *l == "/a/ BYPASS:cookie").count() == 1,
        "{log}"
    );
}

/// The stats location answers GET and HEAD only.
#[test]
fn stats_answers_get_only() {
    let up = upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    assert_eq!(post(nginx.port(), "/_static_gen/stats", b"").status, 405);
    assert_eq!(head(nginx.port(), "/_static_gen/stats").status, 200);
}

/// Conditional and range headers do not apply to the counters: they are
/// always sent whole (nginx's not-modified filter answered
/// `If-None-Match: *` with an empty 304).
#[test]
fn conditional_headers_do_not_change_the_reply() {
    let up = upstream();
    let nginx = Nginx::new(CONF).var("up", up.port()).start();
    for header in CONDITIONAL_HEADERS {
        for uri in ["/_static_gen/stats", "/_static_gen/stats?format=json"] {
            let r = get_with(nginx.port(), uri, &[*header]);
            assert_eq!(r.status, 200, "{header:?} {uri}: {r}");
            assert!(r.text().contains("requests"), "{header:?} {uri}: {r}");
        }
    }
}
