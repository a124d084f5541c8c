//! The page file format: a short text header, then the body exactly as the
//! upstream sent it. The header keeps what a HIT must answer with and the
//! body alone cannot tell (the exact `Content-Type`), and the URI the page was
//! generated for, so a person reading the tree sees what each file is.
//!
//! ```text
//! static_gen 1
//! content-type: text/html; charset=utf-8
//! uri: /articles/hello/
//! tags: article-12 category-3 home
//!
//! <!doctype html>...
//! ```
//!
//! (`tags:` only for a page whose response named tags, see `tags`.) Once its compressed variants are made, the page is replaced by one file
//! that holds them after the identity body (one rename installs them all,
//! one unlink purges them all), and says where each is, from the body's
//! start:
//!
//! ```text
//! static_gen 2
//! content-type: text/html; charset=utf-8
//! uri: /articles/hello/
//! identity: 20480
//! variant: br 20480 4100
//! variant: gzip 24580 5210
//! levels: br=5 gzip=6
//!
//! <!doctype html>...<brotli bytes><gzip bytes>
//! ```
//!
//! `levels:` says what the variants were made at, in `static_gen_compress`
//! words (every coding tried, kept or not): a page's first variants are made
//! at fast levels, and made again at the configured ones when the
//! compressor is idle (`variants`). Pages written before it have none: they
//! were made at the configured levels. Readers skip lines they do not know.

use crate::encoding::Encoding;

/// The first line of a page file with the identity body only; a file
/// without it (or [`MAGIC_VARIANTS`]) was not written by this module and is
/// never served.
pub const MAGIC: &[u8] = b"static_gen 1\n";
/// The first line of a page file that also holds compressed variants.
pub const MAGIC_VARIANTS: &[u8] = b"static_gen 2\n";

/// True when `start` (a file's first bytes) begins as a page file does.
pub fn is_page_start(start: &[u8]) -> bool {
    start.starts_with(MAGIC) || start.starts_with(MAGIC_VARIANTS)
}

/// Where a compressed variant is, from the body's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantRange {
    pub start: u64,
    pub len: u64,
}

/// The variants a page file holds, by encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variants {
    ranges: [Option<VariantRange>; 3],
}

impl Variants {
    fn slot(encoding: Encoding) -> Option<usize> {
        Encoding::COMPRESSED.iter().position(|&e| e == encoding)
    }

    pub fn get(&self, encoding: Encoding) -> Option<VariantRange> {
        Self::slot(encoding).and_then(|i| self.ranges[i])
    }

    fn set(&mut self, encoding: Encoding, range: VariantRange) {
        if let Some(i) = Self::slot(encoding) {
            self.ranges[i] = Some(range);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.iter().all(Option::is_none)
    }

    /// The encodings held, with their sizes, for negotiation.
    pub fn sizes(&self) -> impl Iterator<Item = (Encoding, u64)> + '_ {
        Encoding::COMPRESSED
            .iter()
            .zip(&self.ranges)
            .filter_map(|(&e, r)| r.map(|r| (e, r.len)))
    }
}
/// Longest header a HIT reads; longer headers are not written. Room for
/// 16 KB of tags, a URI of 2 KB and the other lines.
pub const MAX_HEADER_LEN: usize = 20 * 1024;

/// The parsed header of a page file.
#[derive(Debug, PartialEq, Eq)]
pub struct PageHeader<'a> {
    pub content_type: &'a [u8],
    /// The `tags:` line's value (tags separated by spaces), or empty.
    pub tags: &'a [u8],
    /// Offset of the body in the file.
    pub body_offset: usize,
    /// The identity body's length, when variants follow it (else the body
    /// runs to the end of the file).
    pub identity_len: Option<u64>,
    pub variants: Variants,
    /// The `levels:` line's value: what the variants were made at, or
    /// empty.
    pub levels: &'a [u8],
    /// The status the page is answered with (`status:`, 200 without).
    pub status: u16,
    /// A redirect's `Location` (`location:`), or empty.
    pub location: &'a [u8],
}

/// Why a header cannot be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A value holds a control character or the header would be too long.
    Unwritable,
    /// Not a page file of this module, or a truncated header.
    Foreign,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderError::Unwritable => "header value cannot be stored",
            HeaderError::Foreign => "not a page file",
        })
    }
}

impl std::error::Error for HeaderError {}

/// Renders the header for a `200` page; `tags` as
/// [`crate::tags::Tags::as_line`] gives them (empty: no `tags:` line).
pub fn encode_header(content_type: &[u8], uri: &[u8], tags: &[u8]) -> Result<Vec<u8>, HeaderError> {
    encode_response_header(content_type, uri, tags, 200, b"")
}

/// Renders the header for a page stored with another status than `200`
/// (a `status:` line) and, for a redirect, its `Location` (a `location:`
/// line), kept exactly.
pub fn encode_response_header(
    content_type: &[u8],
    uri: &[u8],
    tags: &[u8],
    status: u16,
    location: &[u8],
) -> Result<Vec<u8>, HeaderError> {
    let unprintable = |v: &[u8]| v.iter().any(|&b| b < 0x20 || b == 0x7f);
    if [content_type, uri, tags, location]
        .into_iter()
        .any(unprintable)
    {
        return Err(HeaderError::Unwritable);
    }
    let len = MAGIC.len() + content_type.len() + uri.len() + tags.len() + location.len() + 48;
    let mut header = Vec::with_capacity(len);
    header.extend_from_slice(MAGIC);
    let status_text = status.to_string();
    let lines = [
        (&b"content-type: "[..], content_type),
        (b"uri: ", uri),
        (
            b"status: ",
            if status == 200 {
                b""
            } else {
                status_text.as_bytes()
            },
        ),
        (b"location: ", location),
        (b"tags: ", tags),
    ];
    for (name, value) in lines {
        if name != b"content-type: " && name != b"uri: " && value.is_empty() {
            continue;
        }
        header.extend_from_slice(name);
        header.extend_from_slice(value);
        header.push(b'\n');
    }
    header.push(b'\n');
    if header.len() > MAX_HEADER_LEN {
        return Err(HeaderError::Unwritable);
    }
    Ok(header)
}

/// Renders the header of a page file holding `variants` (encoding and
/// length, in the order they follow the identity body), made at `levels`
/// (a `levels:` line; none when empty).
pub fn encode_variants_header(
    content_type: &[u8],
    uri: &[u8],
    tags: &[u8],
    identity_len: u64,
    variants: &[(Encoding, u64)],
    levels: &str,
) -> Result<Vec<u8>, HeaderError> {
    let identity = encode_header(content_type, uri, tags)?;
    let mut header = MAGIC_VARIANTS.to_vec();
    // the identity header's lines, less its magic and final blank line
    header.extend_from_slice(&identity[MAGIC.len()..identity.len() - 1]);
    header.extend_from_slice(format!("identity: {identity_len}\n").as_bytes());
    let mut start = identity_len;
    for &(encoding, len) in variants {
        header.extend_from_slice(format!("variant: {encoding} {start} {len}\n").as_bytes());
        start += len;
    }
    if !levels.is_empty() {
        if levels.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(HeaderError::Unwritable);
        }
        header.extend_from_slice(format!("levels: {levels}\n").as_bytes());
    }
    header.push(b'\n');
    if header.len() > MAX_HEADER_LEN {
        return Err(HeaderError::Unwritable);
    }
    Ok(header)
}

/// Parses the start of a page file (at least the header, at most
/// [`MAX_HEADER_LEN`] bytes of it are needed).
pub fn decode_header(start: &[u8]) -> Result<PageHeader<'_>, HeaderError> {
    let (magic, with_variants) = if start.starts_with(MAGIC_VARIANTS) {
        (MAGIC_VARIANTS, true)
    } else {
        (MAGIC, false)
    };
    let rest = start.strip_prefix(magic).ok_or(HeaderError::Foreign)?;
    let end = memchr::memmem::find(rest, b"\n\n").ok_or(HeaderError::Foreign)?;
    let mut header = PageHeader {
        content_type: b"",
        tags: b"",
        body_offset: magic.len() + end + 2,
        identity_len: None,
        variants: Variants::default(),
        levels: b"",
        status: 200,
        location: b"",
    };
    let mut content_type = None;
    for line in rest[..end].split(|&b| b == b'\n') {
        if let Some(value) = line.strip_prefix(b"content-type: ") {
            content_type = Some(value);
        } else if let Some(value) = line.strip_prefix(b"tags: ") {
            header.tags = value;
        } else if let Some(value) = line.strip_prefix(b"status: ") {
            header.status = number(value)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(HeaderError::Foreign)?;
        } else if let Some(value) = line.strip_prefix(b"location: ") {
            header.location = value;
        } else if let Some(value) = line.strip_prefix(b"identity: ").filter(|_| with_variants) {
            header.identity_len = Some(number(value).ok_or(HeaderError::Foreign)?);
        } else if let Some(value) = line.strip_prefix(b"variant: ").filter(|_| with_variants) {
            let (encoding, range) = variant(value).ok_or(HeaderError::Foreign)?;
            header.variants.set(encoding, range);
        } else if let Some(value) = line.strip_prefix(b"levels: ").filter(|_| with_variants) {
            header.levels = value;
        }
    }
    if with_variants && header.identity_len.is_none() {
        return Err(HeaderError::Foreign);
    }
    header.content_type = content_type.ok_or(HeaderError::Foreign)?;
    Ok(header)
}

fn number(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `br 20480 4100`: an encoding, its start and its length.
fn variant(line: &[u8]) -> Option<(Encoding, VariantRange)> {
    let mut words = line.split(|&b| b == b' ');
    let encoding = Encoding::from_token(words.next()?).filter(|&e| e != Encoding::Identity)?;
    let start = number(words.next()?)?;
    let len = number(words.next()?)?;
    words
        .next()
        .is_none()
        .then_some((encoding, VariantRange { start, len }))
}

/// Identifies one version of a page file: pages are replaced by rename,
/// never rewritten, so a new version has a new inode or another time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageVersion {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

/// What a HIT needs from a page's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    pub content_type: std::rc::Rc<[u8]>,
    /// The purge-mark keys of the page's tags (`tree::tag_key`), so a HIT
    /// checks them without reading the file.
    pub tag_keys: std::rc::Rc<[u64]>,
    pub body_offset: u64,
    pub identity_len: Option<u64>,
    pub variants: Variants,
    pub status: u16,
    /// A redirect's `Location`, or empty.
    pub location: std::rc::Rc<[u8]>,
}

impl From<PageHeader<'_>> for HeaderInfo {
    fn from(header: PageHeader<'_>) -> Self {
        HeaderInfo {
            content_type: header.content_type.into(),
            tag_keys: crate::tags::Tags::from_line(header.tags)
                .iter()
                .map(crate::tree::tag_key)
                .collect(),
            body_offset: header.body_offset as u64,
            identity_len: header.identity_len,
            variants: header.variants,
            status: header.status,
            location: header.location.into(),
        }
    }
}

/// The headers of recently served pages, so that a HIT need not read the
/// file's first bytes again. Bounded: when full it starts over.
#[derive(Debug, Default)]
pub struct HeaderCache {
    entries: std::collections::HashMap<PageVersion, HeaderInfo>,
}

impl HeaderCache {
    pub const CAPACITY: usize = 1024;

    pub fn get(&self, version: &PageVersion) -> Option<HeaderInfo> {
        self.entries.get(version).cloned()
    }

    pub fn insert(&mut self, version: PageVersion, info: HeaderInfo) {
        if self.entries.len() >= Self::CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(version, info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_and_error_pages_keep_status_and_location() {
        let moved = encode_response_header(b"text/html", b"/old/", b"", 301, b"/new/?a=1").unwrap();
        assert_eq!(
            moved,
            b"static_gen 1\ncontent-type: text/html\nuri: /old/\nstatus: 301\nlocation: /new/?a=1\n\n"
        );
        let header = decode_header(&moved).unwrap();
        assert_eq!((header.status, header.location), (301, &b"/new/?a=1"[..]));
        let missing = encode_response_header(b"text/html", b"/x", b"t", 404, b"").unwrap();
        let header = decode_header(&missing).unwrap();
        assert_eq!(
            (header.status, header.location, header.tags),
            (404, &b""[..], &b"t"[..])
        );
        // a 200 page's header is as it always was
        assert_eq!(
            encode_header(b"text/html", b"/a/", b"").unwrap(),
            b"static_gen 1\ncontent-type: text/html\nuri: /a/\n\n"
        );
        assert_eq!(
            decode_header(b"static_gen 1\ncontent-type: x\nuri: /\n\n")
                .unwrap()
                .status,
            200
        );
        assert!(decode_header(b"static_gen 1\ncontent-type: x\nstatus: x\n\n").is_err());
        assert_eq!(
            encode_response_header(b"text/html", b"/", b"", 301, b"/a\r\nSet-Cookie: x"),
            Err(HeaderError::Unwritable)
        );
    }

    #[test]
    fn variants_round_trip() {
        let header = encode_variants_header(
            b"text/html",
            b"/a/",
            b"",
            20480,
            &[(Encoding::Br, 4100), (Encoding::Gzip, 5210)],
            "br=5 gzip=6",
        )
        .unwrap();
        assert!(header.starts_with(b"static_gen 2\ncontent-type: text/html\nuri: /a/\n"));
        let decoded = decode_header(&header).unwrap();
        assert_eq!(decoded.body_offset, header.len());
        assert_eq!(decoded.identity_len, Some(20480));
        assert_eq!(decoded.levels, b"br=5 gzip=6");
        assert_eq!(
            decoded.variants.get(Encoding::Br),
            Some(VariantRange {
                start: 20480,
                len: 4100
            })
        );
        assert_eq!(
            decoded.variants.get(Encoding::Gzip),
            Some(VariantRange {
                start: 24580,
                len: 5210
            })
        );
        assert_eq!(decoded.variants.get(Encoding::Zstd), None);
        assert!(is_page_start(&header));
        for bad in [
            &b"static_gen 2\ncontent-type: x\nuri: /\n\n"[..],
            b"static_gen 2\ncontent-type: x\nidentity: 1\nvariant: deflate 1 2\n\n",
            b"static_gen 2\ncontent-type: x\nidentity: 1\nvariant: br 1\n\n",
        ] {
            assert_eq!(decode_header(bad), Err(HeaderError::Foreign));
        }
        // a plain page says nothing of variants, even with such lines
        let plain = decode_header(b"static_gen 1\ncontent-type: x\nvariant: br 1 2\n\n").unwrap();
        assert!(plain.variants.is_empty());
        assert_eq!(plain.identity_len, None);
    }

    #[test]
    fn round_trip() {
        let mut file =
            encode_header(b"text/html; charset=utf-8", b"/articles/hello/", b"").unwrap();
        let header_len = file.len();
        file.extend_from_slice(b"<p>body\n\nwith blank lines</p>");
        let header = decode_header(&file).unwrap();
        assert_eq!(header.content_type, b"text/html; charset=utf-8");
        assert_eq!(header.body_offset, header_len);
        assert_eq!(
            &file[header.body_offset..],
            b"<p>body\n\nwith blank lines</p>"
        );
    }

    #[test]
    fn tags_round_trip_also_with_variants() {
        let file = encode_header(b"text/html", b"/a/", b"article-1 home").unwrap();
        assert_eq!(
            file,
            b"static_gen 1\ncontent-type: text/html\nuri: /a/\ntags: article-1 home\n\n"
        );
        let header = decode_header(&file).unwrap();
        assert_eq!(header.tags, b"article-1 home");
        let info = HeaderInfo::from(header);
        assert_eq!(
            *info.tag_keys,
            [
                crate::tree::tag_key(b"article-1"),
                crate::tree::tag_key(b"home")
            ]
        );
        let with_variants = encode_variants_header(
            b"text/html",
            b"/a/",
            b"article-1 home",
            10,
            &[(Encoding::Gzip, 4)],
            "",
        )
        .unwrap();
        let decoded = decode_header(&with_variants).unwrap();
        assert_eq!(decoded.tags, b"article-1 home");
        assert_eq!(decoded.identity_len, Some(10));
        // 16 KB of tags and a long URI fit
        let tags = vec![b'x'; 16 * 1024];
        let uri = [&b"/"[..], &[b'u'; 2047]].concat();
        let long = encode_variants_header(b"text/html", &uri, &tags, 1, &[], "").unwrap();
        assert_eq!(decode_header(&long).unwrap().tags, &tags[..]);
        assert_eq!(
            encode_header(b"text/html", b"/", b"a\nb"),
            Err(HeaderError::Unwritable)
        );
    }

    #[test]
    fn header_is_readable() {
        let header = encode_header(b"text/html", b"/about", b"").unwrap();
        assert_eq!(
            header,
            b"static_gen 1\ncontent-type: text/html\nuri: /about\n\n"
        );
    }

    #[test]
    fn empty_body_and_empty_type() {
        let file = encode_header(b"", b"/", b"").unwrap();
        let header = decode_header(&file).unwrap();
        assert_eq!(header.content_type, b"");
        assert_eq!(header.body_offset, file.len());
    }

    #[test]
    fn foreign_files_are_refused() {
        assert_eq!(
            decode_header(b"<html>hello</html>"),
            Err(HeaderError::Foreign)
        );
        assert_eq!(decode_header(b""), Err(HeaderError::Foreign));
        assert_eq!(
            decode_header(b"static_gen 1\ncontent-type: x"),
            Err(HeaderError::Foreign)
        );
        assert_eq!(
            decode_header(b"static_gen 1\nuri: /\n\n"),
            Err(HeaderError::Foreign)
        );
    }

    #[test]
    fn header_cache_is_keyed_by_version_and_bounded() {
        let version = |ino| PageVersion {
            dev: 1,
            ino,
            size: 10,
            mtime_sec: 5,
            mtime_nsec: 7,
        };
        let info = |t: &[u8]| HeaderInfo {
            content_type: t.into(),
            tag_keys: std::rc::Rc::from([]),
            body_offset: 40,
            identity_len: None,
            variants: Variants::default(),
            status: 200,
            location: std::rc::Rc::from([]),
        };
        let mut cache = HeaderCache::default();
        cache.insert(version(1), info(b"text/html"));
        assert_eq!(cache.get(&version(1)), Some(info(b"text/html")));
        let newer = PageVersion {
            mtime_nsec: 8,
            ..version(1)
        };
        assert_eq!(cache.get(&newer), None, "a replaced page is read again");
        for ino in 2..=HeaderCache::CAPACITY as u64 + 1 {
            cache.insert(version(ino), info(b"x"));
        }
        assert!(cache.entries.len() <= HeaderCache::CAPACITY);
    }

    #[test]
    fn control_characters_are_not_written() {
        assert_eq!(
            encode_header(b"text/html\r\nX: y", b"/", b""),
            Err(HeaderError::Unwritable)
        );
        assert_eq!(
            encode_header(b"text/html", b"/a\nb", b""),
            Err(HeaderError::Unwritable)
        );
        let huge = vec![b'a'; MAX_HEADER_LEN];
        assert_eq!(
            encode_header(&huge, b"/", b""),
            Err(HeaderError::Unwritable)
        );
    }
}
