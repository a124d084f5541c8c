//! Session cookies: `static_gen_session_cookie name ...;`. A request that
//! carries one is a logged-in visitor's, never served from or stored into the
//! generated tree. A name ending in `*` matches every cookie it prefixes
//! (`wordpress_logged_in_*`).

/// The session cookie names of one location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCookies {
    names: Vec<CookieName>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CookieName {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
}

/// Django's session cookie.
pub const DEFAULT_SESSION_COOKIE: &str = "sessionid";

/// A cookie name that cannot be matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieNameError(pub String);

impl std::fmt::Display for CookieNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid cookie name \"{}\"", self.0)
    }
}

impl std::error::Error for CookieNameError {}

impl Default for SessionCookies {
    fn default() -> Self {
        SessionCookies::new([DEFAULT_SESSION_COOKIE]).expect("valid default")
    }
}

impl SessionCookies {
    /// Builds the set from configured names, refusing empty names, a lone
    /// `*`, and characters a cookie name cannot hold.
    pub fn new<I, S>(names: I) -> Result<Self, CookieNameError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = names
            .into_iter()
            .map(|name| parse_name(name.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(SessionCookies { names })
    }

    /// True when a `Cookie` header value carries a session cookie. Pairs
    /// are split at `,` as well as `;`: some frameworks (Python's
    /// `SimpleCookie`) read `a=b, sessionid=1` as two cookies, and when in
    /// doubt the request must bypass rather than share a private page.
    pub fn present_in(&self, cookie_header: &[u8]) -> bool {
        cookie_header
            .split(|&b| b == b';' || b == b',')
            .map(|pair| {
                let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
                name.trim_ascii()
            })
            .any(|name| self.names.iter().any(|n| n.matches(name)))
    }
}

impl CookieName {
    fn matches(&self, name: &[u8]) -> bool {
        match self {
            CookieName::Exact(exact) => name == exact.as_slice(),
            CookieName::Prefix(prefix) => name.starts_with(prefix),
        }
    }
}

fn parse_name(name: &str) -> Result<CookieName, CookieNameError> {
    let (stem, prefix) = match name.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    let valid = !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}*".contains(&b));
    if !valid {
        return Err(CookieNameError(name.to_owned()));
    }
    let stem = stem.as_bytes().to_vec();
    Ok(if prefix {
        CookieName::Prefix(stem)
    } else {
        CookieName::Exact(stem)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_django_sessionid() {
        let cookies = SessionCookies::default();
        assert!(cookies.present_in(b"sessionid=abc"));
        assert!(cookies.present_in(b"csrftoken=x; sessionid=abc"));
        assert!(cookies.present_in(b"csrftoken=x;sessionid=abc;_ga=1"));
    }

    /// The hole a fault campaign found: a comma-separated session cookie
    /// was not seen, and the logged-in page could be stored.
    #[test]
    fn comma_separated_cookies_count() {
        let cookies = SessionCookies::default();
        assert!(cookies.present_in(b"a=b, sessionid=1"));
        assert!(cookies.present_in(b"a=b,sessionid=1"));
        assert!(cookies.present_in(b"a=\"x,y\"; b=c , sessionid"));
    }

    #[test]
    fn other_cookies_do_not_count() {
        let cookies = SessionCookies::default();
        assert!(!cookies.present_in(b"csrftoken=x; _ga=GA1.2"));
        assert!(!cookies.present_in(b"xsessionid=1; sessionid2=2"));
        assert!(!cookies.present_in(b"theme=sessionid"));
        assert!(!cookies.present_in(b""));
    }

    #[test]
    fn prefix_names() {
        let cookies = SessionCookies::new(["wordpress_logged_in_*", "comment_author_*"]).unwrap();
        assert!(cookies.present_in(b"wordpress_logged_in_abc123=admin%7C1"));
        assert!(cookies.present_in(b"a=1; comment_author_5f=joe"));
        assert!(!cookies.present_in(b"wordpress_test_cookie=WP"));
        assert!(!cookies.present_in(b"wordpress_logged_in=x"));
    }

    #[test]
    fn cookie_without_value_counts() {
        assert!(SessionCookies::default().present_in(b"sessionid"));
    }

    #[test]
    fn invalid_names_are_refused() {
        for bad in ["", "*", "a b", "a=b", "a;b", "x*y"] {
            assert!(SessionCookies::new([bad]).is_err(), "{bad:?}");
        }
    }
}
