//! From a request URI to the file that holds its generated page.
//!
//! The rule, which the README documents:
//! - only canonical requests take part: the raw request path must be the
//!   RFC 3986 normal form of nginx's normalised URI (nothing escaped that
//!   need not be, everything else escaped in uppercase hex); other spellings,
//!   escapes of reserved characters, dot segments and empty segments make the
//!   request bypass;
//! - a URI ending in `/` is stored as `index.html` in the directory named by
//!   the URI (`/articles/hello/` -> `articles/hello/index.html`);
//! - any other URI is stored with `.html` appended (`/about` -> `about.html`,
//!   `/feed.xml` -> `feed.xml.html`);
//! - so that two URIs never share a file, URIs whose last segment is `index`
//!   (it would share `index.html` with the trailing-slash form) and URIs with a
//!   directory segment ending in `.html` (it would clash with a page file)
//!   bypass, as do the module's own directory `.static_gen` at the top.

use std::fmt;

/// Longest URI path the module maps, in bytes.
pub const MAX_URI_LEN: usize = 2048;
/// Deepest URI path the module maps, in segments.
pub const MAX_DEPTH: usize = 32;
/// Longest file name most filesystems allow (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// The name of the module's own directory (temp files, purged trees) under a
/// root; no URI maps into it.
pub const RESERVED_DIR: &str = ".static_gen";

const PAGE_SUFFIX: &[u8] = b".html";
const INDEX_NAME: &[u8] = b"index.html";

/// Why a request cannot be mapped to a page file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The URI does not start with `/`.
    NotAbsolute,
    /// The raw request path is not the normal form of nginx's normalised
    /// URI.
    NotCanonical,
    /// An empty, `.` or `..` segment.
    DotOrEmptySegment,
    /// A NUL, a control character or a byte that cannot go into a file name.
    BadByte,
    /// Longer than [`MAX_URI_LEN`], deeper than [`MAX_DEPTH`], or a segment
    /// longer than the filesystem allows.
    TooLong,
    /// The URI would share its file with another URI, or map into the
    /// module's own directory.
    Reserved,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "uri is not absolute",
            PathError::NotCanonical => "raw path is not canonical",
            PathError::DotOrEmptySegment => "empty or dot segment",
            PathError::BadByte => "control character in uri",
            PathError::TooLong => "uri too long or too deep",
            PathError::Reserved => "uri maps to a reserved name",
        })
    }
}

impl std::error::Error for PathError {}

/// Checks that `raw` (the path part of the request line, before any `?`)
/// is the one spelling of `uri` (nginx's decoded, normalised path) that
/// takes part: its normal form by RFC 3986 (section 6.2.2).
///
/// Unreserved characters, sub-delimiters, `:`, `@` and `/` are written
/// as they are, never escaped; every other byte (space, `"`, `%`, non-ASCII
/// UTF-8...) is escaped with uppercase hex digits. Other spellings
/// (`/%70age`, `/caf%c3%a9`, raw UTF-8) would map to the same file, and an
/// application that echoes the raw path would write the spelling into the
/// page, so they bypass. Escaped reserved characters (`%2F`, `%3B`) are
/// refused too: an upstream may read them differently from nginx.
pub fn check_canonical(raw: &[u8], uri: &[u8]) -> Result<(), PathError> {
    let mut expected = uri.iter();
    let mut i = 0;
    while i < raw.len() {
        let byte = if raw[i] == b'%' {
            let decoded = raw
                .get(i + 1..i + 3)
                .and_then(decode_upper_hex_pair)
                .ok_or(PathError::NotCanonical)?;
            if !must_escape(decoded) || reserved(decoded) || decoded < 0x20 || decoded == 0x7f {
                return Err(PathError::NotCanonical);
            }
            i += 3;
            decoded
        } else {
            if must_escape(raw[i]) {
                return Err(PathError::NotCanonical);
            }
            i += 1;
            raw[i - 1]
        };
        if expected.next() != Some(&byte) {
            return Err(PathError::NotCanonical);
        }
    }
    if expected.next().is_some() {
        return Err(PathError::NotCanonical);
    }
    // an overlong or broken UTF-8 sequence (`%C0%AE` for `.`) could be read
    // as something else by a lenient upstream
    std::str::from_utf8(uri)
        .map(|_| ())
        .map_err(|_| PathError::NotCanonical)
}

/// RFC 3986's gen-delims and sub-delims: their escapes may mean something
/// else than the character to an upstream.
fn reserved(byte: u8) -> bool {
    b":/?#[]@!$&'()*+,;=".contains(&byte)
}

fn decode_upper_hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    Some(digit(pair[0])? * 16 + digit(pair[1])?)
}

/// True for bytes a path segment can only hold escaped (RFC 3986 `pchar`
/// and `/` are the ones it holds as they are).
fn must_escape(byte: u8) -> bool {
    let plain = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
    !plain
}

/// Maps a normalised URI to the page file's path relative to the root
/// (without a leading `/`), following the rule in the module docs.
pub fn page_file(uri: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut file = Vec::new();
    page_file_into(uri, &mut file)?;
    Ok(file)
}

/// [`page_file`] into `file` (emptied first), so that a caller may reuse
/// one buffer: a HIT allocates nothing.
pub fn page_file_into(uri: &[u8], file: &mut Vec<u8>) -> Result<(), PathError> {
    let rest = uri.strip_prefix(b"/").ok_or(PathError::NotAbsolute)?;
    if uri.len() > MAX_URI_LEN {
        return Err(PathError::TooLong);
    }
    if uri.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::BadByte);
    }
    let (dirs, leaf) = match rest.iter().rposition(|&b| b == b'/') {
        Some(slash) => (Some(&rest[..slash]), &rest[slash + 1..]),
        None => (None, rest),
    };
    let dir_segments = || dirs.into_iter().flat_map(|d| d.split(|&b| b == b'/'));
    if dir_segments().count() >= MAX_DEPTH {
        return Err(PathError::TooLong);
    }
    for (depth, segment) in dir_segments().enumerate() {
        check_segment(segment)?;
        if segment.ends_with(PAGE_SUFFIX) || (depth == 0 && segment == RESERVED_DIR.as_bytes()) {
            return Err(PathError::Reserved);
        }
    }

    file.clear();
    file.reserve(uri.len() + INDEX_NAME.len());
    file.extend_from_slice(rest);
    if leaf.is_empty() {
        file.extend_from_slice(INDEX_NAME);
    } else {
        check_segment(leaf)?;
        if leaf == b"index" {
            return Err(PathError::Reserved);
        }
        if leaf.len() + PAGE_SUFFIX.len() > MAX_NAME_LEN {
            return Err(PathError::TooLong);
        }
        file.extend_from_slice(PAGE_SUFFIX);
    }
    Ok(())
}

fn check_segment(segment: &[u8]) -> Result<(), PathError> {
    match segment {
        b"" | b"." | b".." => Err(PathError::DotOrEmptySegment),
        s if s.len() > MAX_NAME_LEN => Err(PathError::TooLong),
        _ => Ok(()),
    }
}

/// Checks a `static_gen_root` with variables once expanded: it must extend
/// `static_prefix` (the configured text before the first variable) with
/// plain directory names, so that no variable value (a hostile `Host`
/// header, say) can lead outside the intended tree.
pub fn check_expanded_root(expanded: &[u8], static_prefix: &[u8]) -> Result<(), PathError> {
    let rest = expanded
        .strip_prefix(static_prefix)
        .ok_or(PathError::NotCanonical)?;
    if expanded.len() > MAX_URI_LEN {
        return Err(PathError::TooLong);
    }
    if expanded.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::BadByte);
    }
    // the component the prefix ends in continues into the expansion
    let start = static_prefix
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |slash| slash + 1);
    let tail = &expanded[start..];
    if rest.is_empty() {
        return Err(PathError::DotOrEmptySegment);
    }
    let tail = tail.strip_suffix(b"/").unwrap_or(tail);
    tail.split(|&b| b == b'/').try_for_each(check_segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(uri: &str) -> Result<String, PathError> {
        page_file(uri.as_bytes()).map(|p| String::from_utf8(p).unwrap())
    }

    #[test]
    fn trailing_slash_maps_to_index() {
        assert_eq!(file("/").unwrap(), "index.html");
        assert_eq!(
            file("/articles/hello/").unwrap(),
            "articles/hello/index.html"
        );
    }

    #[test]
    fn other_uris_get_html_suffix() {
        assert_eq!(file("/about").unwrap(), "about.html");
        assert_eq!(file("/about/team").unwrap(), "about/team.html");
        assert_eq!(file("/feed.xml").unwrap(), "feed.xml.html");
        assert_eq!(file("/a/index.html").unwrap(), "a/index.html.html");
    }

    #[test]
    fn distinct_uris_never_share_a_file() {
        let uris = [
            "/",
            "/about",
            "/about/",
            "/about/team",
            "/about.html",
            "/about.html.html",
            "/index.html",
            "/a/index.html",
            "/a/",
            "/a",
            "/a/b/",
            "/a/b",
        ];
        let mut files: Vec<String> = uris.iter().map(|u| file(u).unwrap()).collect();
        files.sort();
        files.dedup();
        assert_eq!(files.len(), uris.len());
        // no page file is a directory of another page's path
        for f in &files {
            assert!(
                !files.iter().any(|g| g.starts_with(&format!("{f}/"))),
                "{f}"
            );
        }
    }

    #[test]
    fn clashing_forms_bypass() {
        assert_eq!(file("/index"), Err(PathError::Reserved));
        assert_eq!(file("/a/index"), Err(PathError::Reserved));
        assert_eq!(file("/about.html/x"), Err(PathError::Reserved));
        assert_eq!(file("/.static_gen/tmp/x"), Err(PathError::Reserved));
        assert_eq!(file("/.static_gen/"), Err(PathError::Reserved));
        assert_eq!(file("/.static_gen").unwrap(), ".static_gen.html");
        assert_eq!(file("/x/.static_gen/y").unwrap(), "x/.static_gen/y.html");
    }

    #[test]
    fn escapes_are_refused() {
        assert_eq!(file("about"), Err(PathError::NotAbsolute));
        assert_eq!(file(""), Err(PathError::NotAbsolute));
        assert_eq!(file("/a/../b"), Err(PathError::DotOrEmptySegment));
        assert_eq!(file("/../b"), Err(PathError::DotOrEmptySegment));
        assert_eq!(file("/.."), Err(PathError::DotOrEmptySegment));
        assert_eq!(file("/a/./b"), Err(PathError::DotOrEmptySegment));
        assert_eq!(file("/a//b"), Err(PathError::DotOrEmptySegment));
        assert_eq!(file("//"), Err(PathError::DotOrEmptySegment));
        assert_eq!(file("/a\0b"), Err(PathError::BadByte));
        assert_eq!(file("/a\nb"), Err(PathError::BadByte));
    }

    #[test]
    fn length_limits() {
        let long = format!("/{}", "x".repeat(MAX_NAME_LEN - PAGE_SUFFIX.len()));
        assert!(file(&long).is_ok());
        let too_long = format!("/{}", "x".repeat(MAX_NAME_LEN - PAGE_SUFFIX.len() + 1));
        assert_eq!(file(&too_long), Err(PathError::TooLong));
        let long_dir = format!("/{}/", "d".repeat(MAX_NAME_LEN + 1));
        assert_eq!(file(&long_dir), Err(PathError::TooLong));
        let deep = "/d".repeat(MAX_DEPTH) + "/";
        assert_eq!(file(&deep), Err(PathError::TooLong));
        let huge = format!("/{}", "a/".repeat(MAX_URI_LEN));
        assert_eq!(file(&huge), Err(PathError::TooLong));
    }

    #[test]
    fn utf8_paths_map_verbatim() {
        assert_eq!(file("/café/").unwrap(), "café/index.html");
    }

    #[test]
    fn expanded_roots() {
        let ok = |e: &str, p: &str| check_expanded_root(e.as_bytes(), p.as_bytes());
        assert_eq!(
            ok("/var/cache/site/example.com", "/var/cache/site/"),
            Ok(())
        );
        assert_eq!(
            ok("/var/cache/site/example.com/", "/var/cache/site/"),
            Ok(())
        );
        assert_eq!(
            ok("/var/cache/site-example.com", "/var/cache/site-"),
            Ok(())
        );
        assert_eq!(ok("/var/cache/a/b", "/var/cache/"), Ok(()));
        assert_eq!(
            ok("/var/cache/site/..", "/var/cache/site/"),
            Err(PathError::DotOrEmptySegment)
        );
        assert_eq!(
            ok("/var/cache/site/a/../../x", "/var/cache/site/"),
            Err(PathError::DotOrEmptySegment)
        );
        assert_eq!(
            ok("/var/cache/site/", "/var/cache/site/"),
            Err(PathError::DotOrEmptySegment)
        );
        assert_eq!(
            ok("/var/cache/site//x", "/var/cache/site/"),
            Err(PathError::DotOrEmptySegment)
        );
        assert_eq!(ok("/var/cache/site-..", "/var/cache/site-"), Ok(()));
        assert_eq!(
            ok("/var/cache/..", "/var/cache/"),
            Err(PathError::DotOrEmptySegment)
        );
        assert_eq!(
            ok("/var/cache/site/a\0b", "/var/cache/site/"),
            Err(PathError::BadByte)
        );
        assert_eq!(
            ok("/var/cache/site/a\nb", "/var/cache/site/"),
            Err(PathError::BadByte)
        );
        assert_eq!(
            ok("/etc/passwd", "/var/cache/site/"),
            Err(PathError::NotCanonical)
        );
    }

    fn canonical(raw: &str, uri: &str) -> bool {
        check_canonical(raw.as_bytes(), uri.as_bytes()).is_ok()
    }

    #[test]
    fn canonical_paths_pass() {
        assert!(canonical("/", "/"));
        assert!(canonical("/articles/hello/", "/articles/hello/"));
        assert!(canonical("/caf%C3%A9/", "/café/"));
        assert!(canonical("/a%20b", "/a b"));
        assert!(canonical("/100%25", "/100%"));
        assert!(canonical("/a;b,c=d:e@f!$&'()*+", "/a;b,c=d:e@f!$&'()*+"));
        assert!(canonical("/%22%3C%3E%5C%5E%60%7B%7C%7D", "/\"<>\\^`{|}"));
    }

    #[test]
    fn non_canonical_paths_fail() {
        assert!(!canonical("/a/../b", "/b"));
        assert!(!canonical("/a//b", "/a/b"));
        assert!(!canonical("/a/./b", "/a/b"));
        assert!(!canonical("/a%2Fb", "/a/b"));
        assert!(!canonical("/a%2fb", "/a/b"));
        assert!(!canonical("/%2e%2e/etc", "/etc"));
        assert!(!canonical("/a%2eb", "/a.b"));
        assert!(!canonical("/a%3Bb", "/a;b"));
        assert!(!canonical("/a%3fb", "/a?b"));
        assert!(!canonical("/a%00b", "/a\0b"));
        assert!(!canonical("/a%zz", "/a%zz"));
        assert!(!canonical("/a%2", "/a%2"));
        assert!(!canonical("/about", "/other"));
        assert!(!canonical("/about", "/about/"));
        assert!(!canonical("/about/", "/about"));
    }

    /// The hole a fault campaign found: `/page/%70oison/` rendered and
    /// stored the page of `/page/poison/`. Only the normal form takes part.
    #[test]
    fn other_spellings_of_a_canonical_path_fail() {
        assert!(!canonical("/page/%70oison/", "/page/poison/"));
        assert!(!canonical("/%61bout", "/about"));
        assert!(!canonical("/a%2Db", "/a-b"));
        assert!(!canonical("/a%7Eb", "/a~b"));
        assert!(!canonical("/caf%c3%a9/", "/café/"));
        assert!(!canonical("/café/", "/café/"));
        assert!(!canonical("/a b", "/a b"));
        assert!(!canonical("/a\"b", "/a\"b"));
        assert!(!canonical("/a%3Fb", "/a?b"), "escaped reserved");
        assert!(
            !canonical("/%C0%AE%C0%AE/x", "/\u{c0}\u{ae}"),
            "not even the same bytes"
        );
        assert!(
            check_canonical(b"/%C0%AE%C0%AE/x", b"/\xc0\xae\xc0\xae/x").is_err(),
            "overlong UTF-8"
        );
    }
}
