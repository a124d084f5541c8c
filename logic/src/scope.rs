//! What a purge covers: the whole tree, one page, every URI under a
//! prefix, or every page carrying one of some tags, as given to the purge
//! location (`?uri=/articles/hello/`, `?prefix=/articles/`,
//! `?tag=article-12&tag=home` or `?tag=article-12,home`, nothing for the
//! whole tree), and whether it is hard (`hard=1`: nothing it covers is ever
//! served stale).

use crate::path::{page_file, MAX_NAME_LEN, MAX_URI_LEN, RESERVED_DIR};
use crate::tags::{add_purge_value, TagError, Tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Uri(Vec<u8>),
    Prefix(Vec<u8>),
    /// Pages carrying any of these tags (checked, never empty).
    Tags(Vec<Vec<u8>>),
}

/// Purge arguments that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// An argument other than `uri` or `prefix`, both, one twice, or an
    /// empty one (`?&`): only a bare purge empties the whole tree.
    UnknownArgument,
    /// Not an absolute path, a dot segment, a control character, a segment
    /// longer than a file name, the module's own directory, a path that no
    /// page maps to...
    InvalidPath,
    /// A `tag=` value that is no tag (empty, too long, a byte other than
    /// visible ASCII after decoding), or too many tags.
    InvalidTag(TagError),
}

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeError::UnknownArgument => f.write_str(
                "expected no argument, uri=/path, prefix=/path or tag=name (repeatable), \
                 and hard=1 or nothing",
            ),
            ScopeError::InvalidPath => f.write_str("invalid path"),
            ScopeError::InvalidTag(e) => write!(f, "invalid tag: {e}"),
        }
    }
}

impl std::error::Error for ScopeError {}

/// A purge request's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeArgs {
    pub scope: Scope,
    /// `hard=1`: remove at once, never serve stale.
    pub hard: bool,
}

impl PurgeArgs {
    /// Parses the purge request's query string, strictly: nothing at all
    /// (or only `hard=1`) is the whole tree; otherwise exactly one `uri=` or
    /// `prefix=` pair, or `tag=` pairs, and at most one `hard=1`.
    pub fn parse(args: &[u8]) -> Result<PurgeArgs, ScopeError> {
        let mut parsed = PurgeArgs {
            scope: Scope::All,
            hard: false,
        };
        if args.is_empty() {
            return Ok(parsed);
        }
        let (mut scope, mut hard, mut tags) = (None, None, Vec::new());
        for pair in args.split(|&b| b == b'&') {
            let eq = pair
                .iter()
                .position(|&b| b == b'=')
                .ok_or(ScopeError::UnknownArgument)?;
            if &pair[..eq] == b"tag" {
                add_tags(&mut tags, &pair[eq + 1..])?;
                continue;
            }
            let value = percent_decode(&pair[eq + 1..]).ok_or(ScopeError::InvalidPath)?;
            let slot = match &pair[..eq] {
                b"uri" | b"prefix" => &mut scope,
                b"hard" => &mut hard,
                _ => return Err(ScopeError::UnknownArgument),
            };
            if slot.replace((pair[..eq].to_vec(), value)).is_some() {
                return Err(ScopeError::UnknownArgument);
            }
        }
        if let Some((_, value)) = hard {
            parsed.hard = match value.as_slice() {
                b"1" => true,
                b"0" => false,
                _ => return Err(ScopeError::UnknownArgument),
            };
        }
        match (scope, tags.is_empty()) {
            (Some(_), false) => return Err(ScopeError::UnknownArgument),
            (Some((name, value)), true) => parsed.scope = Scope::from_pair(&name, value)?,
            (None, false) => parsed.scope = Scope::Tags(tags),
            (None, true) => {}
        }
        Ok(parsed)
    }
}

/// Adds the tags of one `tag=` value (percent-encoded; several separated
/// by commas).
fn add_tags(tags: &mut Vec<Vec<u8>>, encoded: &[u8]) -> Result<(), ScopeError> {
    let value =
        percent_decode(encoded).ok_or(ScopeError::InvalidTag(TagError::InvalidByte(b'%')))?;
    add_purge_value(tags, &value).map_err(ScopeError::InvalidTag)
}

impl Scope {
    /// The scope of a purge request's query string (see [`PurgeArgs`]).
    pub fn from_args(args: &[u8]) -> Result<Scope, ScopeError> {
        PurgeArgs::parse(args).map(|args| args.scope)
    }

    fn from_pair(name: &[u8], value: Vec<u8>) -> Result<Scope, ScopeError> {
        if name == b"uri" {
            page_file(&value).map_err(|_| ScopeError::InvalidPath)?;
            return Ok(Scope::Uri(value));
        }
        check_prefix(&value)?;
        Ok(if value == b"/" {
            Scope::All
        } else {
            Scope::Prefix(value)
        })
    }

    /// True when a page for `uri` carrying `tags` is covered by this purge.
    pub fn covers(&self, uri: &[u8], tags: &Tags) -> bool {
        match self {
            Scope::All => true,
            Scope::Uri(page) => page == uri,
            Scope::Prefix(prefix) => uri.starts_with(prefix),
            Scope::Tags(purged) => tags.iter().any(|t| purged.iter().any(|p| p == t)),
        }
    }

    /// The name used in replies and the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Uri(_) => "uri",
            Scope::Prefix(_) => "prefix",
            Scope::Tags(_) => "tag",
        }
    }

    /// The path argument, if any.
    pub fn path(&self) -> Option<&[u8]> {
        match self {
            Scope::All | Scope::Tags(_) => None,
            Scope::Uri(path) | Scope::Prefix(path) => Some(path),
        }
    }
}

/// A prefix is a leading part of a URI that could be mapped: plain
/// segments no longer than a file name, never into the reserved directory.
fn check_prefix(prefix: &[u8]) -> Result<(), ScopeError> {
    let rest = prefix.strip_prefix(b"/").ok_or(ScopeError::InvalidPath)?;
    if prefix.len() > MAX_URI_LEN || prefix.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ScopeError::InvalidPath);
    }
    // every segment but the last is complete; the last may be partial
    let mut segments = rest.split(|&b| b == b'/').enumerate().peekable();
    while let Some((index, segment)) = segments.next() {
        let complete = segments.peek().is_some();
        // a directory of pages is never named `*.html` (page_file refuses
        // such URIs): `/a.html/` would name the page file of `/a`
        let bad = segment.len() > MAX_NAME_LEN
            || complete && matches!(segment, b"" | b"." | b"..")
            || complete && segment.ends_with(b".html")
            || complete && index == 0 && segment == RESERVED_DIR.as_bytes();
        if bad {
            return Err(ScopeError::InvalidPath);
        }
    }
    Ok(())
}

/// Decodes a query value: `%XX` escapes (two hex digits) and `+` for a
/// space, as HTML forms and Python's `urlencode` write them; `None` for a
/// malformed escape.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'%' => {
                let pair = value.get(i + 1..i + 3)?;
                out.push(hex(pair[0])? * 16 + hex(pair[1])?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(args: &str) -> Result<Scope, ScopeError> {
        Scope::from_args(args.as_bytes())
    }

    #[test]
    fn parses_arguments() {
        assert_eq!(scope(""), Ok(Scope::All));
        assert_eq!(
            scope("uri=/articles/hello/"),
            Ok(Scope::Uri(b"/articles/hello/".to_vec()))
        );
        assert_eq!(
            scope("uri=%2Fcaf%C3%A9%2F"),
            Ok(Scope::Uri("/café/".as_bytes().to_vec()))
        );
        assert_eq!(
            scope("prefix=/articles/"),
            Ok(Scope::Prefix(b"/articles/".to_vec()))
        );
        assert_eq!(
            scope("prefix=/articles/hel"),
            Ok(Scope::Prefix(b"/articles/hel".to_vec()))
        );
        assert_eq!(scope("prefix=/"), Ok(Scope::All));
    }

    /// Holes a fault campaign found: malformed queries purged the whole
    /// tree, a long segment answered 500, and `/.static_gen/...` moved the
    /// tree's own files away.
    #[test]
    fn only_a_bare_purge_is_whole() {
        for bad in [
            "&",
            "&&&",
            "prefix=/&",
            "uri=/a&",
            "&uri=/a",
            "uri",
            "x=1",
            "uri=/a&uri=/b",
        ] {
            assert_eq!(scope(bad), Err(ScopeError::UnknownArgument), "{bad}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in [
            format!("prefix=/{long}"),
            format!("prefix=/{long}/"),
            format!("prefix=/a/{long}/b"),
            "prefix=/.static_gen/".into(),
            "prefix=/.static_gen/e".into(),
            "prefix=/.static_gen/tmp/".into(),
            "prefix=%2F.static_gen%2Fstate".into(),
            "uri=/.static_gen/state".into(),
            "prefix=/a.html/".into(),
            "prefix=/index.html/".into(),
            "prefix=/a.html/x/".into(),
            "uri=/a%+9".into(),
        ] {
            assert_eq!(scope(&bad), Err(ScopeError::InvalidPath), "{bad}");
        }
        assert_eq!(
            scope("prefix=/.static"),
            Ok(Scope::Prefix(b"/.static".to_vec())),
            "a prefix of pages' names; the purge skips the reserved directory"
        );
    }

    /// Finding of the property tests: `django_purge.py` encodes with
    /// `urlencode`, which writes a space as `+`.
    #[test]
    fn a_plus_is_a_space() {
        assert_eq!(scope("uri=%2Fa+b%2F"), Ok(Scope::Uri(b"/a b/".to_vec())));
        assert_eq!(scope("uri=/a%2Bb"), Ok(Scope::Uri(b"/a+b".to_vec())));
    }

    #[test]
    fn hard_purges() {
        let args = |a: &str| PurgeArgs::parse(a.as_bytes());
        assert_eq!(
            args("uri=/a/&hard=1"),
            Ok(PurgeArgs {
                scope: Scope::Uri(b"/a/".to_vec()),
                hard: true
            })
        );
        assert_eq!(
            args("hard=1"),
            Ok(PurgeArgs {
                scope: Scope::All,
                hard: true
            })
        );
        assert!(!args("hard=0&prefix=/a/").unwrap().hard);
        for bad in ["hard=yes", "hard=1&hard=1", "hard", "hard=1&", "hard=1&x=2"] {
            assert_eq!(args(bad), Err(ScopeError::UnknownArgument), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_arguments() {
        assert_eq!(scope("page=/x"), Err(ScopeError::UnknownArgument));
        assert_eq!(scope("uri=/a&prefix=/b"), Err(ScopeError::UnknownArgument));
        for bad in [
            "uri=",
            "uri=x",
            "uri=/a/../b",
            "uri=/index",
            "uri=/a%0A",
            "uri=/a%zz",
        ] {
            assert_eq!(scope(bad), Err(ScopeError::InvalidPath), "{bad}");
        }
        for bad in [
            "prefix=",
            "prefix=a/",
            "prefix=/a/../",
            "prefix=/a//b",
            "prefix=/./x",
        ] {
            assert_eq!(scope(bad), Err(ScopeError::InvalidPath), "{bad}");
        }
    }

    #[test]
    fn tag_arguments() {
        let tags = |t: &[&str]| {
            Ok(Scope::Tags(
                t.iter().map(|t| t.as_bytes().to_vec()).collect(),
            ))
        };
        assert_eq!(scope("tag=article-12"), tags(&["article-12"]));
        assert_eq!(scope("tag=a&tag=b"), tags(&["a", "b"]));
        assert_eq!(scope("tag=a,b&tag=c"), tags(&["a", "b", "c"]));
        assert_eq!(scope("tag=a%2Cb"), tags(&["a", "b"]));
        assert_eq!(scope("tag=%2e%2e%2f"), tags(&["../"]), "a tag, not a path");
        assert_eq!(
            PurgeArgs::parse(b"tag=a&hard=1"),
            Ok(PurgeArgs {
                scope: Scope::Tags(vec![b"a".to_vec()]),
                hard: true
            })
        );
        for bad in ["tag=a&uri=/a", "prefix=/a/&tag=a", "tag=a&"] {
            assert_eq!(scope(bad), Err(ScopeError::UnknownArgument), "{bad}");
        }
        let long = "x".repeat(200);
        for bad in [
            "tag=",
            "tag=a,,b",
            "tag=%00",
            "tag=%ff",
            "tag=a+b",
            "tag=a%zz",
            "tag=%0a",
            long.as_str(),
        ] {
            let bad = if bad == long {
                format!("tag={long}")
            } else {
                bad.into()
            };
            assert!(
                matches!(scope(&bad), Err(ScopeError::InvalidTag(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn coverage() {
        let uri = scope("uri=/a/").unwrap();
        assert!(uri.covers(b"/a/", &Tags::default()));
        assert!(!uri.covers(b"/a", &Tags::default()));
        assert!(!uri.covers(b"/a/b", &Tags::default()));
        let prefix = scope("prefix=/a/").unwrap();
        assert!(prefix.covers(b"/a/", &Tags::default()));
        assert!(prefix.covers(b"/a/b/c", &Tags::default()));
        assert!(!prefix.covers(b"/a", &Tags::default()));
        assert!(!prefix.covers(b"/ab/", &Tags::default()));
        assert!(Scope::All.covers(b"/anything", &Tags::default()));
        let tagged = Tags::from_header_values([&b"a home"[..]]).unwrap();
        let by_tag = scope("tag=home,x").unwrap();
        assert!(by_tag.covers(b"/p", &tagged));
        assert!(!by_tag.covers(b"/p", &Tags::default()));
        assert!(!scope("tag=b").unwrap().covers(b"/p", &tagged));
    }
}
