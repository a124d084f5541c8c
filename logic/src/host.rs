//! Which host names a page may be stored for. An application behind
//! `proxy_set_header Host $http_host` (or FastCGI's `HTTP_HOST`, or
//! Django's `USE_X_FORWARDED_HOST`) renders absolute URLs from the host the
//! client sent; a page rendered for `Host: evil.example` must never be
//! served to the site's visitors. So only requests for one of the site's
//! names take part: the names of its `server` block (`server_name`), or
//! those of `static_gen_hosts`.
//!
//! Names follow `server_name`'s forms: exact (`example.org`), a leading
//! wildcard (`*.example.org`), a trailing wildcard (`www.example.*`), and a
//! leading dot (`.example.org`: the name and every subdomain). Regular
//! expressions (`~...`) are matched by the FFI layer with nginx's own
//! regex engine; `""` and `_` match no host.

/// The plain (non-regex) host names of one location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNames {
    exact: Vec<Vec<u8>>,
    /// `*.example.org` and `.example.org` as `.example.org`.
    suffixes: Vec<Vec<u8>>,
    /// `www.example.*` as `www.example.`.
    prefixes: Vec<Vec<u8>>,
}

/// A `static_gen_hosts` value that is not a host name, and why when the
/// name alone does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNameError(pub String, pub Option<&'static str>);

impl std::fmt::Display for HostNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid host name \"{}\"", self.0)?;
        match self.1 {
            Some(why) => write!(f, " ({why})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for HostNameError {}

impl HostNames {
    /// Adds a name in `server_name` syntax (not a regular expression).
    /// `""` and `_` (nginx's "no name") add nothing.
    pub fn add(&mut self, name: &[u8]) -> Result<(), HostNameError> {
        let name = name.to_ascii_lowercase();
        let invalid = || HostNameError(String::from_utf8_lossy(&name).into_owned(), None);
        if name.is_empty() || name == b"_" {
            return Ok(());
        }
        if let Some(rest) = name.strip_prefix(b"*") {
            check_labels(rest.strip_prefix(b".").ok_or_else(invalid)?).ok_or_else(invalid)?;
            self.suffixes.push(rest.to_vec());
        } else if let Some(rest) = name.strip_suffix(b"*") {
            check_labels(rest.strip_suffix(b".").ok_or_else(invalid)?).ok_or_else(invalid)?;
            self.prefixes.push(rest.to_vec());
        } else if let Some(rest) = name.strip_prefix(b".") {
            check_labels(rest).ok_or_else(invalid)?;
            self.exact.push(rest.to_vec());
            self.suffixes.push(name.clone());
        } else {
            check_labels(&name).ok_or_else(invalid)?;
            self.exact.push(name);
        }
        Ok(())
    }

    /// Parses `static_gen_hosts`: names in `server_name` syntax. A regular
    /// expression, and a value that names no host (`""`, `_`), are errors:
    /// the latter would make every request bypass.
    pub fn from_directive<S: AsRef<str>>(words: &[S]) -> Result<HostNames, HostNameError> {
        let mut names = HostNames::default();
        for word in words {
            let word = word.as_ref();
            let why = if word.starts_with('~') {
                "regular expressions are for server_name"
            } else if word.is_empty() || word == "_" {
                "it names no host: every request would bypass"
            } else {
                names.add(word.as_bytes())?;
                continue;
            };
            return Err(HostNameError(word.to_owned(), Some(why)));
        }
        Ok(names)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty()
    }

    /// True when `host` (as nginx validated it: lowercase, without port or
    /// trailing dot) is one of the names.
    pub fn matches(&self, host: &[u8]) -> bool {
        if host.is_empty() {
            return false;
        }
        self.exact.iter().any(|name| host == name.as_slice())
            || self
                .suffixes
                .iter()
                .any(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
            || self
                .prefixes
                .iter()
                .any(|prefix| host.len() > prefix.len() && host.starts_with(prefix))
    }
}

/// Host names: dot-separated labels of letters, digits, `-` and `_`
/// (nginx accepts `_` in names), or an IP literal.
fn check_labels(name: &[u8]) -> Option<()> {
    let ip_literal = name.starts_with(b"[") && name.ends_with(b"]");
    let labels_ok = !name.is_empty()
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    (ip_literal || labels_ok).then_some(())
}

/// The host one element of a `Forwarded` header value names
/// (`for=...;host=example.org`), if any.
pub fn forwarded_host(element: &[u8]) -> Option<&[u8]> {
    element.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        if !pair[..eq].eq_ignore_ascii_case(b"host") {
            return None;
        }
        let value = &pair[eq + 1..];
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}

/// Makes a host value from a header comparable with names: lowercase,
/// without port or trailing dot. `None` when it is not a plain host.
pub fn normalize_host(value: &[u8]) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    let host = if value.starts_with(b"[") {
        let end = value.iter().position(|&b| b == b']')?;
        &value[..=end]
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => &value[..colon],
            None => value,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let host = host.to_ascii_lowercase();
    check_labels(&host).map(|()| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> HostNames {
        let mut names = HostNames::default();
        for name in list {
            names.add(name.as_bytes()).unwrap();
        }
        names
    }

    #[test]
    fn directive_values() {
        let parsed = HostNames::from_directive(&["Example.org", "*.example.net"]).unwrap();
        assert_eq!(parsed, names(&["example.org", "*.example.net"]));
        for bad in [&[""][..], &["_"], &["example.org", ""], &["~^www"]] {
            assert!(HostNames::from_directive(bad).is_err(), "{bad:?}");
        }
        let err = HostNames::from_directive(&[""]).unwrap_err().to_string();
        assert!(err.contains("names no host"), "{err}");
    }

    #[test]
    fn server_name_forms() {
        let n = names(&[
            "example.org",
            "*.cdn.example.org",
            "www.example.*",
            ".blog.test",
        ]);
        for host in [
            "example.org",
            "a.cdn.example.org",
            "a.b.cdn.example.org",
            "www.example.net",
            "blog.test",
            "x.blog.test",
        ] {
            assert!(n.matches(host.as_bytes()), "{host}");
        }
        for host in [
            "evil.example",
            "example.org.evil",
            "cdn.example.org",
            "www.example.",
            "xexample.org",
            "",
            "wwwexample.org",
        ] {
            assert!(!n.matches(host.as_bytes()), "{host}");
        }
    }

    #[test]
    fn no_name_matches_nothing() {
        let n = names(&["", "_"]);
        assert!(n.is_empty());
        assert!(!n.matches(b"localhost"));
        assert!(!n.matches(b"_"));
    }

    #[test]
    fn names_are_case_insensitive() {
        assert!(names(&["Example.ORG"]).matches(b"example.org"));
    }

    #[test]
    fn invalid_names_are_refused() {
        for bad in [
            "a b",
            "*",
            "*example.org",
            "www.*.org",
            "a..b",
            "a/b",
            "www.example*",
        ] {
            assert!(HostNames::default().add(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values() {
        assert_eq!(normalize_host(b"Example.org:8080").unwrap(), b"example.org");
        assert_eq!(normalize_host(b"example.org.").unwrap(), b"example.org");
        assert_eq!(normalize_host(b"[::1]:80").unwrap(), b"[::1]");
        assert_eq!(normalize_host(b"evil.example/x"), None);
        assert_eq!(
            forwarded_host(b"for=1.2.3.4;host=\"Evil.example\";proto=https"),
            Some(&b"Evil.example"[..])
        );
        assert_eq!(forwarded_host(b"for=1.2.3.4"), None);
    }
}
