//! Query arguments: which ones do not change the page
//! (`static_gen_ignore_args`), which ones make pages of their own
//! (`static_gen_key_args`), and the canonical form an argument page is
//! stored under.
//!
//! The canonical form: the arguments left once the ignored ones are
//! removed, sorted by name, each `name=value` with every percent escape
//! decoded and the bytes written again as RFC 3986 writes them in normal
//! form: letters, digits and `-._~` as they are, `+` as it is (a form's
//! space to most applications, so never merged with `%20` or `%2B`), every
//! other byte as `%XX` in uppercase hex. So `?b=1&a=%7e` and `?a=~&b=1` are
//! one page, `a=x+y`, `a=x%20y` and `a=x%2By` three. A name without `=` is
//! written with an empty value (`?flag` and `?flag=` are one page). The
//! form holds no `/`, NUL or `?`, so it can follow a page file's name after
//! a `?` (which no path page's name holds) without leaving its directory.

use std::fmt;

use crate::path::MAX_NAME_LEN;

/// Arguments campaign links and ad platforms add, which no page depends on:
/// the default of `static_gen_ignore_args` (a trailing `*` matches by
/// prefix).
pub const TRACKING_ARGS: &[&str] = &[
    "utm_*",
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_gl",
    "igshid",
    "yclid",
    "twclid",
    "ttclid",
    "li_fat_id",
];

/// Why a request's arguments keep it from being served or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsError {
    /// An argument that is neither ignored nor a key argument.
    Unknown,
    /// A key argument named twice.
    Repeated,
    /// An argument with an empty name (`?=x`, `?a=1&&b=2`).
    EmptyName,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The canonical form would make a file name longer than allowed.
    TooLong,
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArgsError::Unknown => "an argument that is not a key argument",
            ArgsError::Repeated => "a key argument named twice",
            ArgsError::EmptyName => "an argument without a name",
            ArgsError::BadEscape => "a bad percent escape in the arguments",
            ArgsError::TooLong => "arguments too long for a file name",
        })
    }
}

/// A name pattern: a name, or a prefix when it ends in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NamePattern {
    name: Vec<u8>,
    prefix: bool,
}

impl NamePattern {
    fn new(pattern: &[u8]) -> NamePattern {
        match pattern.strip_suffix(b"*") {
            Some(prefix) => NamePattern {
                name: prefix.to_vec(),
                prefix: true,
            },
            None => NamePattern {
                name: pattern.to_vec(),
                prefix: false,
            },
        }
    }

    fn matches(&self, name: &[u8]) -> bool {
        if self.prefix {
            name.starts_with(&self.name)
        } else {
            name == self.name.as_slice()
        }
    }
}

/// Why a name given to `static_gen_ignore_args` or `static_gen_key_args`
/// is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    /// A byte that cannot be in an argument name as sent (`&`, `=`, `%`,
    /// `#`, space, control bytes), or `*` elsewhere than at the end.
    BadByte(u8),
    /// `off` beside names.
    OffNotAlone,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("empty argument name"),
            NameError::BadByte(b) => {
                write!(f, "\"{}\" cannot be in an argument name", b.escape_ascii())
            }
            NameError::OffNotAlone => f.write_str("\"off\" must be the only value"),
        }
    }
}

/// Checks a name as the directives take it (`*` only at the end, and only
/// where `prefix_allowed`).
pub fn check_name(name: &[u8], prefix_allowed: bool) -> Result<(), NameError> {
    let body = match name.strip_suffix(b"*") {
        Some(body) if prefix_allowed => body,
        _ => name,
    };
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    match body
        .iter()
        .find(|&&b| b <= b' ' || b >= 0x7f || b"&=%#*+".contains(&b))
    {
        Some(&b) => Err(NameError::BadByte(b)),
        None => Ok(()),
    }
}

/// `static_gen_ignore_args name ... | off`: the names (`off`: none).
pub fn parse_ignore_args(words: &[&str]) -> Result<Vec<String>, NameError> {
    if words == ["off"] {
        return Ok(Vec::new());
    }
    if words.contains(&"off") {
        return Err(NameError::OffNotAlone);
    }
    parse_names(words, true)
}

/// `static_gen_key_args name ...`: the names.
pub fn parse_key_args(words: &[&str]) -> Result<Vec<String>, NameError> {
    parse_names(words, false)
}

fn parse_names(words: &[&str], prefix_allowed: bool) -> Result<Vec<String>, NameError> {
    words
        .iter()
        .map(|word| check_name(word.as_bytes(), prefix_allowed).map(|()| word.to_string()))
        .collect()
}

/// The argument rules of a location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgRules {
    ignore: Vec<NamePattern>,
    key: Vec<Vec<u8>>,
}

impl ArgRules {
    /// Rules that ignore the names matching `ignore` and key pages by the
    /// names in `key` (names as checked by [`check_name`]).
    pub fn new<I, K>(ignore: I, key: K) -> ArgRules
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        K: IntoIterator,
        K::Item: AsRef<[u8]>,
    {
        ArgRules {
            ignore: ignore
                .into_iter()
                .map(|p| NamePattern::new(p.as_ref()))
                .collect(),
            key: key.into_iter().map(|k| k.as_ref().to_vec()).collect(),
        }
    }

    fn ignored(&self, name: &[u8]) -> bool {
        self.ignore.iter().any(|p| p.matches(name))
    }

    fn keyed(&self, name: &[u8]) -> bool {
        self.key.iter().any(|k| k == name)
    }

    /// The canonical form of the page `query` (the raw query string, without
    /// `?`) asks for, into `out` (cleared first): empty when every argument
    /// is ignored (the page of the path itself); else the key arguments in
    /// canonical form, or why the request cannot take part. `name_room` is
    /// how long the canonical form may be (what a file name leaves).
    pub fn page_args(
        &self,
        query: &[u8],
        name_room: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ArgsError> {
        out.clear();
        let mut kept: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for arg in query.split(|&b| b == b'&') {
            if arg.is_empty() {
                // `?` alone, or `&` at an end: nothing
                continue;
            }
            let (name, value) = match arg.iter().position(|&b| b == b'=') {
                Some(at) => (&arg[..at], &arg[at + 1..]),
                None => (arg, &b""[..]),
            };
            let name = canonical(name)?;
            if name.is_empty() {
                return Err(ArgsError::EmptyName);
            }
            if self.ignored(&decoded_name(&name)) {
                continue;
            }
            if !self.keyed(&decoded_name(&name)) {
                return Err(ArgsError::Unknown);
            }
            kept.push((name, canonical(value)?));
        }
        kept.sort();
        if kept.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(ArgsError::Repeated);
        }
        for (i, (name, value)) in kept.iter().enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            out.extend_from_slice(name);
            out.push(b'=');
            out.extend_from_slice(value);
        }
        if out.len() > name_room {
            out.clear();
            return Err(ArgsError::TooLong);
        }
        Ok(())
    }

    /// Room left in a file name of `name_len` bytes for `?` and the
    /// arguments.
    pub fn room_after(name_len: usize) -> usize {
        MAX_NAME_LEN.saturating_sub(name_len + 1)
    }
}

/// A name in canonical form decoded again, to match it against the
/// configured names (which are written as applications read them).
fn decoded_name(canonical: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical.len());
    let mut i = 0;
    while i < canonical.len() {
        match (canonical[i], canonical.get(i + 1..i + 3)) {
            (b'%', Some(&[h, l])) => {
                out.push(hex(h).unwrap_or(0) << 4 | hex(l).unwrap_or(0));
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// `part` (a name or a value as sent) in canonical form.
fn canonical(part: &[u8]) -> Result<Vec<u8>, ArgsError> {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        let byte = match part[i] {
            b'%' => {
                let escape = part.get(i + 1..i + 3).ok_or(ArgsError::BadEscape)?;
                let (Some(h), Some(l)) = (hex(escape[0]), hex(escape[1])) else {
                    return Err(ArgsError::BadEscape);
                };
                i += 3;
                h << 4 | l
            }
            b'+' => {
                // kept apart from an escaped space and an escaped plus
                out.push(b'+');
                i += 1;
                continue;
            }
            b => {
                i += 1;
                b
            }
        };
        push_normal(&mut out, byte);
    }
    Ok(out)
}

fn push_normal(out: &mut Vec<u8>, byte: u8) {
    if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
        out.push(byte);
    } else {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.extend_from_slice(&[
            b'%',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 15)],
        ]);
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(key: &[&str]) -> ArgRules {
        ArgRules::new(TRACKING_ARGS, key)
    }

    fn page(rules: &ArgRules, query: &str) -> Result<String, ArgsError> {
        let mut out = Vec::new();
        rules
            .page_args(query.as_bytes(), 200, &mut out)
            .map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn tracking_arguments_are_ignored() {
        let r = rules(&[]);
        assert_eq!(
            page(&r, "utm_source=x&utm_medium=y&fbclid=Iw123").unwrap(),
            ""
        );
        assert_eq!(page(&r, "").unwrap(), "");
        assert_eq!(page(&r, "&").unwrap(), "");
        assert_eq!(page(&r, "gclid=1&_ga=2&mc_cid=3").unwrap(), "");
        // names are matched as they are: another case is another name
        assert_eq!(page(&r, "UTM_SOURCE=x"), Err(ArgsError::Unknown));
        assert_eq!(page(&r, "ref=hn"), Err(ArgsError::Unknown));
        // an escaped name is matched decoded
        assert_eq!(page(&r, "utm%5Fsource=x").unwrap(), "");
    }

    #[test]
    fn ignored_arguments_stay_ignored_beside_key_arguments() {
        let r = rules(&["page"]);
        assert_eq!(page(&r, "page=2&utm_source=x").unwrap(), "page=2");
        assert_eq!(page(&r, "fbclid=a&page=2").unwrap(), "page=2");
        assert_eq!(page(&r, "page=2&ref=x"), Err(ArgsError::Unknown));
    }

    #[test]
    fn key_arguments_in_canonical_order_and_form() {
        let r = rules(&["a", "b"]);
        assert_eq!(page(&r, "b=1&a=2").unwrap(), "a=2&b=1");
        assert_eq!(page(&r, "a=2&b=1").unwrap(), "a=2&b=1");
        assert_eq!(page(&r, "a=%7e&b=%2f").unwrap(), "a=~&b=%2F");
        assert_eq!(page(&r, "a=~&b=/").unwrap(), "a=~&b=%2F");
        assert_eq!(page(&r, "a=x+y").unwrap(), "a=x+y");
        assert_eq!(page(&r, "a=x%20y").unwrap(), "a=x%20y");
        assert_eq!(page(&r, "a=x%2By").unwrap(), "a=x%2By");
        assert_eq!(page(&r, "a").unwrap(), "a=");
        assert_eq!(page(&r, "a=").unwrap(), "a=");
        assert_eq!(page(&r, "a=caf%C3%A9").unwrap(), "a=caf%C3%A9");
        assert_eq!(page(&r, "a=café").unwrap(), "a=caf%C3%A9");
    }

    #[test]
    fn what_cannot_be_one_page_is_refused() {
        let r = rules(&["a", "b"]);
        assert_eq!(page(&r, "a=2&a=3"), Err(ArgsError::Repeated));
        assert_eq!(page(&r, "a=2&%61=3"), Err(ArgsError::Repeated));
        assert_eq!(page(&r, "=x"), Err(ArgsError::EmptyName));
        assert_eq!(page(&r, "a=%zz"), Err(ArgsError::BadEscape));
        assert_eq!(page(&r, "a=%4"), Err(ArgsError::BadEscape));
        let mut out = Vec::new();
        let long = format!("a={}", "x".repeat(300));
        assert_eq!(
            r.page_args(long.as_bytes(), 250, &mut out),
            Err(ArgsError::TooLong)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn directive_arguments() {
        assert_eq!(parse_ignore_args(&["off"]), Ok(vec![]));
        assert_eq!(
            parse_ignore_args(&["utm_*", "ref"]),
            Ok(vec!["utm_*".to_string(), "ref".to_string()])
        );
        assert!(parse_ignore_args(&["off", "ref"]).is_err());
        assert_eq!(parse_key_args(&["page"]), Ok(vec!["page".to_string()]));
        assert!(parse_key_args(&["page*"]).is_err());
    }

    #[test]
    fn directive_names_are_checked() {
        assert_eq!(check_name(b"utm_*", true), Ok(()));
        assert_eq!(check_name(b"utm_*", false), Err(NameError::BadByte(b'*')));
        assert_eq!(check_name(b"", true), Err(NameError::Empty));
        assert_eq!(check_name(b"a=b", true), Err(NameError::BadByte(b'=')));
        assert_eq!(check_name(b"a*b", true), Err(NameError::BadByte(b'*')));
        assert_eq!(check_name(b"page", false), Ok(()));
    }
}
