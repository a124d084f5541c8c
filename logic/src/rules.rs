//! Which responses are safe to share with every anonymous visitor.

use crate::validity::Validity;

/// What the header filter knows of a response when it decides to store it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseFacts<'a> {
    pub status: usize,
    pub content_type: &'a [u8],
    /// `Content-Encoding`, empty when absent.
    pub content_encoding: &'a [u8],
    pub has_set_cookie: bool,
    /// Every `Cache-Control` value, joined by `,`.
    pub cache_control: &'a [u8],
    /// Every `Vary` value, joined by `,`.
    pub vary: &'a [u8],
    /// `Location`, empty when absent.
    pub location: &'a [u8],
}

/// Why a response is passed through unstored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Status,
    SetCookie,
    CacheControl,
    ContentType,
    ContentEncoding,
    Vary,
}

impl std::fmt::Display for NotStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotStored::Status => "status is not stored (static_gen_valid)",
            NotStored::SetCookie => "response sets a cookie",
            NotStored::CacheControl => "Cache-Control forbids sharing",
            NotStored::ContentType => "content type is not stored",
            NotStored::ContentEncoding => "content encoding is not identity",
            NotStored::Vary => "response varies on more than Accept-Encoding and Cookie",
        })
    }
}

/// Decides whether a `200` response may be written to the generated tree.
/// `types` are the MIME types to store (matched without parameters,
/// case-insensitively); `*` stores every type.
pub fn storable(facts: &ResponseFacts<'_>, types: &[impl AsRef<[u8]>]) -> Result<(), NotStored> {
    storable_with(facts, types, &Validity::default())
}

/// [`storable`], for the statuses `validity` stores: a redirect needs its
/// `Location` (and may have any type, its body is not what is shown).
pub fn storable_with(
    facts: &ResponseFacts<'_>,
    types: &[impl AsRef<[u8]>],
    validity: &Validity,
) -> Result<(), NotStored> {
    let status = u16::try_from(facts.status).unwrap_or(0);
    let redirect = Validity::is_redirect(status);
    if !validity.stores(status) || (redirect && facts.location.is_empty()) {
        return Err(NotStored::Status);
    }
    if facts.has_set_cookie {
        return Err(NotStored::SetCookie);
    }
    if cache_control_forbids_sharing(facts.cache_control) {
        return Err(NotStored::CacheControl);
    }
    if !redirect && !type_listed(facts.content_type, types) {
        return Err(NotStored::ContentType);
    }
    if !facts.content_encoding.is_empty()
        && !facts.content_encoding.eq_ignore_ascii_case(b"identity")
    {
        return Err(NotStored::ContentEncoding);
    }
    if !vary_is_shareable(facts.vary) {
        return Err(NotStored::Vary);
    }
    Ok(())
}

/// True when a `Vary` value names nothing but `Accept-Encoding` (the page
/// is stored as identity and nginx compresses it per client) and `Cookie`
/// (the module already keeps logged-in visitors out).
pub fn vary_is_shareable(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .all(|field| {
            field.is_empty()
                || field.eq_ignore_ascii_case(b"accept-encoding")
                || field.eq_ignore_ascii_case(b"cookie")
        })
}

/// True for `private`, `no-store` and `no-cache` directives, with or
/// without arguments (`private="Set-Cookie"` still means private).
pub fn cache_control_forbids_sharing(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|directive| {
        let name = directive.split(|&b| b == b'=').next().unwrap_or_default();
        let name = name.trim_ascii();
        [&b"private"[..], b"no-store", b"no-cache"]
            .iter()
            .any(|forbidden| name.eq_ignore_ascii_case(forbidden))
    })
}

/// A `static_gen_types` value that is not a MIME type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError(pub String);

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid MIME type \"{}\"", self.0)
    }
}

impl std::error::Error for TypeError {}

/// Parses `static_gen_types`: `type/subtype` without parameters, `type/*`
/// (every subtype), or `*` and `*/*` (any type, kept as `*`); lowercased.
pub fn parse_types<S: AsRef<str>>(types: &[S]) -> Result<Vec<String>, TypeError> {
    types
        .iter()
        .map(|t| {
            let t = t.as_ref();
            if t == "*" || t == "*/*" {
                return Ok("*".to_owned());
            }
            let valid = t.split_once('/').is_some_and(|(main, sub)| {
                let token = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b';' && b != b'/' && b != b'*')
                };
                token(main) && (sub == "*" || token(sub))
            });
            if valid {
                Ok(t.to_ascii_lowercase())
            } else {
                Err(TypeError(t.to_owned()))
            }
        })
        .collect()
}

/// The MIME type of a `Content-Type` value, without parameters.
pub fn mime_type(content_type: &[u8]) -> &[u8] {
    content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// True when `content_type` is one of `types`: `*` lists every type (an
/// empty one too), `type/*` every subtype of `type`.
fn type_listed(content_type: &[u8], types: &[impl AsRef<[u8]>]) -> bool {
    let mime = mime_type(content_type);
    types.iter().any(|t| match t.as_ref() {
        b"*" => true,
        t => match t.strip_suffix(b"/*") {
            Some(main) => mime.iter().position(|&b| b == b'/').is_some_and(|slash| {
                slash + 1 < mime.len() && mime[..slash].eq_ignore_ascii_case(main)
            }),
            None => !mime.is_empty() && mime.eq_ignore_ascii_case(t),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTML: &[&str] = &["text/html"];

    fn page() -> ResponseFacts<'static> {
        ResponseFacts {
            status: 200,
            content_type: b"text/html; charset=utf-8",
            ..Default::default()
        }
    }

    fn check(facts: ResponseFacts<'_>) -> Result<(), NotStored> {
        storable(&facts, HTML)
    }

    #[test]
    fn listed_types_only() {
        let json = ResponseFacts {
            content_type: b"application/json; charset=utf-8",
            ..page()
        };
        assert_eq!(storable(&json, &["text/html", "application/json"]), Ok(()));
        assert_eq!(storable(&json, &["text/html"]), Err(NotStored::ContentType));
    }

    #[test]
    fn plain_page_is_stored() {
        assert_eq!(check(page()), Ok(()));
        assert_eq!(
            check(ResponseFacts {
                content_type: b"TEXT/HTML",
                ..page()
            }),
            Ok(())
        );
        assert_eq!(
            check(ResponseFacts {
                content_encoding: b"identity",
                ..page()
            }),
            Ok(())
        );
        assert_eq!(
            check(ResponseFacts {
                cache_control: b"public, max-age=60",
                ..page()
            }),
            Ok(())
        );
    }

    #[test]
    fn only_200() {
        for status in [201, 204, 206, 301, 302, 304, 404, 500] {
            assert_eq!(
                check(ResponseFacts { status, ..page() }),
                Err(NotStored::Status)
            );
        }
    }

    #[test]
    fn private_responses_are_not_stored() {
        assert_eq!(
            check(ResponseFacts {
                has_set_cookie: true,
                ..page()
            }),
            Err(NotStored::SetCookie)
        );
        for cc in [
            &b"private"[..],
            b"no-store",
            b"No-Cache",
            b"max-age=0, private",
            b"private=\"Set-Cookie\"",
            b"public,no-cache=\"x\"",
        ] {
            assert_eq!(
                check(ResponseFacts {
                    cache_control: cc,
                    ..page()
                }),
                Err(NotStored::CacheControl),
                "{}",
                String::from_utf8_lossy(cc)
            );
        }
        assert_eq!(
            check(ResponseFacts {
                cache_control: b"no-transform",
                ..page()
            }),
            Ok(())
        );
    }

    #[test]
    fn redirects_and_not_found_pages_when_named() {
        let mut v = Validity::default();
        v.add(crate::validity::parse_codes(&["301", "404"]).unwrap(), 60);
        let moved = ResponseFacts {
            status: 301,
            content_type: b"",
            location: b"/new/",
            ..Default::default()
        };
        assert_eq!(storable_with(&moved, HTML, &v), Ok(()));
        assert_eq!(storable(&moved, HTML), Err(NotStored::Status));
        let without_location = ResponseFacts {
            location: b"",
            ..moved
        };
        assert_eq!(
            storable_with(&without_location, HTML, &v),
            Err(NotStored::Status)
        );
        let found = ResponseFacts {
            status: 302,
            ..moved
        };
        assert_eq!(storable_with(&found, HTML, &v), Err(NotStored::Status));
        let missing = ResponseFacts {
            status: 404,
            ..page()
        };
        assert_eq!(storable_with(&missing, HTML, &v), Ok(()));
        let json = ResponseFacts {
            content_type: b"application/json",
            ..missing
        };
        assert_eq!(storable_with(&json, HTML, &v), Err(NotStored::ContentType));
        let private = ResponseFacts {
            has_set_cookie: true,
            ..moved
        };
        assert_eq!(storable_with(&private, HTML, &v), Err(NotStored::SetCookie));
    }

    #[test]
    fn type_lists() {
        assert_eq!(
            parse_types(&["text/HTML", "*", "*/*", "Application/*"]),
            Ok(vec![
                "text/html".into(),
                "*".into(),
                "*".into(),
                "application/*".into()
            ])
        );
        for bad in [
            "html",
            "text/html;charset=utf-8",
            "/html",
            "text/",
            "a/b/c",
            "*/html",
            "text/h*",
            "**",
        ] {
            assert!(parse_types(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcard_types() {
        let facts = |content_type| ResponseFacts {
            content_type,
            ..page()
        };
        let any = parse_types(&["*/*"]).unwrap();
        for stored in [
            &b"text/html"[..],
            b"image/png",
            b"application/json; x=1",
            b"",
        ] {
            assert_eq!(storable(&facts(stored), &any), Ok(()), "{stored:?}");
        }
        let text = parse_types(&["text/*"]).unwrap();
        for stored in [&b"text/html"[..], b"TEXT/plain; charset=utf-8", b"text/css"] {
            assert_eq!(storable(&facts(stored), &text), Ok(()), "{stored:?}");
        }
        for refused in [
            &b"application/json"[..],
            b"texts/html",
            b"text",
            b"",
            b"text/",
        ] {
            assert_eq!(
                storable(&facts(refused), &text),
                Err(NotStored::ContentType),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn vary() {
        for ok in [
            &b""[..],
            b"Accept-Encoding",
            b"Cookie, accept-encoding",
            b"Accept-Encoding,",
        ] {
            assert_eq!(
                check(ResponseFacts { vary: ok, ..page() }),
                Ok(()),
                "{ok:?}"
            );
        }
        for bad in [
            &b"*"[..],
            b"Accept-Language",
            b"Accept-Encoding, User-Agent",
        ] {
            assert_eq!(
                check(ResponseFacts {
                    vary: bad,
                    ..page()
                }),
                Err(NotStored::Vary),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn types_and_encodings() {
        assert_eq!(
            check(ResponseFacts {
                content_type: b"application/json",
                ..page()
            }),
            Err(NotStored::ContentType)
        );
        assert_eq!(
            check(ResponseFacts {
                content_type: b"",
                ..page()
            }),
            Err(NotStored::ContentType)
        );
        assert_eq!(
            storable(
                &ResponseFacts {
                    content_type: b"",
                    ..page()
                },
                &["*"]
            ),
            Ok(())
        );
        assert_eq!(
            check(ResponseFacts {
                content_encoding: b"gzip",
                ..page()
            }),
            Err(NotStored::ContentEncoding)
        );
    }
}
