//! Which URIs a location generates: `static_gen_pattern` and
//! `static_gen_exclude`, regular expressions searched anywhere in the URI
//! (anchor with `^`/`$`), as StaticGenerator's URL lists were.

use regex::bytes::{RegexSet, RegexSetBuilder};

/// Include and exclude patterns of one location.
#[derive(Clone, Debug, Default)]
pub struct UriFilter {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

/// The patterns of one directive at one configuration level, compiled.
#[derive(Clone, Debug, Default)]
pub struct PatternList {
    sources: Vec<String>,
    set: Option<RegexSet>,
}

impl PatternList {
    /// Adds a pattern; on error the list is unchanged.
    pub fn add(&mut self, pattern: &str) -> Result<(), PatternError> {
        check(pattern)?;
        let mut sources = self.sources.clone();
        sources.push(pattern.to_owned());
        self.set = compile(&sources)?;
        self.sources = sources;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// True for a "pattern" that reads like an nginx directive name
/// (`static_gen_session_cookie`, `proxy_pass`): most likely the `;` of the
/// line before was lost, and the directive was swallowed as a pattern.
pub fn looks_like_directive(pattern: &str) -> bool {
    let mut words = pattern.split('_');
    let first = words.next().unwrap_or_default();
    let plain = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    plain(first) && first.as_bytes()[0].is_ascii_lowercase() && {
        let rest: Vec<&str> = words.collect();
        !rest.is_empty() && rest.iter().all(|w| plain(w))
    }
}

/// A pattern that does not compile.
#[derive(Debug)]
pub struct PatternError(regex::Error);

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // regex's message spans several lines; nginx logs one
        let message = self.0.to_string();
        let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
        let summary = lines.next_back().unwrap_or("invalid regular expression");
        f.write_str(summary.trim_start_matches("error: "))
    }
}

impl std::error::Error for PatternError {}

/// Compiles patterns into one set; an empty list gives `None`.
pub fn compile(patterns: &[impl AsRef<str>]) -> Result<Option<RegexSet>, PatternError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    RegexSetBuilder::new(patterns)
        // URIs are bytes; `.` and classes must not fail on non-UTF-8 paths
        .unicode(false)
        .build()
        .map(Some)
        .map_err(PatternError)
}

/// Checks one pattern alone, so a configuration error names the culprit.
pub fn check(pattern: &str) -> Result<(), PatternError> {
    compile(&[pattern]).map(|_| ())
}

impl UriFilter {
    pub fn new(include: &PatternList, exclude: &PatternList) -> Self {
        UriFilter {
            include: include.set.clone(),
            exclude: exclude.set.clone(),
        }
    }

    /// True when `uri` matches an include pattern (or there are none) and no
    /// exclude pattern.
    pub fn allows(&self, uri: &[u8]) -> bool {
        let included = self.include.as_ref().is_none_or(|set| set.is_match(uri));
        included && !self.exclude.as_ref().is_some_and(|set| set.is_match(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_names_are_told_from_patterns() {
        for name in [
            "static_gen_session_cookie",
            "proxy_pass",
            "add_header",
            "static_gen",
        ] {
            assert!(looks_like_directive(name), "{name}");
        }
        for pattern in ["^/articles", "\\.xml$", "feed", "/a_b/", "search_", "^/x_y"] {
            assert!(!looks_like_directive(pattern), "{pattern}");
        }
    }

    fn list(patterns: &[&str]) -> PatternList {
        let mut list = PatternList::default();
        for p in patterns {
            list.add(p).unwrap();
        }
        list
    }

    fn filter(include: &[&str], exclude: &[&str]) -> UriFilter {
        UriFilter::new(&list(include), &list(exclude))
    }

    #[test]
    fn failed_add_leaves_list_unchanged() {
        let mut patterns = list(&["^/a"]);
        assert!(patterns.add("(").is_err());
        let f = UriFilter::new(&patterns, &PatternList::default());
        assert!(f.allows(b"/a"));
        assert!(!f.allows(b"/b"));
    }

    #[test]
    fn no_patterns_allow_everything() {
        assert!(filter(&[], &[]).allows(b"/anything"));
    }

    #[test]
    fn seed_settings() {
        let f = filter(
            &[r"^/$", r"^/(articles|projects|about)"],
            &[
                r"\.xml$",
                r"^/articles/search",
                r"^/articles/feed",
                r"^/articles/comments/posted",
            ],
        );
        assert!(f.allows(b"/"));
        assert!(f.allows(b"/articles/hello/"));
        assert!(f.allows(b"/about"));
        assert!(!f.allows(b"/contact/"));
        assert!(!f.allows(b"/articles/sitemap.xml"));
        assert!(!f.allows(b"/articles/search/"));
        assert!(!f.allows(b"/articles/feed/"));
        assert!(!f.allows(b"/x/articles"));
    }

    #[test]
    fn exclude_wins_over_include() {
        let f = filter(&["^/a"], &["^/a/private"]);
        assert!(f.allows(b"/a/public"));
        assert!(!f.allows(b"/a/private/x"));
    }

    #[test]
    fn non_utf8_uri_is_matched() {
        let f = filter(&["^/caf.+/$"], &[]);
        assert!(f.allows(b"/caf\xc3\xa9/"));
        assert!(f.allows(b"/caf\xff/"));
    }

    #[test]
    fn invalid_pattern_is_reported_on_one_line() {
        let err = check("^/(unclosed").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("unclosed"), "{err}");
    }
}
