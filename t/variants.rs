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

/// Stores `uri` and waits until its variants are in its file.
fn stored_with_variants(nginx: &NginxHandle, uri: &str) {
    assert_eq!(get(nginx.port(), uri).sg_status(), "MISS");
    let page = nginx.page(uri);
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read(&page)
            .is_ok_and(|f| f.starts_with(b"static_gen 2\n"))),
        "no variants made for {uri}:\n{}",
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
    stored_with_variants(&nginx, "/a/");
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
    stored_with_variants(&nginx, "/n/");
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
    stored_with_variants(&nginx, "/e/");
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
        stored_with_variants(&nginx, uri);
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
        wait_until(Duration::from_secs(120), || std::fs::read(&page)
            .is_ok_and(|f| f.starts_with(b"static_gen 2\n"))),
        "no variants made"
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
