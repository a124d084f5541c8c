//! Pages for real browsers (issue 13): gzip, brotli and zstd variants made
//! once per stored page, off the event loop, kept in the page's own file,
//! and served by `Accept-Encoding` negotiation with no compression on HITs.
mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        static_gen_root {{tmp}}/gen;
        location / {
            static_gen on;
            static_gen_compress {{compress}};
            {{extra}}
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location = /_static_gen/purge {
            allow 127.0.0.1;
            deny all;
            static_gen_purge;
        }
    }
"#;

/// HTML of `len` bytes, as compressible as real pages (words and numbers
/// in a varying order, so that brotli works for it), the same every time.
fn html(len: usize) -> Vec<u8> {
    let words = [
        "static",
        "pages",
        "nginx",
        "module",
        "purge",
        "tree",
        "the",
        "of",
        "a",
        "site",
        "request",
        "worker",
        "<p>",
        "</p>\n",
        "<a href=\"/x\">",
        "</a>",
        "and",
        "with",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut body = b"<!doctype html><title>t</title>\n".to_vec();
    while body.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = words[(state % words.len() as u64) as usize];
        body.extend_from_slice(word.as_bytes());
        if state % 5 == 0 {
            body.extend_from_slice(format!(" {}", state % 10_000).as_bytes());
        }
        body.push(b' ');
    }
    body.truncate(len);
    body
}

fn app(len: usize) -> Upstream {
    let body = html(len);
    Upstream::start(move |_| Plan::response(200, &[("Content-Type", "text/html")], &body))
}

fn start(up: &Upstream, compress: &str, extra: &str) -> NginxHandle {
    Nginx::new(CONF)
        .var("up", up.port())
        .var("compress", compress)
        .var("extra", extra)
        .start()
}

/// Stores `uri` and waits until its variants are in its file, made at
/// `levels` (the configured ones: after the first, fast pass, the second).
fn stored_with_variants(nginx: &NginxHandle, uri: &str, want: &str) {
    assert_eq!(get(nginx.port(), uri).sg_status(), "MISS");
    let page = nginx.page(uri);
    assert!(
        wait_until(Duration::from_secs(30), || levels(&page) == want),
        "no variants made at {want} for {uri}: {}\n{}",
        levels(&page),
        nginx.error_log()
    );
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => brotli::BrotliDecompress(&mut &body[..], &mut out).unwrap(),
        Some("zstd") => out = zstd::stream::decode_all(body).unwrap(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
    out
}

fn hit(port: u16, uri: &str, accept: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
    let r = get_with(port, uri, &headers);
    assert_eq!(r.sg_status(), "HIT", "{r}");
    r
}

#[test]
fn every_variant_decodes_to_the_page() {
    let up = app(20_000);
    let nginx = start(&up, "gzip br zstd", "");
    stored_with_variants(&nginx, "/a/", "gzip=9 br=11 zstd=19");
    let identity = html(20_000);
    for (accept, expected) in [
        (None, None),
        (Some("gzip"), Some("gzip")),
        (Some("br"), Some("br")),
        (Some("zstd"), Some("zstd")),
        (Some("identity"), None),
    ] {
        let r = hit(nginx.port(), "/a/", accept);
        assert_eq!(r.header("Content-Encoding"), expected, "{accept:?}");
        assert_eq!(r.header("Vary"), Some("Accept-Encoding"), "{accept:?}");
        assert_eq!(
            r.header("Content-Length")
                .map(|l| l.parse::<usize>().unwrap()),
            Some(r.body.len())
        );
        assert_eq!(decode(expected, &r.body), identity, "{accept:?}");
        if expected.is_some() {
            assert!(
                r.body.len() < identity.len() / 2,
                "{accept:?}: not compressed much"
            );
        }
    }
    assert_eq!(up.hit_count(), 1, "one upstream request");
}

#[test]
fn negotiation_follows_rfc_9110() {
    let up = app(20_000);
    let nginx = start(&up, "gzip br", "");
    stored_with_variants(&nginx, "/n/", "gzip=9 br=11");
    for (accept, expected) in [
        ("gzip, deflate, br, zstd", Some("br")),
        ("GZIP, BR", Some("br")),
        ("br;q=0.5, gzip", Some("gzip")),
        ("br;q=0, gzip;q=0", None),
        ("*", Some("br")),
        ("*;q=0, gzip", Some("gzip")),
        ("deflate, compress", None),
        ("zstd", None),
        ("x-gzip", Some("gzip")),
        ("br;q=garbage, gzip;q=0.1", Some("gzip")),
    ] {
        let r = hit(nginx.port(), "/n/", Some(accept));
        assert_eq!(r.header("Content-Encoding"), expected, "{accept}");
    }
    // nothing acceptable at all: identity anyway, as gzip_static does
    let r = hit(nginx.port(), "/n/", Some("identity;q=0, *;q=0"));
    assert_eq!(r.header("Content-Encoding"), None);
}

#[test]
fn each_variant_has_its_own_etag_304_head_and_ranges() {
    let up = app(20_000);
    let nginx = start(&up, "gzip br", "");
    stored_with_variants(&nginx, "/e/", "gzip=9 br=11");
    let port = nginx.port();
    let gz = hit(port, "/e/", Some("gzip"));
    let br = hit(port, "/e/", Some("br"));
    let id = hit(port, "/e/", None);
    let tags = [gz.header("ETag"), br.header("ETag"), id.header("ETag")];
    assert!(tags.iter().all(Option::is_some));
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    let gz_tag = gz.header("ETag").unwrap();
    let not_modified = get_with(
        port,
        "/e/",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", gz_tag)],
    );
    assert_eq!(not_modified.status, 304, "{not_modified}");
    let other = get_with(
        port,
        "/e/",
        &[("Accept-Encoding", "br"), ("If-None-Match", gz_tag)],
    );
    assert_eq!(other.status, 200, "a gzip tag made a brotli answer 304");
    let head = head_with(port, "/e/", &[("Accept-Encoding", "br")]);
    assert_eq!(head.header("Content-Encoding"), Some("br"));
    assert_eq!(head.header("Content-Length"), br.header("Content-Length"));
    assert!(head.body.is_empty());
    let range = get_with(
        port,
        "/e/",
        &[("Accept-Encoding", "br"), ("Range", "bytes=0-9")],
    );
    assert_eq!(range.status, 206, "{range}");
    assert_eq!(range.body, br.body[..10]);
}

#[test]
fn nginx_gzip_never_compresses_a_variant_again() {
    let up = app(20_000);
    let nginx = start(
        &up,
        "br",
        "gzip on; gzip_types text/html; gzip_min_length 1; gzip_vary on;",
    );
    let port = nginx.port();
    // the MISS: nginx's gzip as before
    let miss = get_with(port, "/g/", &[("Accept-Encoding", "gzip")]);
    assert_eq!(miss.sg_status(), "MISS");
    assert_eq!(miss.header("Content-Encoding"), Some("gzip"));
    assert_eq!(decode(Some("gzip"), &miss.body), html(20_000));
    let page = nginx.page("/g/");
    assert!(wait_until(Duration::from_secs(30), || std::fs::read(&page)
        .is_ok_and(|f| f.starts_with(b"static_gen 2\n"))));
    let br = hit(port, "/g/", Some("gzip, br"));
    assert_eq!(
        br.header("Content-Encoding"),
        Some("br"),
        "once, not gzip on top"
    );
    assert_eq!(decode(Some("br"), &br.body), html(20_000));
    assert_eq!(br.headers_all("Vary"), ["Accept-Encoding"], "one Vary");
    // gzip clients: nginx compresses the identity page as without variants
    let gz = hit(port, "/g/", Some("gzip"));
    assert_eq!(gz.header("Content-Encoding"), Some("gzip"));
    assert_eq!(decode(Some("gzip"), &gz.body), html(20_000));
    assert_eq!(gz.headers_all("Vary"), ["Accept-Encoding"], "one Vary");
}

#[test]
fn small_pages_and_compress_off_stay_identity() {
    let up = app(500);
    let nginx = start(&up, "gzip br", "");
    get(nginx.port(), "/s/");
    std::thread::sleep(Duration::from_millis(500));
    let file = std::fs::read(nginx.page("/s/")).unwrap();
    assert!(
        file.starts_with(b"static_gen 1\n"),
        "a 500-byte page was compressed"
    );
    let r = hit(nginx.port(), "/s/", Some("br"));
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(
        r.header("Vary"),
        Some("Accept-Encoding"),
        "the location compresses"
    );

    let up = app(20_000);
    let nginx = start(&up, "off", "");
    get(nginx.port(), "/o/");
    std::thread::sleep(Duration::from_millis(500));
    assert!(std::fs::read(nginx.page("/o/"))
        .unwrap()
        .starts_with(b"static_gen 1\n"));
    let r = hit(nginx.port(), "/o/", Some("br"));
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Vary"), None);
}

#[test]
fn purges_remove_every_variant() {
    let up = app(20_000);
    let nginx = start(&up, "gzip br", "");
    let port = nginx.port();
    for (query, uri) in [
        ("?uri=/p/a/", "/p/a/"),
        ("?prefix=/p/", "/p/b/"),
        ("", "/c/"),
    ] {
        stored_with_variants(&nginx, uri, "gzip=9 br=11");
        let r = post(port, &format!("/_static_gen/purge{query}"), b"");
        assert_eq!(r.status, 200, "{r}");
        let after = get_with(port, uri, &[("Accept-Encoding", "br")]);
        assert_eq!(
            after.sg_status(),
            "MISS",
            "{query}: a variant survived the purge"
        );
    }
}

#[test]
fn a_miss_does_not_wait_for_compression() {
    // brotli 11 over 400 KB takes far longer than sending the page
    let up = app(400_000);
    let nginx = start(&up, "br=11", "");
    let started = Instant::now();
    let miss = get(nginx.port(), "/big/");
    let miss_time = started.elapsed();
    assert_eq!(miss.sg_status(), "MISS");
    assert_eq!(miss.body.len(), 400_000);
    let page = nginx.page("/big/");
    assert!(
        wait_until(Duration::from_secs(120), || levels(&page) == "br=11"),
        "no brotli 11 variant made"
    );
    let compression = started.elapsed() - miss_time;
    eprintln!("MISS {miss_time:?}, its variant ready {compression:?} later");
    assert!(
        miss_time * 2 < compression,
        "the MISS ({miss_time:?}) took as long as compressing ({compression:?})"
    );
}

#[test]
fn a_worker_killed_while_compressing_leaves_no_half_variant() {
    let up = app(3_000_000);
    let nginx = Nginx::new(CONF)
        .var("up", up.port())
        .var("compress", "br=11")
        .var("extra", "")
        .workers(1)
        .start();
    assert_eq!(get(nginx.port(), "/k/").sg_status(), "MISS");
    // compressing 3 MB at brotli 11: kill the worker meanwhile
    std::thread::sleep(Duration::from_millis(300));
    for pid in nginx.worker_pids() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let root = nginx.path("gen");
    assert!(
        wait_until(TIMEOUT, || nginx.worker_pids().len() == 1
            && temp_files(&root).is_empty()),
        "temporary files left: {:?}",
        temp_files(&root)
    );
    let file = std::fs::read(nginx.page("/k/")).unwrap();
    let (_, body) = split_page(&file);
    assert_eq!(body, html(3_000_000), "the page is whole");
    let r = get_with(nginx.port(), "/k/", &[("Accept-Encoding", "br")]);
    assert_eq!(r.sg_status(), "HIT");
    assert_eq!(
        decode(r.header("Content-Encoding"), &r.body),
        html(3_000_000)
    );
}

/// The header lines of a page file, variants included (empty: no page).
fn header_lines(page: &std::path::Path) -> Vec<String> {
    let file = std::fs::read(page).unwrap_or_default();
    let end = file.windows(2).position(|w| w == b"\n\n").unwrap_or(0);
    String::from_utf8_lossy(&file[..end])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `levels:` line of a page file: what its variants were made at
/// (empty: no variants, or no page).
fn levels(page: &std::path::Path) -> String {
    header_lines(page)
        .iter()
        .find_map(|line| line.strip_prefix("levels: "))
        .unwrap_or_default()
        .to_string()
}

/// The length of the `encoding` variant a page file holds.
fn variant_len(page: &std::path::Path, encoding: &str) -> Option<u64> {
    header_lines(page).iter().find_map(|line| {
        let rest = line.strip_prefix("variant: ")?;
        let mut words = rest.split(' ');
        (words.next()? == encoding).then(|| words.nth(1)?.parse().ok())?
    })
}

/// A HIT of `uri` with `Accept-Encoding: br` decodes to `body`.
fn br_hit_decodes(nginx: &NginxHandle, uri: &str, body: &[u8]) {
    let r = hit(nginx.port(), uri, Some("br"));
    assert_eq!(r.header("Content-Encoding"), Some("br"), "{uri}");
    assert_eq!(decode(Some("br"), &r.body), body, "{uri}");
}

#[test]
fn a_new_page_gets_fast_variants_at_once_then_the_configured_ones() {
    // brotli 11 over 200 KB takes a good part of a second; the fast levels
    // milliseconds
    let up = app(200_000);
    let nginx = start(&up, "gzip br", "");
    assert_eq!(get(nginx.port(), "/fast/").sg_status(), "MISS");
    let stored = Instant::now();
    let page = nginx.page("/fast/");
    let mut first = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            first = levels(&page);
            !first.is_empty()
        }),
        "no variants made:\n{}",
        nginx.error_log()
    );
    let delay = stored.elapsed();
    eprintln!("first variants {delay:?} after the store: {first}");
    assert_eq!(first, "gzip=6 br=6", "the first variants are the fast ones");
    assert!(
        delay < Duration::from_secs(1),
        "first variants after {delay:?}"
    );
    let fast_br = variant_len(&page, "br").unwrap();
    br_hit_decodes(&nginx, "/fast/", &html(200_000));
    // then, the compressor idle, the configured levels replace them
    assert!(
        wait_until(Duration::from_secs(120), || levels(&page) == "gzip=9 br=11"),
        "no second pass: {}",
        levels(&page)
    );
    let better_br = variant_len(&page, "br").unwrap();
    eprintln!("brotli 6: {fast_br} bytes, brotli 11: {better_br} bytes");
    assert!(better_br < fast_br, "{better_br} not below {fast_br}");
    br_hit_decodes(&nginx, "/fast/", &html(200_000));
    let r = hit(nginx.port(), "/fast/", Some("gzip"));
    assert_eq!(decode(Some("gzip"), &r.body), html(200_000));
    assert_eq!(up.hit_count(), 1, "one upstream request");
}

#[test]
fn levels_at_or_below_the_fast_ones_are_made_once() {
    let up = app(40_000);
    // a location whose pages do get a second pass, to know when the
    // second-pass thread has gone past /once/
    let better = format!(
        "location /better/ {{ static_gen on; static_gen_compress gzip=9 br=11; \
         proxy_pass http://127.0.0.1:{}; }}",
        up.port()
    );
    let nginx = start(&up, "gzip=1 br=4", &better);
    stored_with_variants(&nginx, "/once/", "gzip=1 br=4");
    let page = nginx.page("/once/");
    let version = std::fs::metadata(&page).unwrap();
    // a second pass would replace the file: a new HIT answers as before
    br_hit_decodes(&nginx, "/once/", &html(40_000));
    // second passes run in the order pages were queued: once a later
    // page's is done, /once/'s would be too, had it been queued
    stored_with_variants(&nginx, "/better/x/", "gzip=9 br=11");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&page).unwrap().ino(), version.ino());
}

/// Writes `count` pages under `/lost/` as a MISS leaves them before their
/// variants are made: what a worker's queue held when it was dropped.
fn identity_pages(root: &std::path::Path, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let uri = format!("/lost/{i}/");
            let path = root.join(page_rel(&uri));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let header = format!("static_gen 1\ncontent-type: text/html\nuri: {uri}\n\n");
            std::fs::write(&path, [header.as_bytes(), &html(30_000)].concat()).unwrap();
            uri
        })
        .collect()
}

/// Waits until every page of `uris` has its variants at `want`.
fn all_at_levels(nginx: &NginxHandle, root: &std::path::Path, uris: &[String], want: &str) {
    let behind = || {
        uris.iter()
            .filter(|uri| levels(&root.join(page_rel(uri))) != want)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(120), || behind() == 0),
        "{} of {} pages without variants at {want}:\n{}",
        behind(),
        uris.len(),
        nginx.error_log()
    );
}

#[test]
fn after_a_reload_pages_without_variants_get_them_from_the_new_workers() {
    let up = app(30_000);
    let mut nginx = Nginx::new(CONF)
        .var("up", up.port())
        .var("compress", "gzip br")
        .var("extra", "")
        .workers(2)
        .start();
    stored_with_variants(&nginx, "/seen/", "gzip=9 br=11");
    let root = nginx.path("gen");
    let mut uris = identity_pages(&root, 20);
    // and pages whose MISS queued them just before the reload
    for i in 0..20 {
        let uri = format!("/queued/{i}/");
        assert_eq!(get(nginx.port(), &uri).sg_status(), "MISS");
        uris.push(uri);
    }
    nginx.reload().unwrap();
    all_at_levels(&nginx, &root, &uris, "gzip=9 br=11");
    for uri in &uris[..3] {
        br_hit_decodes(&nginx, uri, &html(30_000));
    }
    nginx.assert_no_alerts();
}

#[test]
fn after_a_quit_pages_without_variants_get_them_from_the_next_nginx() {
    let up = app(30_000);
    let mut first = start(&up, "gzip br", "");
    stored_with_variants(&first, "/seen/", "gzip=9 br=11");
    let root = first.path("gen");
    let uris = identity_pages(&root, 20);
    first.stop();
    let conf = CONF.replace("{{tmp}}/gen", &root.display().to_string());
    let next = Nginx::new(&conf)
        .var("up", up.port())
        .var("compress", "gzip br")
        .var("extra", "")
        .start();
    all_at_levels(&next, &root, &uris, "gzip=9 br=11");
    br_hit_decodes(&next, &uris[0], &html(30_000));
}

#[test]
fn compress_threads_directive() {
    let http = |threads: &str| {
        format!(
            "{threads} server {{ listen 127.0.0.1:{{{{port}}}}; location / {{ static_gen on; \
             static_gen_root {{{{tmp}}}}/gen; proxy_pass http://127.0.0.1:9; }} }}"
        )
    };
    for good in [
        "",
        "static_gen_compress_threads auto;",
        "static_gen_compress_threads 3;",
    ] {
        let (ok, output) = config_test(&http(good));
        assert!(ok, "{good}\n{output}");
    }
    for (bad, expected) in [
        ("static_gen_compress_threads 0;", "invalid value \"0\""),
        ("static_gen_compress_threads 65;", "invalid value \"65\""),
        (
            "static_gen_compress_threads many;",
            "invalid value \"many\"",
        ),
        (
            "static_gen_compress_threads 1 2;",
            "invalid number of arguments",
        ),
        (
            "static_gen_compress_threads 1; static_gen_compress_threads 2;",
            "duplicate",
        ),
    ] {
        let (ok, output) = config_test(&http(bad));
        assert!(!ok, "accepted: {bad}");
        assert!(output.contains("static_gen_compress_threads"), "{output}");
        assert!(output.contains(expected), "{expected} not in {output}");
    }
    let (ok, output) = config_test(
        "server { listen 127.0.0.1:{{port}}; static_gen_compress_threads 2; \
         location / { static_gen on; static_gen_root {{tmp}}/gen; } }",
    );
    assert!(!ok);
    assert!(output.contains("\"static_gen_compress_threads\" directive is not allowed here"));
}
