//! Compressing a stored page's body into its variants, off nginx's event
//! loop: plain synchronous functions, for a background thread.
//!
//! [`compress_page`] (or [`compress_file`], from a page file) makes each
//! configured variant, keeps only those smaller than the body, and makes
//! none for a body shorter than [`CompressConfig::min_length`].
//! [`compress_stream`] compresses a reader into a writer in bounded memory.
//!
//! # Crates, chosen by measurement
//!
//! `examples/compress_bench.rs` on two sets of real pages: the test blog's
//! (`t/django`, seeded, rendered by Django: home, archive, archive page 3,
//! a category, about, two articles; 1.8 to 5.8 KB, 33,831 bytes in all) and
//! five pages of Rust's HTML documentation (mdBook and rustdoc pages with
//! their navigation, 26 to 98 KB, 285,515 bytes). Size: the set compressed,
//! as a percentage of its size. Time: CPU time per page (mean over the set
//! of each page's median over 5 runs), release build, on a 2-core machine
//! shared with other jobs (load average about 4), so the times are rough;
//! the sizes are exact.
//!
//! | coding, crate, level     | blog size | blog ms | docs size | docs ms |
//! |--------------------------|----------:|--------:|----------:|--------:|
//! | gzip flate2 (miniz) 6    |    31.35% |    0.13 |    20.00% |     1.5 |
//! | gzip flate2 (miniz) 9    |    31.35% |    0.13 |    19.96% |     1.8 |
//! | gzip flate2 (zlib) 9     |    31.33% |    0.10 |    19.93% |     1.9 |
//! | gzip flate2 (zlib-rs) 9  |    31.36% |    0.07 |    20.01% |     1.1 |
//! | gzip flate2 (zlib-ng) 9  |    31.36% |    0.20 |    20.01% |     1.6 |
//! | gzip libdeflate 9        |    31.32% |    0.08 |    19.81% |     1.3 |
//! | gzip libdeflate 12       |    30.75% |    1.2  |    19.13% |    26   |
//! | gzip zopfli 5 iterations |    30.62% |   30    |    18.89% |   486   |
//! | gzip zopfli 15 (default) |    30.62% |   42    |    18.88% |   697   |
//! | br brotli (Rust) 5       |    27.31% |    1.3  |    18.65% |     3.5 |
//! | br brotli (Rust) 9       |    27.16% |    8.5  |    18.42% |    32   |
//! | br brotli (Rust) 11      |    24.41% |   13.8  |    16.27% |   156   |
//! | br brotlic (Google C) 5  |    27.31% |    0.19 |    18.65% |     1.3 |
//! | br brotlic (Google C) 11 |    24.41% |   10.8  |    16.26% |   113   |
//! | zstd (C) 3               |    32.91% |    0.04 |    21.46% |     0.28|
//! | zstd (C) 9               |    31.51% |    0.16 |    19.55% |     1.2 |
//! | zstd (C) 19              |    30.81% |    2.3  |    18.70% |    52   |
//! | zstd (C) 22, window 8 MB |    30.81% |    2.3  |    18.69% |    69   |
//!
//! - gzip: `flate2` with its default pure-Rust backend (miniz_oxide). All
//!   four backends give the same size within 0.1 point at level 9, and 2 ms
//!   for a 57 KB page is nothing next to brotli. libdeflate 12 is 3 to 4%
//!   smaller and zopfli 5%, at 15 and 300 times the CPU (zopfli: 0.7 s for a
//!   98 KB page), for the variant that only clients without brotli get (curl,
//!   bots, old browsers): neither is worth a C library or the CPU.
//! - br: `brotli`, the pure-Rust port: the very same output as Google's C
//!   library (the sizes agree to the byte on the blog), 1.3 to 1.4 times its
//!   CPU at quality 11, without a second C build. Quality 11 is the point of
//!   storing variants: 10 to 12% smaller than quality 9 for 5 times the CPU,
//!   paid once per stored page (14 ms for a blog page, about 0.2 s for a
//!   100 KB one).
//! - zstd: `zstd` (the C library, vendored and linked statically). On HTML
//!   it loses to brotli 11 at every level (30.8% against 24.4% on the blog)
//!   and every browser that sends `zstd` also sends `br`, so with
//!   negotiation picking the smallest variant a zstd variant would hardly
//!   ever be sent: it is not in the default (`gzip br`). Levels above 19
//!   gain nothing on pages this size once the window is capped.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use crate::encoding::{CompressConfig, Encoding, Variant};

/// zstd frames declare a window of at most 2^23 bytes (8 MB): RFC 9659
/// lets clients refuse larger ones, and browsers do.
pub const ZSTD_WINDOW_LOG: u32 = 23;
/// Brotli's window: 2^22 bytes, its default and well inside RFC 7932's.
pub const BROTLI_WINDOW_LOG: u32 = 22;

/// Compresses `body` in one coding. Fails only for an identity variant or
/// a level out of range (a config from
/// [`crate::encoding::parse_compress`] has none).
pub fn compress(variant: Variant, body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() / 4 + 64);
    encode(variant, body, &mut out, Some(body.len() as u64))?;
    Ok(out)
}

/// Compresses what `reader` gives into `writer`, in one coding, in memory
/// bounded by the coding's window. Returns the compressed length.
pub fn compress_stream<R: Read, W: Write>(
    variant: Variant,
    reader: R,
    writer: W,
) -> io::Result<u64> {
    encode(variant, reader, writer, None)
}

/// `size`: the input's length, when known, lets the encoders fit their
/// windows and tables to it (zstd also declares it in the frame).
fn encode<R: Read, W: Write>(
    variant: Variant,
    mut reader: R,
    writer: W,
    size: Option<u64>,
) -> io::Result<u64> {
    if variant.encoding == Encoding::Identity || !variant.encoding.levels().contains(&variant.level)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no {} level {}", variant.encoding, variant.level),
        ));
    }
    let mut counted = Counted {
        inner: writer,
        len: 0,
    };
    match variant.encoding {
        Encoding::Identity => unreachable!(),
        Encoding::Gzip => {
            let level = flate2::Compression::new(variant.level);
            let mut encoder = flate2::write::GzEncoder::new(&mut counted, level);
            io::copy(&mut reader, &mut encoder)?;
            encoder.finish()?;
        }
        Encoding::Br => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: variant.level as i32,
                lgwin: BROTLI_WINDOW_LOG as i32,
                size_hint: size.map_or(0, |size| usize::try_from(size).unwrap_or(usize::MAX)),
                ..Default::default()
            };
            brotli::BrotliCompress(&mut reader, &mut counted, &params)?;
        }
        Encoding::Zstd => {
            let mut encoder =
                zstd::stream::write::Encoder::new(&mut counted, variant.level as i32)?;
            encoder.window_log(ZSTD_WINDOW_LOG)?;
            encoder.set_pledged_src_size(size)?;
            io::copy(&mut reader, &mut encoder)?;
            encoder.finish()?;
        }
    }
    counted.flush()?;
    Ok(counted.len)
}

/// A writer that counts what it is given.
struct Counted<W> {
    inner: W,
    len: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The variants of a page worth storing: each configured coding of `body`,
/// in the configured order, except those not smaller than `body`; none
/// when `body` is shorter than `config.min_length`.
pub fn compress_page(body: &[u8], config: &CompressConfig) -> io::Result<Vec<(Encoding, Vec<u8>)>> {
    let mut variants = Vec::new();
    if body.len() < config.min_length {
        return Ok(variants);
    }
    for &variant in &config.variants {
        let compressed = compress(variant, body)?;
        if compressed.len() < body.len() {
            variants.push((variant.encoding, compressed));
        }
    }
    Ok(variants)
}

/// [`compress_page`] for the body of a page file: the bytes of `file` from
/// `body_offset` (a [`crate::page::PageHeader`]'s) to its end.
pub fn compress_file(
    file: &File,
    body_offset: u64,
    config: &CompressConfig,
) -> io::Result<Vec<(Encoding, Vec<u8>)>> {
    let len = file.metadata()?.len().saturating_sub(body_offset);
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    if len < config.min_length || config.is_off() {
        return Ok(Vec::new());
    }
    let mut body = vec![0; len];
    file.read_exact_at(&mut body, body_offset)?;
    compress_page(&body, config)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::encoding::{parse_compress, DEFAULT_MIN_LENGTH};
    use crate::tree::tests::Scratch;
    use Encoding::{Br, Gzip, Zstd};

    /// An HTML page of about `len` bytes, the same every time.
    pub(crate) fn html(len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "static",
            "pages",
            "nginx",
            "the",
            "a",
            "module",
            "of",
            "comment",
            "article",
            "category",
            "purge",
            "generated",
            "served",
            "and",
            "every",
            "visitor",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut page = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Blog</title><link rel=\"stylesheet\" href=\"/static/blog.css\"></head>\n<body>\n",
        );
        let mut article = 0;
        while page.len() < len {
            article += 1;
            page.push_str(&format!(
                "<article class=\"item\"><h2><a href=\"/articles/article-{article}/\">"
            ));
            for _ in 0..6 + next(6) {
                page.push_str(WORDS[next(WORDS.len())]);
                page.push(' ');
            }
            page.push_str("</a></h2>\n<p>");
            for _ in 0..30 + next(40) {
                page.push_str(WORDS[next(WORDS.len())]);
                page.push(' ');
            }
            page.push_str(&format!(
                "</p><p class=\"meta\">{} comments</p></article>\n",
                next(9)
            ));
        }
        page.push_str("</body></html>\n");
        page.into_bytes()
    }

    fn decode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Identity => out.extend_from_slice(data),
            Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Br => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(data).unwrap();
                decoder.window_log_max(ZSTD_WINDOW_LOG).unwrap();
                decoder.read_to_end(&mut out).unwrap();
            }
        }
        out
    }

    #[test]
    fn every_encoding_and_level_decodes_back() {
        let body = html(6000);
        for encoding in Encoding::COMPRESSED {
            let levels = encoding.levels();
            let mut tried = vec![*levels.start(), encoding.default_level(), *levels.end()];
            tried.dedup();
            for level in tried {
                let variant = Variant::new(encoding, level);
                let compressed = compress(variant, &body).unwrap();
                assert_eq!(decode(encoding, &compressed), body, "{variant:?}");
                assert!(compressed.len() < body.len() / 2, "{variant:?}");
                let mut streamed = Vec::new();
                let len = compress_stream(variant, &body[..], &mut streamed).unwrap();
                assert_eq!(len, streamed.len() as u64);
                assert_eq!(decode(encoding, &streamed), body, "{variant:?} streamed");
            }
        }
    }

    #[test]
    fn gzip_members_are_the_same_every_time() {
        // no time or name in the header: a page stored twice is the same
        let body = html(2000);
        let once = compress(Variant::new(Gzip, 9), &body).unwrap();
        assert_eq!(once, compress(Variant::new(Gzip, 9), &body).unwrap());
        assert_eq!(&once[4..8], &[0, 0, 0, 0], "MTIME");
    }

    #[test]
    fn identity_and_levels_out_of_range_are_refused() {
        for variant in [
            Variant::new(Encoding::Identity, 0),
            Variant::new(Gzip, 0),
            Variant::new(Gzip, 10),
            Variant::new(Br, 12),
            Variant::new(Zstd, 0),
            Variant::new(Zstd, 23),
        ] {
            let error = compress(variant, b"body").unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{variant:?}");
        }
    }

    fn all() -> CompressConfig {
        parse_compress(&["gzip", "br", "zstd"]).unwrap()
    }

    fn encodings(variants: &[(Encoding, Vec<u8>)]) -> Vec<Encoding> {
        variants.iter().map(|(e, _)| *e).collect()
    }

    #[test]
    fn a_page_gets_each_configured_variant_in_order() {
        let body = html(20_000);
        let config = parse_compress(&["zstd=3", "gzip=6", "br=5"]).unwrap();
        let variants = compress_page(&body, &config).unwrap();
        assert_eq!(encodings(&variants), [Zstd, Gzip, Br]);
        for (encoding, data) in &variants {
            assert_eq!(decode(*encoding, data), body);
        }
        assert!(compress_page(&body, &CompressConfig::off())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn variants_not_smaller_than_the_body_are_dropped() {
        // xorshift output: incompressible
        let mut seed = 88172645463325252u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        assert!(compress_page(&noise, &all()).unwrap().is_empty());
        // half noise, half text: every coding saves something
        let mixed = [&noise[..2048], &html(4096)].concat();
        assert_eq!(
            encodings(&compress_page(&mixed, &all()).unwrap()),
            [Gzip, Br, Zstd]
        );
    }

    #[test]
    fn short_bodies_are_not_compressed() {
        let mut config = all();
        assert_eq!(config.min_length, DEFAULT_MIN_LENGTH);
        let body = html(3000);
        let short = &body[..DEFAULT_MIN_LENGTH - 1];
        assert!(compress_page(short, &config).unwrap().is_empty());
        let long_enough = &body[..DEFAULT_MIN_LENGTH];
        assert_eq!(compress_page(long_enough, &config).unwrap().len(), 3);
        config.min_length = 2000;
        assert!(compress_page(&body[..1999], &config).unwrap().is_empty());
        assert_eq!(compress_page(&body[..2000], &config).unwrap().len(), 3);
        config.min_length = 0;
        assert!(
            compress_page(b"", &config).unwrap().is_empty(),
            "not smaller"
        );
    }

    /// The window size a zstd frame declares (RFC 8878 §3.1.1.1).
    fn zstd_window(frame: &[u8]) -> u64 {
        assert_eq!(&frame[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        let descriptor = frame[4];
        let single_segment = descriptor & 0x20 != 0;
        if !single_segment {
            let window = frame[5];
            let base = 1u64 << (10 + (window >> 3));
            return base + base / 8 * u64::from(window & 7);
        }
        // single segment: the window is the content size
        let dictionary_id_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
        let at = 5 + dictionary_id_len;
        match descriptor >> 6 {
            0 => u64::from(frame[at]),
            1 => u64::from(u16::from_le_bytes([frame[at], frame[at + 1]])) + 256,
            2 => u64::from(u32::from_le_bytes(frame[at..at + 4].try_into().unwrap())),
            _ => u64::from_le_bytes(frame[at..at + 8].try_into().unwrap()),
        }
    }

    #[test]
    fn zstd_windows_are_at_most_8_mb() {
        const MB8: u64 = 8 << 20;
        let small = html(50_000);
        for level in [1, 19, 22] {
            let frame = compress(Variant::new(Zstd, level), &small).unwrap();
            let window = zstd_window(&frame);
            assert!(window <= small.len() as u64, "level {level}: {window}");
        }
        // larger than the window: level 1's default window would be 512 KB,
        // ultra levels' 32 MB to 128 MB; the module's is 8 MB for all
        let big: Vec<u8> = small.iter().copied().cycle().take(9 << 20).collect();
        let frame = compress(Variant::new(Zstd, 1), &big).unwrap();
        assert_eq!(zstd_window(&frame), MB8);
        assert_eq!(decode(Zstd, &frame), big);
        let mut streamed = Vec::new();
        compress_stream(Variant::new(Zstd, 1), &big[..], &mut streamed).unwrap();
        assert_eq!(zstd_window(&streamed), MB8);
        // the decoder limited to 8 MB refuses a frame with a larger window
        let mut wide = zstd::bulk::Compressor::new(1).unwrap();
        wide.set_parameter(zstd::zstd_safe::CParameter::WindowLog(24))
            .unwrap();
        let wide = wide.compress(&big).unwrap();
        assert!(zstd_window(&wide) > MB8);
        let mut decoder = zstd::stream::read::Decoder::new(&wide[..]).unwrap();
        decoder.window_log_max(ZSTD_WINDOW_LOG).unwrap();
        assert!(decoder.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn a_page_file_is_compressed_from_its_body() {
        let scratch = Scratch::new("compress-file");
        let header = crate::page::encode_header(b"text/html", b"/a/", b"").unwrap();
        let body = html(5000);
        let path = scratch.0.join("index.html");
        std::fs::write(&path, [&header[..], &body].concat()).unwrap();
        let file = File::open(&path).unwrap();
        let offset = header.len() as u64;
        let variants = compress_file(&file, offset, &all()).unwrap();
        assert_eq!(variants, compress_page(&body, &all()).unwrap());
        assert_eq!(encodings(&variants), [Gzip, Br, Zstd]);
        let short = CompressConfig {
            min_length: body.len() + 1,
            ..all()
        };
        assert!(compress_file(&file, offset, &short).unwrap().is_empty());
        assert!(compress_file(&file, offset + body.len() as u64 + 9, &all())
            .unwrap()
            .is_empty());
    }
}
