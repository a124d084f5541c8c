//! The example configurations of `nginx-conf/`, as they are: every file
//! passes `nginx -t` (with the module loaded from this build, its port and
//! paths replaced by string replacement), and the minimal, Django and
//! WordPress ones run for real in front of an upstream (a scripted HTTP
//! server, and php-fpm with a stand-in WordPress) for MISS, HIT, BYPASS and
//! purge. So the files users copy cannot rot.
mod common;
mod example_conf;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use example_conf::*;

#[test]
fn every_example_is_known() {
    let mut found: Vec<String> = fs::read_dir(conf_dir())
        .expect("nginx-conf/")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    found.sort();
    assert_eq!(found, EXAMPLES, "nginx-conf/*.conf and EXAMPLES differ");
}

#[test]
fn every_example_passes_nginx_t() {
    for name in EXAMPLES {
        let conf = example(name, "127.0.0.1:9");
        let (ok, out) = conf.config_test();
        assert!(ok, "nginx -t failed for nginx-conf/{name}:\n{out}");
        assert!(
            out.contains("test is successful"),
            "nginx-conf/{name}:\n{out}"
        );
        // nothing to complain about either (a duplicate MIME type, a
        // directive that has no effect, ...)
        let warnings: Vec<&str> = out.lines().filter(|l| l.contains("[warn]")).collect();
        assert!(warnings.is_empty(), "nginx-conf/{name}: {warnings:#?}");
    }
}

/// An upstream whose every answer is a unique HTML page.
fn counting_upstream() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |req| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Plan::html(&format!("<p>{} {} #{i}</p>\n", req.method, req.path))
    })
}

fn page_file(run: &ConfRun, uri: &str) -> PathBuf {
    run.path(format!("generated/{}", page_rel(uri)))
}

/// GET `uri` twice: MISS (stored), then HIT with the same body.
fn miss_then_hit(run: &ConfRun, uri: &str, headers: &[(&str, &str)]) -> Response {
    let first = get_with(run.port(), uri, headers);
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.sg_status(), "MISS", "{first}");
    let stored = stored_body(&page_file(run, uri));
    assert_eq!(stored, first.body, "{uri}: the file holds the response");
    let second = get_with(run.port(), uri, headers);
    assert_eq!(second.sg_status(), "HIT", "{second}");
    assert_eq!(second.body, first.body);
    second
}

fn purge(run: &ConfRun, query: &str) -> String {
    let r = post(run.port(), &format!("/_static_gen/purge{query}"), b"");
    assert_eq!(r.status, 200, "{r}");
    r.text()
}

#[test]
fn minimal_conf_generates_and_purges() {
    let up = counting_upstream();
    let run = example("minimal.conf", &up.addr()).start();

    miss_then_hit(&run, "/about/", &[]);
    assert_eq!(up.hits("/about/"), 1, "the HIT did not reach the upstream");
    let with_session = get_with(run.port(), "/about/", &[("Cookie", "sessionid=abc")]);
    assert_eq!(with_session.sg_status(), "BYPASS", "{with_session}");
    assert_eq!(up.hits("/about/"), 2);

    let reply = purge(&run, "");
    assert!(reply.contains(r#""status":"ok""#), "{reply}");
    let after = get(run.port(), "/about/");
    assert_eq!(after.sg_status(), "MISS", "{after}");
    run.assert_no_alerts();
}

#[test]
fn django_conf_generates_pages_for_anonymous_visitors() {
    let up = counting_upstream();
    let run = example("django-gunicorn.conf", &up.addr()).start();
    let port = run.port();

    // StaticGenerator's URLs
    miss_then_hit(&run, "/", &[]);
    miss_then_hit(&run, "/articles/hello/", &[]);
    miss_then_hit(&run, "/categories/django/", &[]);
    // a listing's pages by ?page= (static_gen_key_args page), campaign
    // links served from the page without their tracking arguments
    miss_then_hit(&run, "/categories/django/?page=2", &[]);
    let campaign = get(port, "/articles/hello/?utm_source=news&fbclid=x");
    assert_eq!(campaign.sg_status(), "HIT", "{campaign}");
    // the csrftoken cookie alone is no session: still a HIT
    let with_csrf = get_with(port, "/articles/hello/", &[("Cookie", "csrftoken=x")]);
    assert_eq!(with_csrf.sg_status(), "HIT", "{with_csrf}");
    assert_eq!(up.hits("/articles/hello/"), 1);

    // Host and X-Forwarded-For reach Django
    let req = up
        .requests()
        .into_iter()
        .find(|r| r.path == "/articles/hello/")
        .unwrap();
    assert_eq!(req.header("Host"), Some("localhost"), "{req:?}");
    assert_eq!(req.header("X-Forwarded-For"), Some("127.0.0.1"), "{req:?}");

    // ...logged in, a comment POST, outside the patterns, excluded
    for (what, r) in [
        (
            "session cookie",
            get_with(port, "/articles/hello/", &[("Cookie", "sessionid=s")]),
        ),
        ("POST", post(port, "/articles/hello/", b"name=a&body=b")),
        ("admin", get(port, "/admin/")),
        ("feed", get(port, "/articles/feed/")),
        (
            "an argument Django may read",
            get(port, "/articles/?q=nginx"),
        ),
    ] {
        assert_eq!(r.sg_status(), "BYPASS", "{what}: {r}");
    }
    assert_eq!(
        up.hits("/articles/hello/"),
        3,
        "session and POST reach Django"
    );
    assert!(!run.path("generated/admin/index.html").exists());

    // collectstatic's files come from disk
    run.write("static/admin/css/base.css", "body {}\n");
    let css = get(port, "/static/admin/css/base.css");
    assert_eq!(css.status, 200, "{css}");
    assert_eq!(css.text(), "body {}\n");
    assert_eq!(css.header("Content-Type"), Some("text/css"));

    // the post_save purge: this article only
    // soft: the configuration serves purged pages stale while regenerating
    let reply = purge(&run, "?uri=/articles/hello/");
    assert!(reply.contains(r#""mode":"soft""#), "{reply}");
    assert!(reply.contains(r#""stale":1"#), "{reply}");
    assert_eq!(get(port, "/articles/hello/").sg_status(), "MISS");
    assert_eq!(get(port, "/categories/django/").sg_status(), "HIT");
    assert!(fs::read_to_string(run.path("blog.access.log"))
        .unwrap_or_default()
        .contains("GET /articles/hello/"));
    run.assert_no_alerts();
}

// ---------------------------------------------------------------------------
// WordPress on php-fpm
// ---------------------------------------------------------------------------

/// A stand-in for WordPress's index.php: the front controller for every
/// pretty permalink, counting its executions.
const WP_INDEX: &str = r#"<?php
$f = fopen(__DIR__ . '/../executions', 'a');
fwrite($f, $_SERVER['REQUEST_URI'] . "\n");
fclose($f);
header('Content-Type: text/html; charset=UTF-8');
printf("<!doctype html>\n<p>WordPress front controller: %s at %.6f</p>\n",
    htmlspecialchars($_SERVER['REQUEST_URI']), microtime(true));
"#;

const WP_LOGIN: &str = r#"<?php
setcookie('wordpress_test_cookie', 'WP Cookie check');
header('Content-Type: text/html; charset=UTF-8');
echo "<!doctype html>\n<p>wp-login.php</p>\n";
"#;

const WP_ADMIN: &str = r#"<?php
header('Content-Type: text/html; charset=UTF-8');
echo "<!doctype html>\n<p>dashboard</p>\n";
"#;

#[test]
fn wordpress_conf_generates_permalinks_and_respects_wordpress_cookies() {
    let Some(php_fpm) = php_fpm_or_skip() else {
        return;
    };
    let conf = example("wordpress-php-fpm.conf", "unix:{tmp}/php-fpm.sock");
    conf.write("wordpress/index.php", WP_INDEX);
    conf.write("wordpress/wp-login.php", WP_LOGIN);
    conf.write("wordpress/wp-admin/index.php", WP_ADMIN);
    conf.write("wordpress/wp-content/themes/t/style.css", "p {}\n");
    // the pool runs as root in tests run as root: let it write `executions`
    fs::set_permissions(conf.path("wordpress"), fs::Permissions::from_mode(0o777)).unwrap();
    let run = conf.start();
    // started after nginx so that it is dropped first: dropping `run`
    // removes the directory with php-fpm's logs
    let _fpm = PhpFpm::start(
        &php_fpm,
        run.dir(),
        PhpFpmListen::Socket(run.path("php-fpm.sock")),
    );
    let port = run.port();
    let executions = || {
        fs::read_to_string(run.path("executions"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    // the home page and a pretty permalink come from the front controller
    let home = miss_then_hit(&run, "/", &[]);
    assert!(home.text().contains("front controller: /"), "{home}");
    let post = miss_then_hit(&run, "/2024/05/hello-world/", &[]);
    assert!(post.text().contains("/2024/05/hello-world/"), "{post}");
    assert_eq!(executions(), 2, "HITs do not run PHP");

    // WordPress's per-visitor cookies bypass
    for cookie in [
        "wordpress_logged_in_0123abcd=admin%7C1700000000",
        "comment_author_0123abcd=Bob",
        "wp-postpass_0123abcd=%24P%24B",
        "woocommerce_items_in_cart=1",
        "wp_woocommerce_session_0123abcd=x",
    ] {
        let r = get_with(port, "/2024/05/hello-world/", &[("Cookie", cookie)]);
        assert_eq!(r.sg_status(), "BYPASS", "{cookie}: {r}");
    }
    assert_eq!(executions(), 7);
    // ...other cookies do not
    let r = get_with(port, "/2024/05/hello-world/", &[("Cookie", "_ga=GA1.2.3")]);
    assert_eq!(r.sg_status(), "HIT", "{r}");

    // search, feeds: never generated
    assert_eq!(get(port, "/?s=nginx").sg_status(), "BYPASS");
    assert_eq!(get(port, "/feed/").sg_status(), "BYPASS");
    // wp-login.php and the dashboard go straight to PHP, outside the module
    let login = get(port, "/wp-login.php");
    assert_eq!(login.status, 200, "{login}");
    assert!(login.text().contains("wp-login.php"), "{login}");
    assert_eq!(login.sg_status(), "", "{login}");
    let admin = get(port, "/wp-admin/");
    assert!(admin.text().contains("dashboard"), "{admin}");
    assert!(!run.path("generated/wp-admin").exists());
    // theme files are files
    let css = get(port, "/wp-content/themes/t/style.css");
    assert_eq!(css.text(), "p {}\n", "{css}");

    // save_post: the post's permalink
    let reply = purge(&run, "?uri=/2024/05/hello-world/");
    assert!(reply.contains(r#""stale":1"#), "{reply}");
    assert_eq!(get(port, "/2024/05/hello-world/").sg_status(), "MISS");
    assert_eq!(get(port, "/").sg_status(), "HIT");
    run.assert_no_alerts();
}

// ---------------------------------------------------------------------------
// The WordPress plugin (nginx-conf/wordpress-static-gen.php) on php-fpm
// ---------------------------------------------------------------------------

/// A stand-in for the few WordPress functions the plugin calls: hooks, the
/// main query's conditionals (from `$GLOBALS['page']`), the terms of a post
/// (its category, `$post->cat`) and `wp_remote_post` over PHP's own HTTP
/// streams (real requests to nginx's purge location, recorded in
/// `$GLOBALS['purges']`).
const WP_STUBS: &str = r#"<?php
define('ABSPATH', __DIR__ . '/');
define('STATIC_GEN_PURGE_URLS', 'http://127.0.0.1:' . $_SERVER['SERVER_PORT'] . '/_static_gen/purge');
if (is_file(__DIR__ . '/purge-by-urls')) define('STATIC_GEN_PURGE_BY', 'urls');
$GLOBALS['hooks'] = [];
$GLOBALS['purges'] = [];
$GLOBALS['page'] = ['kind' => 'none'];
function add_action($hook, $fn, $priority = 10, $args = 1) { $GLOBALS['hooks'][$hook][$priority][] = [$fn, $args]; }
function do_action($hook, ...$args) {
    $by = $GLOBALS['hooks'][$hook] ?? [];
    ksort($by);
    foreach ($by as $fns) foreach ($fns as [$fn, $n]) $fn(...array_slice($args, 0, $n));
}
function is_user_logged_in() { return false; }
function is_home() { return $GLOBALS['page']['kind'] === 'home'; }
function is_archive() { return $GLOBALS['page']['kind'] === 'category'; }
function is_category() { return $GLOBALS['page']['kind'] === 'category'; }
function is_tag() { return false; }
function is_tax() { return false; }
function get_queried_object_id() { return $GLOBALS['page']['term'] ?? 0; }
function get_the_terms($post, $taxonomy) { return $taxonomy === 'category' ? [(object) ['term_id' => $post->cat]] : false; }
function wp_is_post_revision($id) { return false; }
function wp_is_post_autosave($id) { return false; }
function get_permalink($id) { return "http://blog.example.org/2024/05/post-$id/"; }
function wp_make_link_relative($url) { return parse_url($url, PHP_URL_PATH); }
function get_comment($id) { return (object) ['comment_post_ID' => intdiv($id, 100)]; }
class WP_Error { function __construct(public $message) {} function get_error_message() { return $this->message; } }
function is_wp_error($x) { return $x instanceof WP_Error; }
function wp_remote_post($url, $args) {
    $context = stream_context_create(['http' => ['method' => 'POST', 'timeout' => $args['timeout'], 'ignore_errors' => true]]);
    $body = @file_get_contents($url, false, $context);
    if ($body === false) return new WP_Error(error_get_last()['message'] ?? 'failed');
    preg_match('{^HTTP/\S+ (\d+)}', $http_response_header[0], $m);
    $GLOBALS['purges'][] = ['url' => $url, 'status' => (int) $m[1], 'reply' => trim($body)];
    return ['code' => (int) $m[1], 'body' => $body];
}
function wp_remote_retrieve_response_code($r) { return $r['code']; }
function wp_remote_retrieve_body($r) { return $r['body']; }
"#;

/// The front controller: posts 12 (category 3), 13 (category 4) and 14
/// (category 3); `/` lists them, `/category/c<N>/` a category,
/// `/2024/05/post-<ID>/` one post, `/many/<N>/` a listing of posts 1000 to
/// 1000+N (to pass the header line and 16 KB limits).
const WP_PLUGIN_INDEX: &str = r#"<?php
require __DIR__ . '/wp-stubs.php';
require __DIR__ . '/wp-content/mu-plugins/static-gen.php';
$cats = [12 => 3, 13 => 4, 14 => 3];
$uri = $_SERVER['REQUEST_URI'];
$ids = [];
if ($uri === '/') {
    $GLOBALS['page'] = ['kind' => 'home'];
    $ids = [14, 13, 12];
} elseif (preg_match('{^/category/c(\d+)/$}', $uri, $m)) {
    $GLOBALS['page'] = ['kind' => 'category', 'term' => (int) $m[1]];
    $ids = array_keys(array_filter($cats, fn($c) => $c == $m[1]));
} elseif (preg_match('{^/2024/05/post-(\d+)/$}', $uri, $m)) {
    $GLOBALS['page'] = ['kind' => 'single'];
    $ids = [(int) $m[1]];
} elseif (preg_match('{^/many/(\d+)/$}', $uri, $m)) {
    $GLOBALS['page'] = ['kind' => 'home'];
    $ids = range(1000, 999 + (int) $m[1]);
    foreach ($ids as $id) $cats[$id] = 9;
}
$GLOBALS['wp_query'] = (object) ['posts' => array_map(fn($id) => (object) ['ID' => $id, 'cat' => $cats[$id]], $ids)];
do_action('wp');
header('Content-Type: text/html; charset=UTF-8');
printf("<!doctype html>\n<p>%s: posts %s at %.6f</p>\n", htmlspecialchars($uri), implode(',', $ids), microtime(true));
"#;

/// What WordPress's admin does when it saves: runs a hook
/// (`?hook=save_post&id=12`), and says which purges the plugin sent.
const WP_PLUGIN_ACTION: &str = r#"<?php
require __DIR__ . '/../wp-stubs.php';
require __DIR__ . '/../wp-content/mu-plugins/static-gen.php';
$args = array_map(fn($a) => is_numeric($a) ? (int) $a : $a, explode(',', $_GET['args'] ?? ''));
do_action($_GET['hook'], ...$args);
header('Content-Type: application/json');
echo json_encode($GLOBALS['purges']), "\n";
"#;

/// Needs the module's purge by tag (`?tag=`): without it the test stops at
/// [`require_purge_by_tag`] (nginx answers `400`).
#[test]
fn wordpress_plugin_tags_pages_and_purges_by_tag() {
    let Some(php_fpm) = php_fpm_or_skip() else {
        return;
    };
    let plugin = fs::read_to_string(conf_dir().join("wordpress-static-gen.php")).unwrap();
    let conf = example("wordpress-php-fpm.conf", "unix:{tmp}/php-fpm.sock");
    conf.write("wordpress/wp-stubs.php", WP_STUBS);
    conf.write("wordpress/index.php", WP_PLUGIN_INDEX);
    conf.write("wordpress/wp-admin/act.php", WP_PLUGIN_ACTION);
    conf.write("wordpress/wp-content/mu-plugins/static-gen.php", plugin);
    let run = conf.start();
    let _fpm = PhpFpm::start(
        &php_fpm,
        run.dir(),
        PhpFpmListen::Socket(run.path("php-fpm.sock")),
    );
    let port = run.port();
    example_conf::django::require_purge_by_tag(port);
    let act = |query: &str| {
        let r = post(port, &format!("/wp-admin/act.php?{query}"), b"");
        assert_eq!(r.status, 200, "{r}");
        r.text()
    };

    let pages = [
        "/",
        "/category/c3/",
        "/category/c4/",
        "/2024/05/post-12/",
        "/2024/05/post-13/",
        "/2024/05/post-14/",
    ];
    for uri in pages {
        let hit = miss_then_hit(&run, uri, &[]);
        // nginx keeps the tags and never passes them on
        assert!(!hit.has_header("X-Static-Gen-Tags"), "{uri}: {hit}");
    }

    // saving post 12 purges its page and the listings that show it
    let purges = act("hook=save_post&args=12");
    assert!(purges.contains(r#"?tag=post-12","status":200"#), "{purges}");
    for uri in ["/2024/05/post-12/", "/", "/category/c3/"] {
        assert_eq!(get(port, uri).sg_status(), "MISS", "{uri} not purged");
    }
    for uri in ["/2024/05/post-13/", "/2024/05/post-14/", "/category/c4/"] {
        assert_eq!(get(port, uri).sg_status(), "HIT", "{uri} purged");
    }
    for uri in pages {
        get(port, uri);
    }

    // a comment on post 13 (comment 1301): post 13's pages only
    let purges = act("hook=comment_post&args=1301");
    assert!(purges.contains(r#"?tag=post-13","status":200"#), "{purges}");
    for uri in ["/2024/05/post-13/", "/", "/category/c4/"] {
        assert_eq!(get(port, uri).sg_status(), "MISS", "{uri} not purged");
    }
    for uri in ["/2024/05/post-12/", "/category/c3/"] {
        assert_eq!(get(port, uri).sg_status(), "HIT", "{uri} purged");
    }

    // a post published: the listings (`posts`), not the posts' own pages
    for uri in pages {
        get(port, uri);
    }
    let purges = act("hook=transition_post_status&args=publish,draft,15");
    assert!(purges.contains(r#"?tag=posts","status":200"#), "{purges}");
    for uri in ["/", "/category/c3/", "/category/c4/"] {
        assert_eq!(get(port, uri).sg_status(), "MISS", "{uri} not purged");
    }
    for uri in ["/2024/05/post-12/", "/2024/05/post-13/"] {
        assert_eq!(get(port, uri).sg_status(), "HIT", "{uri} purged");
    }

    // a renamed category: the pages that show it
    for uri in pages {
        get(port, uri);
    }
    let purges = act("hook=edited_term&args=4");
    assert!(purges.contains(r#"?tag=term-4","status":200"#), "{purges}");
    for uri in ["/category/c4/", "/2024/05/post-13/", "/"] {
        assert_eq!(get(port, uri).sg_status(), "MISS", "{uri} not purged");
    }
    for uri in ["/category/c3/", "/2024/05/post-12/", "/2024/05/post-14/"] {
        assert_eq!(get(port, uri).sg_status(), "HIT", "{uri} purged");
    }

    // 600 posts: tags in two header lines (4000 bytes each at most); a
    // tag of the second line purges the page too
    miss_then_hit(&run, "/many/600/", &[]);
    act("hook=save_post&args=1599");
    assert_eq!(get(port, "/many/600/").sg_status(), "MISS");
    // 2000 posts pass 16 KB of tags: not stored, at every visit
    for _ in 0..2 {
        let r = get(port, "/many/2000/");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.sg_status(), "MISS", "{r}");
        assert!(!r.has_header("X-Static-Gen-Tags"), "{r}");
    }
    assert!(!page_file(&run, "/many/2000/").exists());
    run.assert_no_alerts();
}

/// `define('STATIC_GEN_PURGE_BY', 'urls')`: no tags sent, purges by URL.
#[test]
fn wordpress_plugin_purges_by_url_where_pages_are_not_tagged() {
    let Some(php_fpm) = php_fpm_or_skip() else {
        return;
    };
    let plugin = fs::read_to_string(conf_dir().join("wordpress-static-gen.php")).unwrap();
    let conf = example("wordpress-php-fpm.conf", "unix:{tmp}/php-fpm.sock");
    conf.write("wordpress/wp-stubs.php", WP_STUBS);
    conf.write("wordpress/purge-by-urls", "");
    conf.write("wordpress/index.php", WP_PLUGIN_INDEX);
    conf.write("wordpress/wp-admin/act.php", WP_PLUGIN_ACTION);
    conf.write("wordpress/wp-content/mu-plugins/static-gen.php", plugin);
    let run = conf.start();
    let _fpm = PhpFpm::start(
        &php_fpm,
        run.dir(),
        PhpFpmListen::Socket(run.path("php-fpm.sock")),
    );
    let port = run.port();
    let act = |query: &str| {
        let r = post(port, &format!("/wp-admin/act.php?{query}"), b"");
        assert_eq!(r.status, 200, "{r}");
        let purges = r.text();
        assert!(!purges.contains("tag="), "{purges}");
        assert!(!purges.contains(r#""status":4"#), "{purges}");
        purges
    };
    let pages = [
        "/",
        "/category/c3/",
        "/category/c4/",
        "/2024/05/post-12/",
        "/2024/05/post-13/",
    ];
    for uri in pages {
        let hit = miss_then_hit(&run, uri, &[]);
        // the plugin sends no tags in this mode (with or without the
        // module's support for them)
        assert!(!hit.has_header("X-Static-Gen-Tags"), "{uri}: {hit}");
    }

    // saving post 12: its page, the home page and the archives
    let purges = act("hook=save_post&args=12");
    assert!(
        purges.contains(r#"?uri=%2F2024%2F05%2Fpost-12%2F","status":200"#),
        "{purges}"
    );
    assert!(
        purges.contains(r#"?prefix=%2Fcategory%2F","status":200"#),
        "{purges}"
    );
    for uri in ["/2024/05/post-12/", "/", "/category/c3/", "/category/c4/"] {
        assert_eq!(get(port, uri).sg_status(), "MISS", "{uri} not purged");
    }
    assert_eq!(get(port, "/2024/05/post-13/").sg_status(), "HIT");

    // a comment on post 13: its page (and the listings), not post 12's
    for uri in pages {
        get(port, uri);
    }
    act("hook=comment_post&args=1301");
    assert_eq!(get(port, "/2024/05/post-13/").sg_status(), "MISS");
    assert_eq!(get(port, "/2024/05/post-12/").sg_status(), "HIT");

    // a post published or a category renamed: everything
    for (i, query) in [
        "hook=transition_post_status&args=publish,draft,15",
        "hook=edited_term&args=4",
    ]
    .into_iter()
    .enumerate()
    {
        for uri in pages {
            get(port, uri);
        }
        let purges = act(query);
        assert!(purges.contains(r#"purge","status":200"#), "{i}: {purges}");
        for uri in pages {
            assert_eq!(get(port, uri).sg_status(), "MISS", "{query}: {uri}");
        }
    }
    run.assert_no_alerts();
}

/// `several-servers.conf` alone (its peer is not running; the relay to it
/// fails, which is the documented limit): pages are generated, the peer
/// listener purges and serves nothing else, and a restart purges the tree
/// (`static_gen_purge_on_start`).
#[test]
fn several_servers_conf_generates_purges_on_its_peer_listener_and_at_start() {
    let up = counting_upstream();
    let (own_peer, other_peer) = (free_port(), free_port());
    let mut run = several_servers(&up.addr(), own_peer, other_peer).start();
    let port = run.port();
    miss_then_hit(&run, "/articles/hello/", &[]);
    miss_then_hit(&run, "/about/", &[]);
    let with_session = get_with(port, "/about/", &[("Cookie", "sessionid=abc")]);
    assert_eq!(with_session.sg_status(), "BYPASS", "{with_session}");

    // the peer listener: purges, relays nothing, serves no page
    let reply = post(own_peer, "/_static_gen/purge?uri=/articles/hello/", b"");
    assert_eq!(reply.status, 200, "{reply}");
    assert!(reply.text().contains(r#""scope":"uri""#), "{reply}");
    assert_eq!(get(port, "/articles/hello/").sg_status(), "MISS");
    assert_eq!(get(port, "/about/").sg_status(), "HIT");
    assert_eq!(get(own_peer, "/about/").status, 404);
    assert!(!run.error_log().contains(&format!(":{other_peer}/")));

    // the site's purge location purges and relays to the peer (down here:
    // an error-log line, the reply is still ok)
    let reply = post(port, "/_static_gen/purge?uri=/about/", b"");
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(get(port, "/about/").sg_status(), "MISS");
    let relay = format!("127.0.0.1:{other_peer}/_static_gen/purge?uri=/about/");
    assert!(
        wait_until(TIMEOUT, || run.error_log().contains(&relay)),
        "{}",
        run.error_log()
    );

    // stopped and started again: every page counts as purged
    assert_eq!(get(port, "/articles/hello/").sg_status(), "HIT");
    run.stop();
    run.start_again();
    let after = get(port, "/articles/hello/");
    assert_eq!(after.sg_status(), "MISS", "{after}");
    assert!(
        run.error_log().contains("at start (soft)"),
        "{}",
        run.error_log()
    );
    run.assert_no_alerts();
}
