//! Failures while storing: a full disk, a reserved directory that cannot be
//! created, a worker out of file descriptors, and several workers missing
//! the same URI at once. The client always gets its full response, the
//! failure is logged once per cause at `error` with the path and errno, and
//! no temporary file remains.
mod common;

use std::fs;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;

const CONF: &str = r#"
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        location / {
            static_gen on;
            static_gen_root {{tmp}}/{{root}};
            add_header X-Static-Gen $static_gen_status always;
            proxy_pass http://127.0.0.1:{{up}};
        }
    }
"#;

fn setup(up: &Upstream, root: &str) -> Nginx {
    Nginx::new(CONF).var("up", up.port()).var("root", root)
}

/// `len` bytes of text, the same for every call.
fn text_body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
        .collect()
}

/// Error-log lines at `level` about a page that was not stored.
fn not_stored_lines(nginx: &NginxHandle, level: &str) -> Vec<String> {
    nginx
        .log_lines(&[level])
        .into_iter()
        .filter(|l| l.contains("static_gen: page not stored"))
        .collect()
}

/// Waits for the first `[level]` "page not stored" line beyond the first
/// `skip` ones and returns it.
fn wait_not_stored_line(nginx: &NginxHandle, level: &str, skip: usize) -> String {
    assert!(
        wait_until(TIMEOUT, || not_stored_lines(nginx, level).len() > skip),
        "no [{level}] \"page not stored\" line in the error log:\n{}",
        nginx.error_log()
    );
    not_stored_lines(nginx, level).swap_remove(skip)
}

#[test]
fn full_disk_still_serves_and_logs_once_per_cause() {
    const BIG: usize = 1 << 20;
    let up = Upstream::start(|req| match req.path.as_str() {
        "/small" => Plan::response(200, &[("Content-Type", "text/html")], &text_body(1024)),
        _ => Plan::response(200, &[("Content-Type", "text/html")], &text_body(BIG)),
    });
    let setup = setup(&up, "small");
    // declared first, so dropped (nginx stopped, its temp directory
    // removed) after the tmpfs is unmounted; mounted before nginx starts,
    // which opens the tree at once
    let nginx;
    let Some(_tmpfs) = Mount::tmpfs(&setup.tmp().join("small"), "1m") else {
        return;
    };
    nginx = setup.start();
    let root = nginx.path("small");
    let port = nginx.port();

    let first = get(port, "/big");
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.sg_status(), "MISS");
    assert!(first.complete);
    assert_eq!(first.body.len(), BIG);
    assert!(first.body == text_body(BIG), "the client body is damaged");

    let line = wait_not_stored_line(&nginx, "error", 0);
    assert!(
        line.contains(&format!("{}/.static_gen/tmp/", root.display())),
        "no temp path in: {line}"
    );
    assert!(line.contains("No space left on device"), "errno in: {line}");
    assert_no_temp_files(&root);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!root.join("big.html").exists(), "a partial page was stored");

    // the same failure again: logged, but not at error level
    let second = get(port, "/big");
    assert_eq!(second.sg_status(), "MISS");
    assert!(second.body == text_body(BIG), "the client body is damaged");
    let info = wait_not_stored_line(&nginx, "info", 0);
    assert!(info.contains("No space left on device"), "{info}");
    assert_eq!(
        not_stored_lines(&nginx, "error").len(),
        1,
        "the same cause was logged at error twice:\n{}",
        not_stored_lines(&nginx, "error").join("\n")
    );
    assert_no_temp_files(&root);
    assert!(!root.join("big.html").exists());

    // the failed writes freed their space: a small page still fits
    let small = get(port, "/small");
    assert_eq!(small.sg_status(), "MISS");
    let page = root.join("small.html");
    assert!(
        wait_until(TIMEOUT, || page.exists()),
        "the small page was not stored:\n{}",
        nginx.error_log()
    );
    assert_eq!(split_page(&fs::read(&page).unwrap()).1, text_body(1024));
    let hit = get(port, "/small");
    assert_eq!(hit.sg_status(), "HIT", "{hit}");
    assert_eq!(hit.body, text_body(1024));
    assert_no_temp_files(&root);
    nginx.assert_no_alerts();
}

/// A variant the compressor thread cannot write (the disk has room for the
/// page, not for the page with its variants) is logged once at `error`
/// with its path and errno, by the worker (the thread has no nginx log);
/// the identity page stays and is served.
#[test]
fn a_variant_that_does_not_fit_is_logged_once() {
    const BIG: usize = 300_000;
    let up = Upstream::start(|req| {
        let len = if req.path == "/big" { BIG } else { 2048 };
        Plan::response(200, &[("Content-Type", "text/html")], &text_body(len))
    });
    let setup = setup(&up, "small");
    let nginx;
    // after the page, its tree's own files and the tmpfs's, 276k are left
    let Some(_tmpfs) = Mount::tmpfs(&setup.tmp().join("small"), "1m") else {
        return;
    };
    nginx = setup.start();
    let root = nginx.path("small");
    let port = nginx.port();
    assert_eq!(get(port, "/big").sg_status(), "MISS");
    assert!(wait_until(TIMEOUT, || root.join("big.html").exists()));
    // the worker logs what its compressor reported when it hands it the
    // next page
    let variant_lines = || -> Vec<String> {
        nginx
            .log_lines(&["error"])
            .into_iter()
            .filter(|l| l.contains("static_gen: variants not stored"))
            .collect()
    };
    let mut n = 0;
    let logged = wait_until(TIMEOUT, || {
        n += 1;
        if n % 20 == 1 {
            get(port, &format!("/next-{n}"));
        }
        !variant_lines().is_empty()
    });
    assert!(
        logged,
        "no \"variants not stored\" line:\n{}",
        nginx.error_log()
    );
    let line = &variant_lines()[0];
    assert!(line.contains("No space left on device"), "errno in: {line}");
    assert!(
        line.contains(&format!("{}/.static_gen/tmp/", root.display())),
        "no temp path in: {line}"
    );
    assert_no_temp_files(&root);
    let page = fs::read(root.join("big.html")).unwrap();
    assert!(
        page.starts_with(b"static_gen 1\n"),
        "the identity page stays"
    );
    let hit = get_with(port, "/big", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(hit.sg_status(), "HIT", "{hit}");
    assert!(hit.body == text_body(BIG));
    assert_eq!(variant_lines().len(), 1, "{}", nginx.error_log());
    nginx.assert_no_alerts();
}

/// The body of the `n`th response of the racing upstream: every response
/// has the same length, and its bytes tell which request it answered.
fn numbered_body(n: usize) -> Vec<u8> {
    const LEN: usize = 200_000;
    let line = format!("request {n:05}\n");
    line.as_bytes().iter().copied().cycle().take(LEN).collect()
}

/// The request number a body claims to answer (from its first line).
fn number_of(body: &[u8]) -> Option<usize> {
    let line = body.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .strip_prefix("request ")?
        .parse()
        .ok()
}

#[test]
fn concurrent_misses_store_one_complete_body() {
    const CLIENTS: usize = 50;
    let counter = Arc::new(AtomicUsize::new(0));
    let up = {
        let counter = counter.clone();
        Upstream::start(move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let body = numbered_body(n);
            let quarter = body.len() / 4;
            let mut plan = Plan::new().write(response_head(
                200,
                &[
                    ("Content-Type", "text/html"),
                    ("Content-Length", &body.len().to_string()),
                ],
            ));
            for (i, part) in body.chunks(quarter).enumerate() {
                if i > 0 {
                    plan = plan.sleep_ms(60);
                }
                plan = plan.write(part);
            }
            plan
        })
    };
    let nginx = setup(&up, "gen").workers(4).start();
    let port = nginx.port();
    let root = nginx.path("gen");

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                get(port, "/race/")
            })
        })
        .collect();
    let responses: Vec<Response> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();

    let served = counter.load(Ordering::SeqCst);
    let mut misses = 0;
    for r in &responses {
        assert_eq!(r.status, 200, "{r}");
        assert!(r.complete, "incomplete response: {} bytes", r.body.len());
        let n = number_of(&r.body).unwrap_or_else(|| panic!("not an upstream body: {r}"));
        assert!(n < served, "request {n} was never answered by the upstream");
        assert!(
            r.body == numbered_body(n),
            "the body of request {n} is damaged or mixed"
        );
        misses += usize::from(r.sg_status() == "MISS");
    }
    assert!(
        served >= 2,
        "only {served} request reached the upstream: no race happened"
    );
    assert_eq!(misses, served, "every MISS went upstream once");

    let page = root.join("race/index.html");
    assert!(wait_until(TIMEOUT, || page.exists()), "nothing was stored");
    // all stores are over once no temporary file is left
    assert_no_temp_files(&root);
    let (header, body) = split_page(&fs::read(&page).unwrap());
    let body = body.as_slice();
    let n = number_of(body).expect("the stored page is not an upstream body");
    assert!(n < served);
    assert_eq!(
        header,
        "static_gen 1\ncontent-type: text/html\nuri: /race/\n\n"
    );
    assert!(
        body == numbered_body(n),
        "the stored page is not the single complete body of request {n}"
    );
    let hit = get(port, "/race/");
    assert_eq!(hit.sg_status(), "HIT");
    assert!(hit.body == body);
    assert_no_temp_files(&root);
    nginx.assert_no_alerts();
}

#[test]
fn reserved_directory_that_is_a_file_still_serves_and_logs() {
    let up = Upstream::fixed(Plan::html("<p>served anyway</p>"));
    let setup = setup(&up, "gen");
    // `<root>/.static_gen` is a regular file: the temporary directory
    // `<root>/.static_gen/tmp` (or anything else there) cannot be created.
    fs::create_dir_all(setup.tmp().join("gen")).unwrap();
    fs::write(setup.tmp().join("gen/.static_gen"), b"in the way").unwrap();
    let nginx = setup.start();
    let root = nginx.path("gen");

    for _ in 0..2 {
        let r = get(nginx.port(), "/page");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.sg_status(), "MISS", "{r}");
        assert_eq!(r.text(), "<p>served anyway</p>");
    }
    // the reserved directory is named
    let line = wait_not_stored_line(&nginx, "error", 0);
    assert!(
        line.contains(&format!("\"{}/.static_gen\"", root.display())),
        "no path of the reserved directory in: {line}"
    );
    assert!(line.contains("Not a directory"), "errno in: {line}");
    wait_not_stored_line(&nginx, "info", 0);
    assert_eq!(not_stored_lines(&nginx, "error").len(), 1);
    assert!(!root.join("page.html").exists(), "the page was stored");
    assert_eq!(fs::read(root.join(".static_gen")).unwrap(), b"in the way");
    nginx.assert_no_alerts();
}

/// Descriptors of a process numbered below `limit` (those are what count
/// against its `RLIMIT_NOFILE`: an inherited descriptor above it, such as a
/// jobserver pipe, does not take a slot).
fn used_fds(pid: u32, limit: usize) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<usize>().ok())
                .filter(|&fd| fd < limit)
                .count()
        })
        .unwrap_or(0)
}

/// Client ports of the connections to `port` that process `pid` holds
/// (accepted, not yet closed), sorted.
fn accepted_from(pid: u32, port: u16) -> Vec<u16> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_str()?;
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let hex_port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut ports: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, inode) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(9)?);
            let listening = *state == "0A";
            (!listening && hex_port(local)? == port && inodes.iter().any(|i| i == inode))
                .then(|| hex_port(remote))
                .flatten()
        })
        .collect();
    ports.sort_unstable();
    ports
}

/// The soft `RLIMIT_NOFILE` of a process.
fn fd_limit(pid: u32) -> usize {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no open files limit in:\n{limits}"))
}

#[test]
fn worker_out_of_file_descriptors_still_serves() {
    let up = Upstream::fixed(Plan::html("<p>served with no fd to spare</p>"));
    let nginx = setup(&up, "gen")
        .main_conf("worker_rlimit_nofile 64;")
        .start();
    let port = nginx.port();
    let root = nginx.path("gen");
    let worker = nginx.worker_pids()[0];
    // the kernel accepts the harness's start-up probe on the master's
    // socket: a request answered by the worker (and not stored, so that no
    // page stays open) shows it has finished starting up (its limit set,
    // the master's descriptors it does not need closed)
    assert_eq!(get(port, "/started?q=1").sg_status(), "BYPASS");
    let limit = fd_limit(worker);
    assert_eq!(limit, 64);

    // Idle client connections bring the worker to two descriptors below its
    // limit: the request's own connection and the upstream connection take
    // the last two, so opening the temporary file fails with EMFILE. Counted
    // once the worker holds no client connection (the harness's start-up
    // probe is closed), checked once it holds exactly the idle ones.
    assert!(
        wait_until(TIMEOUT, || accepted_from(worker, port).is_empty()),
        "the worker still holds connections from {:?}",
        accepted_from(worker, port)
    );
    let used = used_fds(worker, limit);
    let spare = (limit - 2)
        .checked_sub(used)
        .unwrap_or_else(|| panic!("the idle worker already uses {used} of {limit} descriptors"));
    let idle: Vec<TcpStream> = (0..spare)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut mine: Vec<u16> = idle
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    mine.sort_unstable();
    assert!(
        wait_until(TIMEOUT, || accepted_from(worker, port) == mine),
        "the worker holds connections from {:?}, not just the idle {mine:?}",
        accepted_from(worker, port)
    );
    assert_eq!(used_fds(worker, limit), limit - 2);

    let r = get(port, "/page");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.text(), "<p>served with no fd to spare</p>");
    let line = wait_not_stored_line(&nginx, "error", 0);
    assert!(
        line.contains(&format!("\"{}/.static_gen/", root.display())),
        "no path under the reserved directory in: {line}"
    );
    assert!(line.contains("Too many open files"), "errno in: {line}");
    assert_no_temp_files(&root);
    assert!(!root.join("page.html").exists());

    // with descriptors to spare again, the same worker stores the page
    drop(idle);
    assert!(wait_until(TIMEOUT, || used_fds(worker, limit) < limit - 2));
    assert_eq!(get(port, "/page").sg_status(), "MISS");
    assert!(wait_until(TIMEOUT, || root.join("page.html").exists()));
    assert_eq!(get(port, "/page").sg_status(), "HIT");
    assert_eq!(nginx.worker_pids(), vec![worker], "the worker was replaced");
    assert!(
        !nginx.error_log().contains("exited on signal"),
        "{}",
        nginx.error_log()
    );
    nginx.assert_no_alerts();
}
