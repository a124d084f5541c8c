//! Measures the compressors a stored page's variants could be made with:
//! the compressed size and the CPU time per page, for each encoding, level
//! and crate, on real HTML pages. The reasoning and numbers that chose the
//! defaults are at the top of `src/compress.rs`.
//!
//! Usage: `compress_bench [--runs N] [--only PREFIX] FILE|DIR...` (the
//! `.html` files of a DIR; `--only gzip` measures the compressors whose
//! names start with `gzip`). Prints one line per compressor and group of samples (the files
//! whose names start with the same word before `-`): the size of the group
//! compressed, as a percentage of its size, and the CPU time per page (the
//! mean over the group of each page's median over N runs, default 5).
//!
//! flate2 is measured with the backend compiled in: miniz_oxide by default,
//! or `--features bench-zlib-rs`, `bench-zlib` (the system's zlib) or
//! `bench-zlib-ng`; `--features bench-others` adds zopfli, libdeflate and
//! Google's C brotli. For example:
//!
//! ```sh
//! cargo run --release -p static-gen-logic --example compress_bench \
//!     --features bench-others -- target/compress-samples
//! ```
//!
//! The gzip (flate2), br (brotli) and zstd rows are the module's own
//! [`compress::compress`]; the others call their crates directly.
//!
//! Every output is decoded again and compared with the input, so a
//! misused compressor cannot win.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use static_gen_logic::compress;
use static_gen_logic::encoding::{Encoding, Variant};

type Compressor = Box<dyn Fn(&[u8]) -> Vec<u8>>;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 5;
    let mut only = String::new();
    loop {
        match (args.first().map(String::as_str), args.get(1)) {
            (Some("--runs"), Some(n)) => match n.parse() {
                Ok(n) if n > 0 => runs = n,
                _ => return usage(),
            },
            (Some("--only"), Some(prefix)) => only = prefix.clone(),
            _ => break,
        }
        args.drain(..2);
    }
    if args.is_empty() {
        return usage();
    }
    let samples = match load(&args) {
        Ok(samples) if !samples.is_empty() => samples,
        Ok(_) => {
            eprintln!("compress_bench: no .html files");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("compress_bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut groups: BTreeMap<String, Vec<&(PathBuf, Vec<u8>)>> = BTreeMap::new();
    for sample in &samples {
        let name = sample.0.file_name().unwrap_or_default().to_string_lossy();
        let group = name
            .split(['-', '.'])
            .next()
            .unwrap_or_default()
            .to_string();
        groups.entry(group).or_default().push(sample);
    }
    println!("flate2 backend: {}", FLATE2_BACKEND);
    for (group, pages) in &groups {
        let total: usize = pages.iter().map(|(_, body)| body.len()).sum();
        let sizes: Vec<usize> = pages.iter().map(|(_, body)| body.len()).collect();
        println!(
            "\n{group}: {} pages, {total} bytes (min {}, max {})",
            pages.len(),
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0)
        );
        println!(
            "{:<28} {:>9} {:>7} {:>10}",
            "compressor", "bytes", "size %", "ms/page"
        );
        let chosen = compressors()
            .into_iter()
            .filter(|(name, ..)| name.starts_with(&only));
        for (name, encoding, compressor) in chosen {
            let mut compressed = 0;
            let mut ms = 0.0;
            for (path, body) in pages {
                let mut times = Vec::with_capacity(runs);
                let mut out = Vec::new();
                for _ in 0..runs {
                    let start = cpu_ms();
                    out = compressor(body);
                    times.push(cpu_ms() - start);
                }
                if decode(encoding, &out) != *body {
                    eprintln!("{name}: {} does not decode back", path.display());
                    return ExitCode::FAILURE;
                }
                times.sort_by(f64::total_cmp);
                ms += times[times.len() / 2];
                compressed += out.len();
            }
            println!(
                "{name:<28} {compressed:>9} {:>7.2} {:>10.3}",
                100.0 * compressed as f64 / total as f64,
                ms / pages.len() as f64
            );
        }
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: compress_bench [--runs N] [--only PREFIX] FILE|DIR...");
    ExitCode::from(2)
}

fn load(args: &[String]) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut paths = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            for entry in std::fs::read_dir(path)? {
                let entry = entry?.path();
                if entry.extension().is_some_and(|e| e == "html") {
                    paths.push(entry);
                }
            }
        } else {
            paths.push(path.to_path_buf());
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| std::fs::read(&p).map(|body| (p, body)))
        .collect()
}

/// The thread's CPU time, in milliseconds: on a shared machine wall time
/// would measure the neighbours too.
fn cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn decode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Identity => out.extend_from_slice(data),
        Encoding::Gzip => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        Encoding::Br => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .expect("brotli");
        }
        Encoding::Zstd => {
            zstd::stream::read::Decoder::new(data)
                .expect("zstd")
                .read_to_end(&mut out)
                .expect("zstd");
        }
    }
    out
}

#[cfg(feature = "bench-zlib-ng")]
const FLATE2_BACKEND: &str = "zlib-ng";
#[cfg(all(feature = "bench-zlib", not(feature = "bench-zlib-ng")))]
const FLATE2_BACKEND: &str = "zlib (system)";
#[cfg(all(
    feature = "bench-zlib-rs",
    not(any(feature = "bench-zlib", feature = "bench-zlib-ng"))
))]
const FLATE2_BACKEND: &str = "zlib-rs";
#[cfg(not(any(
    feature = "bench-zlib-rs",
    feature = "bench-zlib",
    feature = "bench-zlib-ng"
)))]
const FLATE2_BACKEND: &str = "miniz_oxide";

fn compressors() -> Vec<(String, Encoding, Compressor)> {
    let mut all: Vec<(String, Encoding, Compressor)> = Vec::new();
    for level in [1, 4, 6, 9] {
        all.push((
            format!("gzip flate2 {level}"),
            Encoding::Gzip,
            Box::new(move |body: &[u8]| {
                compress::compress(Variant::new(Encoding::Gzip, level), body)
                    .expect("gzip compresses")
            }),
        ));
    }
    for quality in [3, 4, 5, 6, 9, 11] {
        all.push((
            format!("br brotli(rust) {quality}"),
            Encoding::Br,
            Box::new(move |body: &[u8]| {
                compress::compress(Variant::new(Encoding::Br, quality), body)
                    .expect("brotli compresses")
            }),
        ));
    }
    for level in [1, 3, 6, 9, 19, 22] {
        all.push((
            format!("zstd zstd(C) {level}"),
            Encoding::Zstd,
            Box::new(move |body: &[u8]| {
                compress::compress(Variant::new(Encoding::Zstd, level), body)
                    .expect("zstd compresses")
            }),
        ));
    }
    others(&mut all);
    all
}

#[cfg(not(feature = "bench-others"))]
fn others(_: &mut Vec<(String, Encoding, Compressor)>) {}

#[cfg(feature = "bench-others")]
fn others(all: &mut Vec<(String, Encoding, Compressor)>) {
    for level in [9, 12] {
        all.push((
            format!("gzip libdeflate {level}"),
            Encoding::Gzip,
            Box::new(move |body: &[u8]| {
                let lvl = libdeflater::CompressionLvl::new(level).unwrap();
                let mut compressor = libdeflater::Compressor::new(lvl);
                let mut out = vec![0; compressor.gzip_compress_bound(body.len())];
                let len = compressor.gzip_compress(body, &mut out).unwrap();
                out.truncate(len);
                out
            }),
        ));
    }
    for iterations in [5, 15] {
        all.push((
            format!("gzip zopfli i{iterations}"),
            Encoding::Gzip,
            Box::new(move |body: &[u8]| {
                let options = zopfli::Options {
                    iteration_count: std::num::NonZeroU64::new(iterations).unwrap(),
                    ..zopfli::Options::default()
                };
                let mut out = Vec::new();
                zopfli::compress(options, zopfli::Format::Gzip, body, &mut out).unwrap();
                out
            }),
        ));
    }
    for quality in [3, 4, 5, 6, 9, 11] {
        all.push((
            format!("br brotlic(C) {quality}"),
            Encoding::Br,
            Box::new(move |body: &[u8]| {
                let mut out = vec![0; body.len() + 1024];
                let len = brotlic::compress(
                    body,
                    &mut out,
                    brotlic::Quality::new(quality).unwrap(),
                    brotlic::WindowSize::new(22).unwrap(),
                    brotlic::CompressionMode::Text,
                )
                .unwrap();
                out.truncate(len);
                out
            }),
        ));
    }
}
