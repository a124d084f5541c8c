//! Stores pages with the module's own code path for a MISS (journal mark,
//! page writer, install under the tree lock) and nothing else: no nginx, no
//! HTTP. `ci/bench` compares its CPU time per page with what a MISS costs
//! the nginx worker beyond a plain `proxy_pass`.
//!
//! Usage: `store_floor ROOT COUNT BODY_BYTES`; prints the CPU time (user and
//! system) per page in microseconds, and removes what it wrote.

use std::path::Path;
use std::process::ExitCode;

use static_gen_logic::journal;
use static_gen_logic::page::encode_header;
use static_gen_logic::store::{PageLimits, PageWriter};
use static_gen_logic::tags::Tags;
use static_gen_logic::tree::Tree;

/// nginx hands a proxied body to the filters in buffers of this size.
const NGINX_BUFFER: usize = 4096;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(root), Some(Ok(count)), Some(Ok(size))) = (
        args.first(),
        args.get(1).map(|n| n.parse::<u64>()),
        args.get(2).map(|n| n.parse::<usize>()),
    ) else {
        eprintln!("usage: store_floor ROOT COUNT BODY_BYTES");
        return ExitCode::from(2);
    };
    let root = Path::new(root);
    let started = cpu_time_us();
    if let Err(e) = store_pages(root, count, size) {
        eprintln!("store_floor: {e}");
        return ExitCode::FAILURE;
    }
    let per_page = (cpu_time_us() - started) / count.max(1) as f64;
    println!("{per_page:.1}");
    let _ = std::fs::remove_dir_all(root);
    ExitCode::SUCCESS
}

/// Stores `count` pages `/floor/<n>/` (a directory per page, as a MISS of
/// a Django-style URI does) of `size` bytes each.
fn store_pages(root: &Path, count: u64, size: usize) -> Result<(), Box<dyn std::error::Error>> {
    let body = vec![b'x'; size];
    let tree = Tree::open(root)?;
    for n in 0..count {
        let uri = format!("/floor/{n}/");
        let mark = journal::mark(&tree)?;
        let header = encode_header(b"text/html", uri.as_bytes(), b"")?;
        let limits = PageLimits {
            expected: Some(size as u64),
            ..PageLimits::default()
        };
        let mut writer = PageWriter::create(&tree, &header, limits)?;
        for piece in body.chunks(NGINX_BUFFER) {
            writer.write(piece)?;
        }
        let rel = format!("floor/{n}/index.html");
        // as the module does before installing: is the tree still this one?
        if !tree.is_current()
            || writer
                .commit_unless_purged(&tree, rel.as_bytes(), mark, uri.as_bytes(), &Tags::NONE)?
                .is_none()
        {
            return Err("a purge was recorded meanwhile".into());
        }
    }
    Ok(())
}

/// User and system CPU time of this process so far.
fn cpu_time_us() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}
