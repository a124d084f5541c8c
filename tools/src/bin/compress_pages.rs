//! What the module's compressed variants cost and save on a set of real
//! pages (`ci/bench` runs it on the demo blog's pages, with case 4): for
//! each encoding at the module's default level (`gzip` 9, `br` 11, `zstd`
//! 19), the bytes of the pages compressed against their identity bytes,
//! and the CPU time compressing one page takes. Every page is compressed
//! with the module's own [`static_gen_logic::compress::compress`], as the
//! compressor thread does.
//!
//! ```text
//! compress_pages [--runs N] FILE...
//! ```
//!
//! Each file is one page's body. The time of a page is the median over N
//! runs (default 5) of the thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) of
//! one `compress` call, on this program's only thread: on a shared machine
//! wall time would count the neighbours too. Prints a table on stderr and
//! one JSON object per encoding on stdout (identity first, with its bytes
//! only), for `t/upstream/bench_tools.py`:
//!
//! ```text
//! {"kind": "compress", "encoding": "br", "level": 11, "pages": 24,
//!  "bytes": 30211, "identity_bytes": 118000, "median_bytes": 1200,
//!  "median_percent": 24.1, "cpu_ms_median": 13.2, "cpu_ms_mean": 13.9,
//!  "cpu_ms_max": 21.0, "cpu_ms_total": 333.6}
//! ```
//!
//! (`median_percent`: the median over the pages of each page's compressed
//! size as a percentage of its own; the CPU figures are over the pages'
//! medians.) The module keeps a variant only when it is smaller than the
//! page, and compresses no page under 1 KB; this tool reports what
//! `compress` makes, for every page given.

use std::fmt::Write as _;
use std::process::ExitCode;

use static_gen_logic::compress::compress;
use static_gen_logic::encoding::{Encoding, Variant};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 5;
    if args.first().map(String::as_str) == Some("--runs") {
        match args.get(1).and_then(|n| n.parse().ok()) {
            Some(n) if n > 0 => runs = n,
            _ => return usage(),
        }
        args.drain(..2);
    }
    if args.is_empty() || args.iter().any(|a| a.starts_with('-')) {
        return usage();
    }
    let mut pages = Vec::new();
    for path in &args {
        match std::fs::read(path) {
            Ok(body) if !body.is_empty() => pages.push(body),
            Ok(_) => {
                eprintln!("compress_pages: {path} is empty");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("compress_pages: {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let identity: Vec<usize> = pages.iter().map(Vec::len).collect();
    let identity_total: usize = identity.iter().sum();
    let mut rows = vec![Row {
        encoding: Encoding::Identity,
        level: 0,
        sizes: identity.clone(),
        cpu_ms: Vec::new(),
    }];
    for encoding in Encoding::COMPRESSED {
        let variant = Variant::new(encoding, encoding.default_level());
        let mut row = Row {
            encoding,
            level: variant.level,
            sizes: Vec::new(),
            cpu_ms: Vec::new(),
        };
        for page in &pages {
            let mut times = Vec::with_capacity(runs);
            let mut size = 0;
            for _ in 0..runs {
                let start = thread_cpu_ms();
                let out = match compress(variant, page) {
                    Ok(out) => out,
                    Err(e) => {
                        eprintln!("compress_pages: {encoding} {}: {e}", variant.level);
                        return ExitCode::FAILURE;
                    }
                };
                times.push(thread_cpu_ms() - start);
                size = out.len();
            }
            row.sizes.push(size);
            row.cpu_ms.push(median(&mut times));
        }
        rows.push(row);
    }

    eprintln!(
        "{} pages, {} to {} bytes, {identity_total} in all; CPU: median over {runs} run(s) per page",
        pages.len(),
        identity.iter().min().unwrap_or(&0),
        identity.iter().max().unwrap_or(&0),
    );
    eprintln!(
        "    {:<12} {:>9} {:>8} {:>12} {:>12} {:>11} {:>11}",
        "encoding", "bytes", "% ident", "median bytes", "median %", "ms/page med", "ms/page max"
    );
    let mut json = String::new();
    for row in &rows {
        let summary = row.summary(&identity, identity_total);
        eprintln!(
            "    {:<12} {:>9} {:>7.1}% {:>12} {:>11.1}% {:>11} {:>11}",
            row.label(),
            summary.bytes,
            summary.percent,
            summary.median_bytes,
            summary.median_percent,
            summary
                .cpu_median
                .map_or("".into(), |ms| format!("{ms:.2}")),
            summary.cpu_max.map_or("".into(), |ms| format!("{ms:.2}")),
        );
        let _ = write!(
            json,
            "{{\"kind\": \"compress\", \"encoding\": \"{}\", \"level\": {}, \"pages\": {}, \
             \"bytes\": {}, \"identity_bytes\": {identity_total}, \"median_bytes\": {}, \
             \"median_percent\": {:.3}",
            row.encoding,
            row.level,
            pages.len(),
            summary.bytes,
            summary.median_bytes,
            summary.median_percent,
        );
        if let (Some(med), Some(mean), Some(max), Some(total)) = (
            summary.cpu_median,
            summary.cpu_mean,
            summary.cpu_max,
            summary.cpu_total,
        ) {
            let _ = write!(
                json,
                ", \"cpu_ms_median\": {med:.4}, \"cpu_ms_mean\": {mean:.4}, \
                 \"cpu_ms_max\": {max:.4}, \"cpu_ms_total\": {total:.4}, \"runs\": {runs}"
            );
        }
        json.push_str("}\n");
    }
    print!("{json}");
    ExitCode::SUCCESS
}

struct Row {
    encoding: Encoding,
    level: u32,
    /// Per page, in the order given.
    sizes: Vec<usize>,
    /// Per page, the median CPU time of its runs (empty for identity).
    cpu_ms: Vec<f64>,
}

struct Summary {
    bytes: usize,
    percent: f64,
    median_bytes: usize,
    median_percent: f64,
    cpu_median: Option<f64>,
    cpu_mean: Option<f64>,
    cpu_max: Option<f64>,
    cpu_total: Option<f64>,
}

impl Row {
    fn label(&self) -> String {
        match self.encoding {
            Encoding::Identity => "identity".into(),
            e => format!("{e} {}", self.level),
        }
    }

    fn summary(&self, identity: &[usize], identity_total: usize) -> Summary {
        let bytes: usize = self.sizes.iter().sum();
        let mut sizes: Vec<f64> = self.sizes.iter().map(|&s| s as f64).collect();
        let mut percents: Vec<f64> = self
            .sizes
            .iter()
            .zip(identity)
            .map(|(&s, &i)| s as f64 * 100.0 / i as f64)
            .collect();
        let mut cpu = self.cpu_ms.clone();
        let timed = !cpu.is_empty();
        let total: f64 = cpu.iter().sum();
        Summary {
            bytes,
            percent: bytes as f64 * 100.0 / identity_total as f64,
            median_bytes: median(&mut sizes).round() as usize,
            median_percent: median(&mut percents),
            cpu_median: timed.then(|| median(&mut cpu)),
            cpu_mean: timed.then(|| total / cpu.len() as f64),
            cpu_max: timed.then(|| cpu.iter().copied().fold(0.0, f64::max)),
            cpu_total: timed.then_some(total),
        }
    }
}

fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The calling thread's CPU time, in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn usage() -> ExitCode {
    eprintln!("usage: compress_pages [--runs N] FILE...");
    ExitCode::from(2)
}
