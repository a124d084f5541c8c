//! Pages kept open (`static_gen_open_cache`, issue 14) keep every promise
//! of pages opened by their path: no older version once a newer one is
//! installed by any worker, nothing purged once the purge replied (these
//! run with the cache on, as by default, in `faults.rs` and `stampede.rs`
//! too), the descriptors of purged pages closed so that their disk space
//! is freed, and the worker's open-file limit respected.
mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const CONF: &str = r#"
    {{http}}
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        keepalive_requests 100000;
        static_gen_root {{tmp}}/gen;
        location / {
            static_gen on;
            {{extra}}
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
        }
        location = /_static_gen/purge {
            allow 127.0.0.1;
            deny all;
            static_gen_purge;
        }
        {{locations}}
    }
"#;

/// `http` goes into the `http` block, `extra` into the pages' location;
/// `.var("locations", ...)` adds locations to the server.
fn nginx(up: &Upstream, http: &str, extra: &str) -> Nginx {
    Nginx::new(CONF)
        .var("up", up.port())
        .var("http", http)
        .var("extra", extra)
        .var("locations", "")
}

/// One response as a client saw it.
struct Seen {
    uri: String,
    sent: Instant,
    received: Instant,
    status: String,
    version: usize,
}

/// `clients` threads ask for `uris` in turn until `stop`.
fn load(port: u16, uris: &[String], clients: usize, stop: &Arc<AtomicBool>) -> Vec<Seen> {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, seen, uris) = (stop.clone(), seen.clone(), uris.to_vec());
            thread::spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    let uri = &uris[i % uris.len()];
                    i += 1;
                    let sent = Instant::now();
                    let Ok(r) = try_request(port, &build_request("GET", uri, &[], b"")) else {
                        continue;
                    };
                    assert_eq!(r.status, 200, "{r}");
                    seen.lock().unwrap().push(Seen {
                        uri: uri.clone(),
                        sent,
                        received: Instant::now(),
                        status: r.sg_status().to_string(),
                        version: version(&r),
                    });
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    Arc::try_unwrap(seen)
        .ok()
        .expect("clients joined")
        .into_inner()
        .unwrap()
}

/// Pages expire every second and are stored again by whichever worker
/// gets the request (one at a time per page, `static_gen_lock`), while
/// four workers serve them from kept descriptors: once a client was served
/// a version from the tree, no request sent after it gets an older one.
#[test]
fn a_page_installed_by_any_worker_replaces_the_kept_one_at_once() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = nginx(&up, "", "static_gen_valid 1s; static_gen_lock on;")
        .workers(4)
        .start();
    let port = nginx.port();
    let uris: Vec<String> = (0..4).map(|i| format!("/p/{i}/")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(5));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut seen = load(port, &uris, 8, &stop);
    stopper.join().unwrap();
    seen.sort_by_key(|s| s.received);
    let mut checked = 0;
    let mut installs = 0;
    for uri in &uris {
        let page: Vec<&Seen> = seen.iter().filter(|s| &s.uri == uri).collect();
        installs += page.iter().filter(|s| s.status == "EXPIRED").count();
        for later in &page {
            // the newest version served from the tree before `later` was sent
            let newest = page
                .iter()
                .take_while(|s| s.received < later.sent)
                .filter(|s| s.status == "HIT")
                .map(|s| s.version)
                .max();
            if let Some(newest) = newest {
                checked += 1;
                assert!(
                    later.version >= newest,
                    "{uri}: version {} ({}) served after version {newest} was",
                    later.version,
                    later.status
                );
            }
        }
    }
    assert!(installs >= 8, "too few re-stores: {installs}");
    assert!(checked > 500, "too few checks: {checked}");
    assert!(!nginx.error_log().contains("exited on signal"));
}

/// The page files `pid` holds open under the tree `root`, and how many of
/// them were deleted since they were opened (the tree's own directories
/// and state file are not counted).
fn descriptors_into(pid: u32, root: &Path) -> (usize, usize) {
    let reserved = root.join(".static_gen");
    let mut into = 0;
    let mut deleted = 0;
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    for fd in fds.flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        let page = fs::metadata(fd.path()).is_ok_and(|m| m.is_file());
        if page && target.starts_with(root) && !target.starts_with(&reserved) {
            into += 1;
            deleted += usize::from(target.to_string_lossy().ends_with(" (deleted)"));
        }
    }
    (into, deleted)
}

/// This process's open-file limit, which nginx inherits.
fn open_file_limit() -> usize {
    let limits = fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft = line.split_whitespace().nth(3).unwrap();
    soft.parse().unwrap_or(usize::MAX)
}

/// Asks for every uri on kept-alive connections, `threads` at once.
fn get_all(port: u16, uris: &[String], threads: usize) -> Vec<String> {
    let chunks: Vec<Vec<String>> = uris
        .chunks(uris.len().div_ceil(threads))
        .map(<[String]>::to_vec)
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            thread::spawn(move || {
                let mut conn = Conn::open(port).unwrap();
                let mut statuses = Vec::new();
                for uri in chunk {
                    let raw = build_request("GET", &uri, &[("Connection", "keep-alive")], b"");
                    conn.send(&raw).unwrap();
                    let r = conn.read_response("GET").unwrap();
                    assert_eq!(r.status, 200, "{r}");
                    statuses.push(r.sg_status().to_string());
                }
                statuses
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// 10,000 pages served, so kept open (as many as the worker's open-file
/// limit lets it: half of what connections leave, 9,456 under a limit of
/// 20,000); a whole-tree purge (deleted in the background) and a
/// prefix purge then leave no descriptor of a purged page open, so the
/// space of the deleted pages is freed.
#[test]
fn purged_pages_are_closed_and_their_space_freed() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let limit = open_file_limit();
    assert!(
        limit >= 12_000,
        "this test needs an open-file limit of 12,000 or more (ulimit -n), not {limit}"
    );
    let nginx = nginx(&up, "static_gen_open_cache max=20000;", "").start();
    let port = nginx.port();
    let uris: Vec<String> = (0..10_000)
        .map(|i| format!("/n/{}/{i}/", i % 100))
        .collect();
    get_all(port, &uris, 4);
    let statuses = get_all(port, &uris, 4);
    assert!(statuses.iter().all(|s| s == "HIT"), "not all HITs");
    let worker = nginx.worker_pids()[0];
    let root = nginx.path("gen");
    let (kept, _) = descriptors_into(worker, &root);
    let share = (limit.min(20_000) - 1024 - 64) / 2;
    assert!(kept >= share.min(10_000) - 10, "pages kept open: {kept}");

    // a prefix purge closes that directory's pages only
    let r = post(port, "/_static_gen/purge?prefix=/n/7/", b"");
    assert_eq!(r.status, 200, "{r}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (open, deleted) = descriptors_into(worker, &root);
            open <= kept - 50 && deleted == 0
        }),
        "after the prefix purge: {:?} of {kept}",
        descriptors_into(worker, &root)
    );
    assert!(descriptors_into(worker, &root).0 >= kept - 100 - 10);

    let r = post(port, "/_static_gen/purge", b"");
    assert_eq!(r.status, 200, "{r}");
    assert!(
        wait_until(Duration::from_secs(5), || descriptors_into(worker, &root)
            == (0, 0)),
        "after the whole purge: {:?}",
        descriptors_into(worker, &root)
    );
}

/// With `worker_rlimit_nofile 64` (below `worker_connections`), the kept
/// pages take at most an eighth of it, and every page is still served,
/// from the tree, while clients hold connections open.
#[test]
fn the_open_file_limit_is_respected() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = nginx(&up, "", "")
        .main_conf("worker_rlimit_nofile 64;")
        .start();
    let port = nginx.port();
    let worker = nginx.worker_pids()[0];
    let root = nginx.path("gen");
    let idle: Vec<Conn> = (0..16).map(|_| Conn::open(port).unwrap()).collect();
    let uris: Vec<String> = (0..200).map(|i| format!("/l/{i}/")).collect();
    get_all(port, &uris, 2);
    for _ in 0..3 {
        let statuses = get_all(port, &uris, 2);
        assert!(statuses.iter().all(|s| s == "HIT"), "{statuses:?}");
        let (open, _) = descriptors_into(worker, &root);
        assert!(open <= 8, "{open} pages kept open");
        let all = fs::read_dir(format!("/proc/{worker}/fd")).unwrap().count();
        assert!(all <= 64, "{all} descriptors");
    }
    drop(idle);
    assert!(
        !nginx.error_log().contains("Too many open files"),
        "{}",
        nginx.error_log()
    );
}

/// `off` keeps nothing open: every HIT opens its page.
#[test]
fn off_keeps_no_page_open() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = nginx(&up, "static_gen_open_cache off;", "").start();
    let port = nginx.port();
    let uris: Vec<String> = (0..20).map(|i| format!("/o/{i}/")).collect();
    get_all(port, &uris, 1);
    assert!(get_all(port, &uris, 1).iter().all(|s| s == "HIT"));
    let worker = nginx.worker_pids()[0];
    // the last request's page closes when nginx frees the request, just
    // after the client has its answer
    assert!(
        wait_until(Duration::from_secs(2), || {
            descriptors_into(worker, &nginx.path("gen")).0 == 0
        }),
        "pages left open: {:?}",
        descriptors_into(worker, &nginx.path("gen"))
    );
}

/// Rewrites `file`'s bytes `from` as `to` (same length) in place, as no
/// install does: what is then sent shows whether a HIT reads the file or
/// bytes read earlier.
fn rewrite_in_place(file: &Path, from: &str, to: &str) {
    use std::os::unix::fs::FileExt;
    assert_eq!(from.len(), to.len());
    let bytes = fs::read(file).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not in {}", file.display()));
    let f = fs::OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(to.as_bytes(), at as u64).unwrap();
}

/// The memory tier (`memory=`, on by default): a page served twice is
/// sent from memory from then on (a rewrite of its file in place, which
/// no install does, no longer shows), ranges and HEAD included; a purge or
/// a new version ends it at once; with `memory=0` every HIT reads the file.
#[test]
fn hot_pages_are_sent_from_memory_until_purged_or_replaced() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = nginx(&up, "", "static_gen_valid 2s;").start();
    let port = nginx.port();
    let file = nginx.path("gen/m/index.html");
    assert_eq!(get(port, "/m/").sg_status(), "MISS");
    let first = get(port, "/m/");
    assert_eq!(first.sg_status(), "HIT");
    let v = version(&first);
    assert_eq!(version(&get(port, "/m/")), v); // the second use: read into memory
    rewrite_in_place(&file, &format!("version={v:08}"), "version=99999999");
    for _ in 0..3 {
        let r = get(port, "/m/");
        assert_eq!((r.sg_status(), version(&r)), ("HIT", v), "{r}");
    }
    let range = request(
        port,
        &build_request("GET", "/m/", &[("Range", "bytes=-8")], b""),
    );
    assert_eq!(range.status, 206, "{range}");
    assert_eq!(range.body, format!("{v:08}").as_bytes());
    let head = request(port, &build_request("HEAD", "/m/", &[], b""));
    assert_eq!(
        head.header("Content-Length"),
        first.header("Content-Length")
    );

    // a purge: never the held bytes again
    let r = post(port, "/_static_gen/purge?uri=/m/", b"");
    assert_eq!(r.status, 200, "{r}");
    let after = get(port, "/m/");
    assert_eq!(after.sg_status(), "MISS", "{after}");
    let w = version(&after);
    assert!(w > v);
    for _ in 0..3 {
        assert_eq!(version(&get(port, "/m/")), w);
    }
    // a new version (expired, stored again): never the held bytes again
    thread::sleep(Duration::from_millis(2100));
    let again = get(port, "/m/");
    assert_eq!(again.sg_status(), "EXPIRED", "{again}");
    let x = version(&again);
    assert!(x > w);
    let r = get(port, "/m/");
    assert_eq!((r.sg_status(), version(&r)), ("HIT", x), "{r}");
}

#[test]
fn without_memory_every_hit_reads_the_file() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = nginx(&up, "static_gen_open_cache max=100 memory=0;", "").start();
    let port = nginx.port();
    assert_eq!(get(port, "/m/").sg_status(), "MISS");
    let v = version(&get(port, "/m/"));
    assert_eq!(version(&get(port, "/m/")), v);
    rewrite_in_place(
        &nginx.path("gen/m/index.html"),
        &format!("version={v:08}"),
        "version=99999999",
    );
    let r = get(port, "/m/");
    assert_eq!((r.sg_status(), version(&r)), ("HIT", 99_999_999), "{r}");
}

/// Files served by nginx itself, through its `open_file_cache`.
const FILES_LOCATION: &str = r#"
        location /files/ {
            root {{tmp}};
            open_file_cache max=10000 inactive=60s;
            add_header X-Static-Gen FILE;
        }
"#;

/// The kept pages leave nginx's own descriptor users room: with
/// `worker_rlimit_nofile 3000`, 2,000 pages served and kept, nginx's
/// `open_file_cache` still opens 1,200 files of another location (the
/// module takes half of what the limit leaves beside `worker_connections`;
/// taking all of it, the files ran out of descriptors).
#[test]
fn kept_pages_leave_room_for_open_file_cache() {
    let (up, _) = versioned_upstream(Duration::ZERO);
    let nginx = nginx(&up, "", "")
        .var("locations", FILES_LOCATION)
        .main_conf("worker_rlimit_nofile 3000;")
        .start();
    let port = nginx.port();
    let files = nginx.path("files");
    fs::create_dir_all(&files).unwrap();
    let file_uris: Vec<String> = (0..1200)
        .map(|i| {
            fs::write(files.join(format!("{i}.html")), format!("file {i}")).unwrap();
            format!("/files/{i}.html")
        })
        .collect();
    let pages: Vec<String> = (0..2000).map(|i| format!("/k/{i}/")).collect();
    get_all(port, &pages, 4);
    assert!(get_all(port, &pages, 4).iter().all(|s| s == "HIT"));
    let worker = nginx.worker_pids()[0];
    let (kept, _) = descriptors_into(worker, &nginx.path("gen"));
    assert!((900..=1000).contains(&kept), "{kept} pages kept open");
    assert!(get_all(port, &file_uris, 4).iter().all(|s| s == "FILE"));
    assert!(get_all(port, &pages, 4).iter().all(|s| s == "HIT"));
    assert!(
        !nginx.error_log().contains("Too many open files"),
        "{}",
        nginx.error_log()
    );
}
