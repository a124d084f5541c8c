//! What a purge covers: the whole tree, one page, or every URI under a
//! prefix, as given to the purge location (`?uri=/articles/hello/`,
//! `?prefix=/articles/`, nothing for the whole tree).

use crate::path::{page_file, MAX_URI_LEN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Uri(Vec<u8>),
    Prefix(Vec<u8>),
}

/// Purge arguments that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// An argument other than `uri` or `prefix`, or both.
    UnknownArgument,
    /// Not an absolute path, a dot segment, a control character, a path
    /// that no page maps to...
    InvalidPath,
}

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScopeError::UnknownArgument => "expected no argument, uri=/path or prefix=/path",
            ScopeError::InvalidPath => "invalid path",
        })
    }
}

impl std::error::Error for ScopeError {}

impl Scope {
    /// Parses the purge request's query string.
    pub fn from_args(args: &[u8]) -> Result<Scope, ScopeError> {
        let pairs: Vec<&[u8]> = args
            .split(|&b| b == b'&')
            .filter(|p| !p.is_empty())
            .collect();
        let [pair] = pairs.as_slice() else {
            return if pairs.is_empty() {
                Ok(Scope::All)
            } else {
                Err(ScopeError::UnknownArgument)
            };
        };
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (&pair[..], &b""[..]),
        };
        let value = percent_decode(value).ok_or(ScopeError::InvalidPath)?;
        match name {
            b"uri" => {
                page_file(&value).map_err(|_| ScopeError::InvalidPath)?;
                Ok(Scope::Uri(value))
            }
            b"prefix" => {
                check_prefix(&value)?;
                Ok(if value == b"/" {
                    Scope::All
                } else {
                    Scope::Prefix(value)
                })
            }
            _ => Err(ScopeError::UnknownArgument),
        }
    }

    /// True when a page for `uri` is removed by this purge.
    pub fn covers(&self, uri: &[u8]) -> bool {
        match self {
            Scope::All => true,
            Scope::Uri(page) => page == uri,
            Scope::Prefix(prefix) => uri.starts_with(prefix),
        }
    }

    /// The name used in replies and the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Uri(_) => "uri",
            Scope::Prefix(_) => "prefix",
        }
    }

    /// The path argument, if any.
    pub fn path(&self) -> Option<&[u8]> {
        match self {
            Scope::All => None,
            Scope::Uri(path) | Scope::Prefix(path) => Some(path),
        }
    }
}

fn check_prefix(prefix: &[u8]) -> Result<(), ScopeError> {
    let invalid = !prefix.starts_with(b"/")
        || prefix.len() > MAX_URI_LEN
        || prefix.iter().any(|&b| b < 0x20 || b == 0x7f);
    // every complete segment must be a plain name
    let complete = &prefix[..prefix.iter().rposition(|&b| b == b'/').unwrap_or(0)];
    let bad_segment = complete
        .split(|&b| b == b'/')
        .skip(1)
        .any(|s| matches!(s, b"" | b"." | b".."));
    if invalid || bad_segment {
        return Err(ScopeError::InvalidPath);
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` for a malformed escape.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' {
            let hex = std::str::from_utf8(value.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
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
    fn coverage() {
        let uri = scope("uri=/a/").unwrap();
        assert!(uri.covers(b"/a/"));
        assert!(!uri.covers(b"/a"));
        assert!(!uri.covers(b"/a/b"));
        let prefix = scope("prefix=/a/").unwrap();
        assert!(prefix.covers(b"/a/"));
        assert!(prefix.covers(b"/a/b/c"));
        assert!(!prefix.covers(b"/a"));
        assert!(!prefix.covers(b"/ab/"));
        assert!(Scope::All.covers(b"/anything"));
    }
}
