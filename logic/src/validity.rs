//! `static_gen_valid [code ...] time`: which response statuses are stored,
//! and how long each lives, in the form of `proxy_cache_valid`.
//!
//! `200` is always stored (the module's pages); other statuses only when a
//! `static_gen_valid` names them (or `any`). `static_gen_valid time;`
//! alone keeps its old meaning: the lifetime of `200` pages. Server errors
//! (5xx) are never stored: `static_gen_stale` serves the old page instead.
//! `206` and `304` answer one client's request, never a page, and `1xx`
//! and `204` have no body to store.

use std::fmt;

/// The statuses one `static_gen_valid` covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codes {
    /// No code given: 200.
    Ok,
    /// `any`: every status that can be stored.
    Any,
    List(Vec<u16>),
}

/// A `static_gen_valid` code that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeError(String);

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for a status a page may be stored with.
fn storable_status(status: u16) -> bool {
    matches!(status, 200..=499) && !matches!(status, 204 | 206 | 304)
}

/// Parses the codes of a `static_gen_valid` (the words before its time).
pub fn parse_codes(words: &[&str]) -> Result<Codes, CodeError> {
    if words.is_empty() {
        return Ok(Codes::Ok);
    }
    if words == ["any"] {
        return Ok(Codes::Any);
    }
    let mut codes = Vec::with_capacity(words.len());
    for word in words {
        let code = word
            .parse::<u16>()
            .ok()
            .filter(|_| word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| CodeError(format!("invalid status code \"{word}\"")))?;
        if !storable_status(code) {
            return Err(CodeError(format!(
                "status {code} cannot be stored (server errors are answered by \
                 static_gen_stale; 1xx, 204, 206 and 304 have no page to store)"
            )));
        }
        codes.push(code);
    }
    Ok(Codes::List(codes))
}

/// The `static_gen_valid` lines of a location, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validity {
    entries: Vec<(Codes, u64)>,
}

impl Validity {
    /// No line: `200` pages only, living until purged.
    pub const fn new() -> Validity {
        Validity {
            entries: Vec::new(),
        }
    }

    /// Adds a line: `codes` live `secs` (0: until purged).
    pub fn add(&mut self, codes: Codes, secs: u64) {
        self.entries.push((codes, secs));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The line that covers `status`: the first naming it, else the first
    /// `any` (as `proxy_cache_valid`).
    fn entry(&self, status: u16) -> Option<u64> {
        let named = self.entries.iter().find(|(codes, _)| match codes {
            Codes::Ok => status == 200,
            Codes::List(list) => list.contains(&status),
            Codes::Any => false,
        });
        named
            .or_else(|| self.entries.iter().find(|(codes, _)| *codes == Codes::Any))
            .filter(|_| storable_status(status))
            .map(|&(_, secs)| secs)
    }

    /// True when a response with `status` may be stored.
    pub fn stores(&self, status: u16) -> bool {
        status == 200 || self.entry(status).is_some()
    }

    /// How long a page stored with `status` lives, in seconds; 0 for no
    /// limit (until purged).
    pub fn lifetime(&self, status: u16) -> u64 {
        self.entry(status).unwrap_or(0)
    }

    /// True for a status that is a redirect with a `Location`.
    pub fn is_redirect(status: u16) -> bool {
        matches!(status, 301 | 302 | 303 | 307 | 308)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validity(lines: &[(&[&str], u64)]) -> Validity {
        let mut v = Validity::default();
        for (codes, secs) in lines {
            v.add(parse_codes(codes).unwrap(), *secs);
        }
        v
    }

    #[test]
    fn two_hundred_only_by_default() {
        let v = Validity::default();
        assert!(v.stores(200));
        assert_eq!(v.lifetime(200), 0);
        for status in [301, 302, 404, 410, 500] {
            assert!(!v.stores(status), "{status}");
        }
        // a time alone is the lifetime of 200 pages, as it always was
        let v = validity(&[(&[], 3600)]);
        assert_eq!(v.lifetime(200), 3600);
        assert!(!v.stores(301));
    }

    #[test]
    fn named_codes_are_stored_with_their_time() {
        let v = validity(&[
            (&["200"], 3600),
            (&["301", "308"], 86400),
            (&["404", "410"], 60),
        ]);
        assert_eq!(v.lifetime(200), 3600);
        assert!(v.stores(301) && v.stores(308) && v.stores(404) && v.stores(410));
        assert_eq!(v.lifetime(308), 86400);
        assert_eq!(v.lifetime(410), 60);
        // 302 and 307 only when named
        assert!(!v.stores(302) && !v.stores(307));
        // naming 404 alone still stores 200 pages, without a limit
        let v = validity(&[(&["404"], 60)]);
        assert!(v.stores(200));
        assert_eq!(v.lifetime(200), 0);
    }

    #[test]
    fn any_covers_what_can_be_stored_after_named_codes() {
        let v = validity(&[(&["404"], 60), (&["any"], 600)]);
        assert_eq!(v.lifetime(404), 60);
        assert_eq!(v.lifetime(302), 600);
        assert_eq!(v.lifetime(200), 600);
        assert!(!v.stores(500) && !v.stores(206) && !v.stores(304) && !v.stores(204));
    }

    #[test]
    fn codes_that_cannot_be_stored_are_refused() {
        for bad in [
            &["500"][..],
            &["304"],
            &["206"],
            &["99"],
            &["2000"],
            &["abc"],
            &["+200"],
        ] {
            assert!(parse_codes(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_codes(&["any"]), Ok(Codes::Any));
        assert!(parse_codes(&["any", "404"]).is_err());
    }
}
