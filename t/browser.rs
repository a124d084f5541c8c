//! A real browser (issue 13): Debian's headless Chromium, driven by
//! playwright-core (`t/browser/load.mjs`), loads an article of the Django
//! blog (`t/django/`, behind `nginx-conf/django-gunicorn.conf`, as in
//! `t/e2e_django.rs`) over HTTPS and HTTP/2, with a self-signed certificate
//! the test makes with the openssl command (which Chromium accepts by its
//! key, `--ignore-certificate-errors-spki-list`: with certificate errors
//! merely ignored it caches nothing, and would not revalidate). Twice: the first visitor's load
//! is a MISS that nginx stores; once the page's compressed variants are in
//! its file, a second visitor's load is a HIT of the variant Chromium's
//! `Accept-Encoding` picks (`br` or `zstd`), which it decodes and renders:
//! a screenshot and the page's title; a reload revalidates it (a 304 for
//! the variant's own ETag). Then the comment form of that
//! generated page works in the browser: its script fetches a CSRF token
//! from /csrf/ and posts to the article's URL, and the comment shows on the
//! article page.
//!
//! Where the proof comes from: the response headers Chromium got
//! (`X-Static-Gen`, `Content-Encoding`, the protocol of the navigation) and
//! nginx's access log, written with a `log_format` of `$static_gen_status`,
//! `$sent_http_content_encoding`, `$server_protocol`, `$http2` and
//! `$http_if_none_match`.
//!
//! Skips (prints "skipped: ..." and passes) without Chromium
//! (`/usr/bin/chromium`, or `STATIC_GEN_CHROMIUM`), node 20+ and npm
//! (`ci/browser-env` installs playwright-core into target/browser-node), or
//! the Django venv (`ci/django-env`); with `STATIC_GEN_REQUIRE_BROWSER=1`
//! (ci/test) these fail instead.
mod common;
mod example_conf;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::*;
use example_conf::django::*;

/// What the access log records of each request (`browser` format).
const LOG_FORMAT: &str = "log_format browser '$request_method $request_uri $status \
     $static_gen_status \"$sent_http_content_encoding\" $server_protocol \"$http2\" $body_bytes_sent \"$http_if_none_match\" \"$http_if_modified_since\"';";

/// How long one step of the browser script may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Says why the test cannot run: a skip, or a failure under
/// `STATIC_GEN_REQUIRE_BROWSER=1`.
fn skip(why: &str) {
    if std::env::var_os("STATIC_GEN_REQUIRE_BROWSER").is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("STATIC_GEN_REQUIRE_BROWSER is set, but {why}");
    }
    eprintln!("skipped: {why}");
}

/// Debian's Chromium (`apt-get install chromium`, `ci/deps browser`), or
/// `STATIC_GEN_CHROMIUM`, if it runs.
fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var_os("STATIC_GEN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let out = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "no Chromium at {} ({e}): apt-get install chromium (ci/deps browser)",
                path.display()
            )
        })?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !version.contains("Chromium") {
        return Err(format!(
            "{} --version failed ({}): {version}{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!("{}", version.trim());
    Ok(path)
}

/// The directory with playwright-core and `load.mjs`, from `ci/browser-env`
/// (node 20+ and npm needed).
fn browser_env() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(repo().join("ci/browser-env"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ci/browser-env: {e}"))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && dir.join("node_modules/playwright-core").is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "ci/browser-env failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A self-signed certificate for localhost and 127.0.0.1 (EC P-256, two
/// days), made with the openssl command in `dir`: (certificate, key).
fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The base64 SHA-256 of a certificate's public key (SubjectPublicKeyInfo),
/// for Chromium's `--ignore-certificate-errors-spki-list`.
fn spki_hash(cert: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | openssl base64 -A",
        )
        .arg("sh")
        .arg(cert)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && hash.len() == 44,
        "SPKI hash: {hash} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hash
}

/// `a.b.c` in a report: a member path, Null where missing.
trait At {
    fn at(&self, path: &str) -> &Value;
}

impl At for Value {
    fn at(&self, path: &str) -> &Value {
        path.split('.')
            .try_fold(self, |v, key| v.get(key))
            .unwrap_or(&Value::Null)
    }
}

/// `node load.mjs` in its own process group; its reports, one JSON object
/// a line, arrive on a channel. Dropping it stops it (playwright-core then
/// closes Chromium) and prints its stderr if the test failed.
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    reports: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Script {
    fn start(dir: &Path, options: &str, log: PathBuf, tmp: &Path) -> Script {
        use std::os::unix::process::CommandExt;
        let err = fs::File::create(&log).unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("load.mjs"))
            .arg(options)
            .current_dir(dir)
            // playwright-core's temporary Chromium profiles (a fresh
            // --user-data-dir per launch) go to the test's directory
            .env("TMPDIR", tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("run node");
        let stdout = child.stdout.take().unwrap();
        let (tx, reports) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Script {
            stdin: child.stdin.take(),
            child,
            reports,
            log,
        }
    }

    /// The next report, which must be `step`.
    fn report(&mut self, step: &str) -> Value {
        let line = self.reports.recv_timeout(STEP_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "no {step} report from the browser script ({e}); its stderr:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        let report = serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(
            report.at("step").as_str(),
            Some(step),
            "the browser script says: {}\n{}",
            report.at("error").as_str().unwrap_or(&line),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        report
    }

    fn go_on(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the script to exit (it closes the browser first).
    fn finish(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the browser script exited with {status}:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the browser script does not exit"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        drop(self.stdin.take());
        stop_process(&mut self.child, libc::SIGTERM);
        if thread::panicking() {
            eprintln!(
                "--- browser script stderr ({}) ---\n{}",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// One line of the `browser` access log format.
#[derive(Debug)]
struct LogLine {
    method: String,
    uri: String,
    status: u16,
    static_gen: String,
    encoding: String,
    protocol: String,
    http2: String,
    if_none_match: String,
}

fn access_log(site: &Site) -> Vec<LogLine> {
    let text = fs::read_to_string(site.nginx.path("blog.access.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let quoted: Vec<&str> = l.split('"').collect();
            let words: Vec<&str> = quoted[0].split_whitespace().collect();
            let after: Vec<&str> = quoted[2].split_whitespace().collect();
            LogLine {
                method: words[0].into(),
                uri: words[1].into(),
                status: words[2].parse().unwrap(),
                static_gen: words[3].into(),
                encoding: quoted[1].into(),
                protocol: after[0].into(),
                http2: quoted[3].into(),
                if_none_match: quoted[5].into(),
            }
        })
        .collect()
}

/// A page file's header, as stored (`static_gen 2`, `identity:`, `variant:`).
fn stored_header(file: &[u8]) -> String {
    let end = file
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("page header");
    String::from_utf8_lossy(&file[..end]).into_owned()
}

/// The `<title>` of a page.
fn title_in(html: &str) -> String {
    let start = html.find("<title>").expect("<title>") + "<title>".len();
    let end = html[start..].find("</title>").expect("</title>") + start;
    unescape(&html[start..end])
}

/// Width and height of a PNG file (its IHDR chunk).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// A response the page got, from a report's `responses`.
fn responses_of<'a>(report: &'a Value, method: &str, path: &str) -> Vec<&'a Value> {
    report
        .at("responses")
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|r| {
            r.at("method").as_str() == Some(method)
                && r.at("url")
                    .as_str()
                    .and_then(|u| u.split_once("://"))
                    .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                    .is_some_and(|p| p.split('#').next() == Some(path))
        })
        .collect()
}

#[test]
fn chromium_gets_a_stored_variant_over_http2_and_posts_a_comment() {
    let started = Instant::now();
    let Some(venv) = venv() else {
        return skip(
            "the Django virtualenv could not be created (ci/django-env: no access to PyPI?)",
        );
    };
    let chromium = match chromium() {
        Ok(c) => c,
        Err(why) => return skip(&why),
    };
    let node_dir = match browser_env() {
        Ok(d) => d,
        Err(why) => return skip(&why),
    };

    // the demo's configuration, with an HTTPS (HTTP/2) listen beside the
    // plain one (which Django's purges use), and an access log that says
    // how each request was served
    let conf = site_conf();
    let (cert, key) = self_signed_certificate(&conf.path("tls"));
    let conf = conf
        .https(&cert, &key)
        .http_directives(LOG_FORMAT)
        .replace("blog.access.log;", "blog.access.log browser;");
    let site = Site::start_with(venv, conf);
    // the demo purges by tag: the comment's purge needs it
    site.require_purge_by_tag();
    let https = site.nginx.https_port().unwrap();

    // an article (the home page, over plain HTTP, links them)
    let home = site.get("/", &Jar::default());
    assert_eq!(home.status, 200, "{home}");
    let article = article_links(&home.text())[0].clone();
    // `localhost` is one of the server's names (see example_conf): its pages
    // are stored
    let url = format!("https://localhost:{https}{article}");
    let screenshot = site.nginx.path("second-load.png");
    let comment = "Read in a real browser, from a stored variant.";
    let options = json!({
        "chromium": chromium,
        "spki": spki_hash(&cert),
        "url": url,
        "screenshot": screenshot,
        "name": "Chromium",
        "body": comment,
    })
    .to_string();
    // a short path: Chromium's profile holds a unix socket (108 bytes)
    let profiles = TempDir::new("chromium");
    let mut script = Script::start(
        &node_dir,
        &options,
        site.nginx.path("browser-script.log"),
        profiles.path(),
    );

    // 1. the first visitor: Django renders, nginx stores, over HTTP/2
    let first = script.report("first");
    let doc = first.at("document");
    assert_eq!(doc.at("status").as_f64(), Some(200.0), "{first:?}");
    assert_eq!(
        doc.at("headers.x-static-gen").as_str(),
        Some("MISS"),
        "{first:?}"
    );
    assert_eq!(doc.at("protocol").as_str(), Some("h2"), "{first:?}");
    let accept = doc.at("accept_encoding").as_str().unwrap_or("").to_string();
    eprintln!("Chromium's Accept-Encoding: {accept}");
    assert!(
        accept.contains("br"),
        "Chromium's Accept-Encoding: {accept}"
    );
    // the variants are made in the background after the MISS stored the page
    let page = site.page(&article);
    assert!(
        wait_until(Duration::from_secs(30), || fs::read(&page)
            .is_ok_and(|f| f.starts_with(b"static_gen 2\n"))),
        "no variants made for {article}:\n{}",
        site.nginx.error_log()
    );
    let stored = fs::read(&page).unwrap();
    let raw_head = stored_header(&stored);
    let variants: Vec<String> = raw_head
        .lines()
        .filter_map(|l| l.strip_prefix("variant: "))
        .filter_map(|v| v.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let (_, identity) = split_page(&stored);
    let html = String::from_utf8(identity).unwrap();
    let title = title_in(&html);

    // 2. a second visitor: a HIT of a stored variant, decoded and rendered
    script.go_on();
    let second = script.report("second");
    let doc = second.at("document");
    assert_eq!(doc.at("status").as_f64(), Some(200.0), "{second:?}");
    assert_eq!(
        doc.at("headers.x-static-gen").as_str(),
        Some("HIT"),
        "{second:?}"
    );
    let encoding = doc
        .at("headers.content-encoding")
        .as_str()
        .unwrap_or("identity")
        .to_string();
    eprintln!(
        "second load: X-Static-Gen HIT, Content-Encoding {encoding} (stored variants: {variants:?})"
    );
    assert!(
        encoding == "br" || encoding == "zstd",
        "Content-Encoding {encoding}, stored {variants:?}: {second:?}"
    );
    assert!(accept.contains(&encoding), "{encoding} was not asked for");
    assert!(variants.contains(&encoding), "{raw_head}");
    assert_eq!(
        doc.at("headers.vary").as_str(),
        Some("Accept-Encoding"),
        "{second:?}"
    );
    assert_eq!(doc.at("protocol").as_str(), Some("h2"), "{second:?}");
    // the page Chromium rendered is the stored one
    assert_eq!(doc.at("title").as_str(), Some(title.as_str()), "{second:?}");
    let h1 = second.at("rendered.h1").as_str().unwrap();
    assert_eq!(title, format!("{h1} - static_gen blog"));
    let count: usize = second
        .at("rendered.comment_count")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, comment_count(&html));
    let png = fs::read(&screenshot).expect("the screenshot");
    let (width, height) = png_size(&png);
    assert!(
        width >= 800 && height >= 600 && png.len() > 20_000,
        "screenshot {width}x{height}, {} bytes",
        png.len()
    );
    eprintln!(
        "screenshot: {} ({width}x{height}; STATIC_GEN_KEEP=1 keeps it)",
        screenshot.display()
    );

    // a reload revalidates with the variant's own ETag (a 304: see the
    // access log below)
    let etag = doc.at("headers.etag").as_str().unwrap().to_string();
    assert!(etag.ends_with(&format!("-{encoding}\"")), "{etag}");
    let sent = second.at("reload.sent");
    assert_eq!(
        sent.at("if-none-match").as_str(),
        Some(etag.as_str()),
        "the reload did not revalidate: {sent:?}"
    );
    assert_eq!(
        second.at("reload.headers.etag").as_str(),
        Some(etag.as_str()),
        "{second:?}"
    );
    // 3. the comment form of the generated page, in the browser: a token
    // from /csrf/, a POST to the article's URL (Django's CSRF check), then
    // the article again (purged by the comment: Django renders it)
    let csrf = responses_of(&second, "GET", "/csrf/");
    assert_eq!(csrf.len(), 1, "{second:?}");
    assert_eq!(csrf[0].at("status").as_f64(), Some(200.0), "{second:?}");
    assert_eq!(csrf[0].at("static_gen").as_str(), Some("BYPASS"));
    let posts = responses_of(&second, "POST", &article);
    assert_eq!(posts.len(), 1, "{second:?}");
    assert_eq!(
        posts[0].at("status").as_f64(),
        Some(303.0),
        "the comment was refused: {second:?}\n{}",
        site.gunicorn.log()
    );
    assert_eq!(posts[0].at("static_gen").as_str(), Some("BYPASS"));
    let after = second.at("after_comment");
    let at = after.at("url").as_str().unwrap();
    assert!(
        at.starts_with(&url) && at[url.len()..].starts_with("#comment-"),
        "{at}"
    );
    assert_eq!(after.at("title").as_str(), Some(title.as_str()));
    assert_eq!(
        after.at("comment_count").as_str(),
        Some((count + 1).to_string().as_str())
    );
    assert!(
        after
            .at("comments")
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .any(|c| c
                .as_str()
                .is_some_and(|c| c.contains(comment) && c.contains("Chromium"))),
        "{after:?}"
    );
    let gets = responses_of(&second, "GET", &article);
    assert_eq!(gets.len(), 3, "load, reload, after the comment: {second:?}");
    assert_eq!(
        gets[2].at("static_gen").as_str(),
        Some("MISS"),
        "{second:?}"
    );
    script.finish();

    // nginx's own account: the first load a MISS, the second a HIT of the
    // variant, the reload a 304 for the variant's ETag, all over HTTP/2 with
    // TLS; Django saw the article's GET once before the comment
    let log = access_log(&site);
    let article_lines: Vec<&LogLine> = log
        .iter()
        .filter(|l| l.uri == article && l.protocol == "HTTP/2.0")
        .collect();
    let summary: Vec<String> = article_lines
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {} {:?} {} {:?} if-none-match: {}",
                l.method,
                l.uri,
                l.status,
                l.static_gen,
                l.encoding,
                l.protocol,
                l.http2,
                l.if_none_match
            )
        })
        .collect();
    eprintln!("access log (article, HTTP/2):\n  {}", summary.join("\n  "));
    let kinds: Vec<(&str, u16, &str)> = article_lines
        .iter()
        .map(|l| (l.method.as_str(), l.status, l.static_gen.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("GET", 200, "MISS"),
            ("GET", 200, "HIT"),
            ("GET", 304, "HIT"),
            ("POST", 303, "BYPASS"),
            ("GET", 200, "MISS")
        ],
        "{summary:?}"
    );
    assert!(article_lines.iter().all(|l| l.http2 == "h2"), "{summary:?}");
    assert_eq!(article_lines[1].encoding, encoding, "{summary:?}");
    assert_eq!(article_lines[0].encoding, "-", "{summary:?}");
    // (nginx escapes the quotes of the ETag in the log)
    assert_eq!(
        article_lines[2].if_none_match,
        etag.replace('"', "\\x22"),
        "{summary:?}"
    );
    assert_eq!(site.django_saw(&article), 3, "GET (MISS), POST, GET (MISS)");
    site.nginx.assert_no_alerts();
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
}
