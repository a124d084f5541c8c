//! `fastcgi_pass` to a real FastCGI server: Debian's php-fpm, started by the
//! test with its own configuration, serving a PHP page. The module must store
//! what PHP rendered exactly (including bodies larger than the FastCGI
//! buffers, which reach the filter from nginx's temporary files), serve it
//! back with PHP's `Content-Type`, and never store a page that sets a cookie.
//!
//! Skipped, with a message, when no php-fpm binary is installed (`ci/deps`
//! installs the `php-fpm` package).
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const CONF: &str = r#"
    server {
        # a small send buffer: a client that does not read makes nginx keep
        # the FastCGI response in its temporary file
        listen 127.0.0.1:{{port}} sndbuf=16k;
        server_name localhost;
        location / {
            static_gen on;
            static_gen_root {{tmp}}/gen;
            add_header X-Static-Gen $static_gen_status always;
            fastcgi_pass 127.0.0.1:{{fpm}};
            fastcgi_buffer_size 4k;
            fastcgi_buffers 4 4k;
            fastcgi_busy_buffers_size 8k;
            fastcgi_param SCRIPT_FILENAME {{script}};
            fastcgi_param SCRIPT_NAME /app.php;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param SERVER_PORT $server_port;
        }
    }
"#;

/// The application. Every execution takes the next number from a counter
/// file (so the test knows how often PHP ran) and prints it with the time,
/// which makes every rendering unique.
const APP_PHP: &str = r#"<?php
function next_request_number() {
    $f = fopen(__DIR__ . '/counter', 'c+');
    flock($f, LOCK_EX);
    $n = (int) stream_get_contents($f) + 1;
    ftruncate($f, 0);
    rewind($f);
    fwrite($f, (string) $n);
    fflush($f);
    flock($f, LOCK_UN);
    fclose($f);
    return $n;
}
$id = sprintf('#%d at %.6f', next_request_number(), microtime(true));
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
header('Content-Type: text/html; charset=utf-8');
switch ($path) {
case '/cookie':
    setcookie('theme', 'dark');
    echo "<!doctype html>\n<p>cookie page $id</p>\n";
    break;
case '/big':
    echo "<!doctype html>\n<p>big page $id</p>\n";
    for ($i = 0; $i < 7000; $i++) {
        printf("<p>line %05d of a large page rendered by php %s</p>\n", $i, $id);
    }
    break;
default:
    echo "<!doctype html>\n<title>php</title>\n<p>", $_SERVER['REQUEST_METHOD'], ' ',
        htmlspecialchars($path), " café $id</p>\n";
    $input = file_get_contents('php://input');
    if ($input !== '') {
        echo '<p>posted: ', htmlspecialchars($input), "</p>\n";
    }
}
"#;

/// php-fpm serving [`APP_PHP`] from its own temp dir.
struct PhpApp {
    // stopped before its directory is removed: fields drop in this order
    fpm: PhpFpm,
    dir: TempDir,
}

impl PhpApp {
    /// Starts php-fpm, or returns `None` (after saying so) when there is none.
    fn start() -> Option<PhpApp> {
        let binary = php_fpm_or_skip()?;
        let dir = TempDir::new("php-fpm");
        dir.write("app.php", APP_PHP);
        let fpm = PhpFpm::start(&binary, dir.path(), PhpFpmListen::LoopbackPort);
        Some(PhpApp { fpm, dir })
    }

    fn script(&self) -> PathBuf {
        self.dir.join("app.php")
    }

    /// How many times PHP ran the script.
    fn executions(&self) -> usize {
        fs::read_to_string(self.dir.join("counter"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn start_nginx(php: &PhpApp) -> NginxHandle {
    Nginx::new(CONF)
        .var("fpm", php.fpm.port())
        .var("script", php.script().display())
        .start()
}

/// The page file's bytes once it appears.
fn stored(path: &Path) -> Vec<u8> {
    assert!(
        wait_until(TIMEOUT, || path.exists()),
        "{} was not stored",
        path.display()
    );
    fs::read(path).unwrap()
}

#[test]
fn php_page_is_stored_and_served_back_exactly() {
    let Some(php) = PhpApp::start() else { return };
    let nginx = start_nginx(&php);
    let port = nginx.port();

    let first = get(port, "/articles/hello/");
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.sg_status(), "MISS", "{first}");
    assert_eq!(
        first.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        first.text().contains("<p>GET /articles/hello/ café #1 at "),
        "not PHP's page: {first}"
    );
    assert_eq!(php.executions(), 1);

    let file = stored(&nginx.page("/articles/hello/"));
    let (header, body) = split_page(&file);
    assert_eq!(
        header,
        "static_gen 1\ncontent-type: text/html; charset=utf-8\nuri: /articles/hello/\n\n"
    );
    assert_eq!(body, first.body, "the page file holds exactly PHP's output");

    let second = get(port, "/articles/hello/");
    assert_eq!(second.status, 200, "{second}");
    assert_eq!(second.sg_status(), "HIT", "{second}");
    assert_eq!(second.body, first.body);
    assert_eq!(
        second.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        second.header("Content-Length"),
        Some(first.body.len().to_string().as_str())
    );
    assert_eq!(php.executions(), 1, "a HIT does not run PHP");
    assert!(
        temp_files(&nginx.path("gen")).is_empty(),
        "{:?}",
        temp_files(&nginx.path("gen"))
    );
    nginx.assert_no_alerts();
}

#[test]
fn php_page_that_sets_a_cookie_is_not_stored() {
    let Some(php) = PhpApp::start() else { return };
    let nginx = start_nginx(&php);
    let port = nginx.port();

    let first = get(port, "/cookie");
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.sg_status(), "MISS", "{first}");
    assert!(
        first
            .header("Set-Cookie")
            .is_some_and(|c| c.starts_with("theme=dark")),
        "{first}"
    );
    assert!(first.text().contains("cookie page #1 "), "{first}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!nginx.page("/cookie").exists(), "a cookie page was stored");

    let second = get(port, "/cookie");
    assert_eq!(second.sg_status(), "MISS", "{second}");
    assert!(second.text().contains("cookie page #2 "), "{second}");
    assert!(!nginx.page("/cookie").exists());
    assert!(
        wait_until(TIMEOUT, || temp_files(&nginx.path("gen")).is_empty()),
        "{:?}",
        temp_files(&nginx.path("gen"))
    );
    assert_eq!(php.executions(), 2);
}

#[test]
fn post_reaches_php_even_when_a_page_is_stored() {
    let Some(php) = PhpApp::start() else { return };
    let nginx = start_nginx(&php);
    let port = nginx.port();

    let first = get(port, "/contact/");
    assert_eq!(first.sg_status(), "MISS", "{first}");
    stored(&nginx.page("/contact/"));
    assert_eq!(get(port, "/contact/").sg_status(), "HIT");

    let posted = request(
        port,
        &build_request(
            "POST",
            "/contact/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"name=ann&msg=hi",
        ),
    );
    assert_eq!(posted.status, 200, "{posted}");
    assert_eq!(posted.sg_status(), "BYPASS", "{posted}");
    assert!(
        posted.text().contains("<p>POST /contact/ café #2 at "),
        "{posted}"
    );
    assert!(
        posted.text().contains("<p>posted: name=ann&amp;msg=hi</p>"),
        "PHP did not get the request body: {posted}"
    );
    assert_eq!(php.executions(), 2);

    // the POST did not replace the stored page
    let again = get(port, "/contact/");
    assert_eq!(again.sg_status(), "HIT", "{again}");
    assert_eq!(again.body, first.body);
    assert_eq!(php.executions(), 2);
}

#[test]
fn large_php_response_is_stored_byte_exact() {
    let Some(php) = PhpApp::start() else { return };
    let nginx = start_nginx(&php);
    let port = nginx.port();

    // The client reads only after a pause: nginx meanwhile keeps most of the
    // response in its FastCGI temporary file, so the filter sees file buffers.
    let mut conn = Conn::open(port).unwrap();
    conn.send(&build_request("GET", "/big", &[], b"")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let first = conn.read_response("GET").unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.sg_status(), "MISS");
    assert!(first.complete, "incomplete: {} bytes", first.body.len());
    assert!(
        first.body.len() > 300_000,
        "only {} bytes",
        first.body.len()
    );
    let text = first.text();
    assert!(text.starts_with("<!doctype html>\n<p>big page #1 at "));
    assert!(
        text.contains("<p>line 06999 of a large page rendered by php #1 at "),
        "the end of PHP's output is missing"
    );
    assert!(
        nginx
            .error_log()
            .contains("an upstream response is buffered to a temporary file"),
        "the response did not go through a FastCGI temp file:\n{}",
        nginx.error_log()
    );

    let (_, body) = split_page(&stored(&nginx.page("/big")));
    assert_eq!(body.len(), first.body.len());
    assert!(
        body == first.body,
        "the stored page differs from PHP's output"
    );

    let hit = get(port, "/big");
    assert_eq!(hit.sg_status(), "HIT", "{hit}");
    assert!(hit.body == first.body, "the HIT differs from PHP's output");
    assert_eq!(php.executions(), 1);
    assert!(
        temp_files(&nginx.path("gen")).is_empty(),
        "{:?}",
        temp_files(&nginx.path("gen"))
    );
    nginx.assert_no_alerts();
}
