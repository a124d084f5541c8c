//! The rules the logic must keep whatever its input, written once and
//! checked twice: by the property tests (`tests/properties.rs`, inputs from
//! proptest strategies) and by the fuzz targets (`fuzz/`, which include this
//! file by path). Each check panics with a message naming the broken rule.
//!
//! Checks marked *pending* hold for the stricter rules being written, not
//! yet for today's code; the property tests ignore them and the fuzz targets
//! run them only with the `pending` feature.

// Each user (a test binary, a fuzz target) calls only some of the checks.
#![allow(dead_code)]

use static_gen_logic::access::parse_access;
use static_gen_logic::cookie::SessionCookies;
use static_gen_logic::matcher::{check, PatternList, UriFilter};
use static_gen_logic::page::{
    decode_header, encode_header, is_page_start, HeaderError, MAGIC, MAX_HEADER_LEN,
};
use static_gen_logic::path::{
    check_canonical, check_expanded_root, page_file, MAX_DEPTH, MAX_NAME_LEN, MAX_URI_LEN,
    RESERVED_DIR,
};
use static_gen_logic::rules::{
    cache_control_forbids_sharing, mime_type, parse_types, storable, vary_is_shareable,
    ResponseFacts,
};
use static_gen_logic::scope::Scope;
use static_gen_logic::tags::{check_tag, Tags};

/// Shows bytes as text for failure messages.
pub fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Shows a scope as text for failure messages.
pub fn show_scope(scope: &Scope) -> String {
    format!(
        "{} {}",
        scope.kind(),
        show(scope.path().unwrap_or_default())
    )
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes every `%XX`, as nginx does to a request path and the purge
/// location to its arguments; `None` for a malformed escape.
pub fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hi = hex(*raw.get(i + 1)?)?;
            let lo = hex(*raw.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The URI nginx makes of a raw request path: decoded, slashes merged, dot
/// segments resolved; `None` where nginx answers 400.
pub fn nginx_uri(raw: &[u8]) -> Option<Vec<u8>> {
    let decoded = percent_decode(raw)?;
    let rest = decoded.strip_prefix(b"/")?;
    let mut kept: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    let mut trailing = false;
    for (i, segment) in segments.into_iter().enumerate() {
        // a dot segment last names a directory: `/a/..` is `/`, `/a/.` is `/a/`
        trailing = i == last && matches!(segment, b"" | b"." | b"..");
        match segment {
            b"" | b"." => {}
            b".." => {
                kept.pop()?;
            }
            s => kept.push(s),
        }
    }
    let mut uri = b"/".to_vec();
    uri.extend_from_slice(&kept.join(&b'/'));
    if trailing && !kept.is_empty() {
        uri.push(b'/');
    }
    Some(uri)
}

/// Bytes whose escape changes what a path means to some reader: RFC 3986
/// delimiters, `.` (`%2e%2e` is `..` to many), and controls.
/// True for bytes a normal-form path never escapes (unreserved) or whose
/// escape may mean something else to an upstream (reserved, controls).
fn escape_not_normal(b: u8) -> bool {
    is_control(b) || b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)
}

/// Property 2: a page file is a plain relative path under the root, outside
/// the module's own directory, following the documented mapping.
pub fn check_page_file(uri: &[u8], file: &[u8]) {
    let at = || format!("uri {} -> file {}", show(uri), show(file));
    assert!(uri.len() <= MAX_URI_LEN, "uri over MAX_URI_LEN: {}", at());
    assert!(!file.starts_with(b"/"), "absolute file: {}", at());
    assert!(
        !file.iter().copied().any(is_control),
        "control byte: {}",
        at()
    );
    let components: Vec<&[u8]> = file.split(|&b| b == b'/').collect();
    assert!(components.len() <= MAX_DEPTH, "too deep: {}", at());
    for c in &components {
        assert!(
            !matches!(*c, b"" | b"." | b".."),
            "empty or dot component: {}",
            at()
        );
        assert!(c.len() <= MAX_NAME_LEN, "component too long: {}", at());
    }
    assert!(
        components[0] != RESERVED_DIR.as_bytes(),
        "in the reserved directory: {}",
        at()
    );
    // the README's rule: `index.html` for a directory, else `.html` appended
    let mut expected = uri[1..].to_vec();
    if uri.ends_with(b"/") {
        expected.extend_from_slice(b"index.html");
    } else {
        expected.extend_from_slice(b".html");
    }
    assert_eq!(show(file), show(&expected), "not the documented mapping");
}

/// Property 1: distinct URIs never share a file, and no page file is a
/// directory on another page's path. `mapped` holds (uri, file) pairs.
pub fn check_no_collision(mapped: &[(Vec<u8>, Vec<u8>)]) {
    for (u1, f1) in mapped {
        let as_dir = [&f1[..], b"/"].concat();
        for (u2, f2) in mapped {
            assert!(
                u1 == u2 || f1 != f2,
                "{} and {} share file {}",
                show(u1),
                show(u2),
                show(f1)
            );
            assert!(
                !f2.starts_with(&as_dir),
                "page file {} (of {}) is a directory of {} (of {})",
                show(f1),
                show(u1),
                show(f2),
                show(u2)
            );
        }
    }
}

/// Maps each URI and checks properties 1 and 2 over those that map.
pub fn check_mapping(uris: &[Vec<u8>]) {
    let mut mapped = Vec::new();
    for uri in uris {
        if let Ok(file) = page_file(uri) {
            check_page_file(uri, &file);
            mapped.push((uri.clone(), file));
        }
    }
    check_no_collision(&mapped);
}

/// Property 6: `check_canonical` accepts a raw path only when decoding it
/// gives exactly the URI, and only in its RFC 3986 normal form: escapes of
/// bytes that must be escaped (never of unreserved or reserved ones), with
/// uppercase hex digits, and valid UTF-8.
pub fn check_canonical_sound(raw: &[u8], uri: &[u8]) {
    if check_canonical(raw, uri).is_err() {
        return;
    }
    assert_eq!(
        percent_decode(raw).as_deref().map(show),
        Some(show(uri)),
        "accepted raw {} does not decode to the uri",
        show(raw)
    );
    assert!(
        std::str::from_utf8(uri).is_ok(),
        "{} is not UTF-8",
        show(uri)
    );
    let mut i = 0;
    while let Some(at) = raw[i..].iter().position(|&b| b == b'%') {
        let escape = &raw[i + at..i + at + 3];
        let byte = percent_decode(escape).unwrap()[0];
        assert!(
            !escape_not_normal(byte) && !escape.iter().any(u8::is_ascii_lowercase),
            "raw {} accepted with escape {}",
            show(raw),
            show(escape)
        );
        i += at + 3;
    }
}

/// A request path the way the module sees it: nginx's URI of `raw`, checked
/// for canonical form, then mapped. Checks properties 2 and 6 on the way.
pub fn check_request(raw: &[u8]) {
    check_canonical_sound(raw, raw);
    if let Some(decoded) = percent_decode(raw) {
        check_canonical_sound(raw, &decoded);
    }
    if let Some(uri) = nginx_uri(raw) {
        check_canonical_sound(raw, &uri);
        if check_canonical(raw, &uri).is_ok() {
            if let Ok(file) = page_file(&uri) {
                check_page_file(&uri, &file);
            }
        }
    }
    if let Ok(file) = page_file(raw) {
        check_page_file(raw, &file);
    }
}

/// `check_expanded_root` never lets a variable lead out of the directory the
/// static prefix names: resolving `..` in the expanded part stays below it
/// and leaves at least one name.
pub fn check_expanded_root_sound(expanded: &[u8], static_prefix: &[u8]) {
    if check_expanded_root(expanded, static_prefix).is_err() {
        return;
    }
    let at = || {
        format!(
            "root {} from prefix {}",
            show(expanded),
            show(static_prefix)
        )
    };
    assert!(expanded.starts_with(static_prefix), "{}", at());
    assert!(!expanded.iter().copied().any(is_control), "{}", at());
    let dir_len = static_prefix
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |slash| slash + 1);
    let mut depth = 0usize;
    for c in expanded[dir_len..].split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth = depth
                    .checked_sub(1)
                    .unwrap_or_else(|| panic!("escapes: {}", at()))
            }
            _ => depth += 1,
        }
    }
    assert!(depth > 0, "the prefix's directory itself: {}", at());
}

/// Property 3: a purge scope's path is a plain path (every URI scope one that
/// maps to a page), and `covers` says what the scope names. Returns the
/// scope for further checks.
pub fn check_scope(args: &[u8]) -> Option<Scope> {
    let scope = Scope::from_args(args).ok()?;
    let at = || format!("args {} -> {}", show(args), show_scope(&scope));
    match &scope {
        Scope::All => {}
        Scope::Uri(uri) => assert!(page_file(uri).is_ok(), "unmapped uri: {}", at()),
        Scope::Prefix(prefix) => {
            assert!(prefix.starts_with(b"/") && prefix != b"/", "{}", at());
            assert!(prefix.len() <= MAX_URI_LEN, "{}", at());
            assert!(!prefix.iter().copied().any(is_control), "{}", at());
            for segment in complete_segments(prefix) {
                assert!(
                    !matches!(segment, b"" | b"." | b".."),
                    "empty or dot segment: {}",
                    at()
                );
            }
        }
        Scope::Tags(tags) => {
            assert!(!tags.is_empty(), "{}", at());
            for tag in tags {
                assert!(check_tag(tag).is_ok(), "bad tag {}: {}", show(tag), at());
            }
        }
    }
    Some(scope)
}

/// The segments of a path that a `/` ends (not the last, partial one).
fn complete_segments(path: &[u8]) -> Vec<&[u8]> {
    let end = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    path.get(1..end)
        .map_or(Vec::new(), |p| p.split(|&b| b == b'/').collect())
}

/// Property 3: every page that can be stored can be purged, alone
/// (`uri=`) or with any directory above it (`prefix=`). `arg` spells a path
/// as an argument value (percent-encoded as it likes, `&` and `%` always).
pub fn check_purgeable(uri: &[u8], arg: &dyn Fn(&[u8]) -> Vec<u8>) {
    if page_file(uri).is_err() {
        return;
    }
    let parse = |name: &[u8], path: &[u8]| Scope::from_args(&[name, &arg(path)].concat());
    assert_eq!(
        parse(b"uri=", uri).ok(),
        Some(Scope::Uri(uri.to_vec())),
        "uri {} cannot be purged",
        show(uri)
    );
    for (slash, _) in uri.iter().enumerate().filter(|(_, &b)| b == b'/') {
        let dir = &uri[..=slash];
        let expected = if dir == b"/" {
            Scope::All
        } else {
            Scope::Prefix(dir.to_vec())
        };
        assert_eq!(
            parse(b"prefix=", dir).ok(),
            Some(expected),
            "directory {} of {} cannot be purged",
            show(dir),
            show(uri)
        );
    }
}

/// Percent-encodes every byte but letters and digits (`uri=%2Fa%2Fb`).
pub fn encode_all(path: &[u8]) -> Vec<u8> {
    path.iter()
        .flat_map(|&b| {
            if b.is_ascii_alphanumeric() {
                vec![b]
            } else {
                format!("%{b:02X}").into_bytes()
            }
        })
        .collect()
}

/// Percent-encodes only what an argument value must not hold plainly
/// (`+` stands for a space in a query value).
pub fn encode_delimiters(path: &[u8]) -> Vec<u8> {
    path.iter()
        .flat_map(|&b| match b {
            b'&' | b'%' | b'+' => format!("%{b:02X}").into_bytes(),
            _ => vec![b],
        })
        .collect()
}

/// Property 3: no purge reaches into the module's own directory
/// (`prefix=/.static_gen/` would move its journal and temporary files).
pub fn check_scope_not_reserved(scope: &Scope) {
    if let Some(path) = scope.path() {
        assert!(
            complete_segments(path).first() != Some(&RESERVED_DIR.as_bytes()),
            "scope in the reserved directory: {}",
            show_scope(scope)
        );
    }
}

/// Property 3: a URI scope covers exactly its URI, a prefix scope the URIs
/// that start with it, the whole tree everything, a tag scope no untagged
/// page.
pub fn check_covers(scope: &Scope, uri: &[u8]) {
    let expected = match scope {
        Scope::All => true,
        Scope::Uri(page) => page == uri,
        Scope::Prefix(prefix) => uri.starts_with(prefix),
        Scope::Tags(_) => false,
    };
    assert_eq!(
        scope.covers(uri, &Tags::NONE),
        expected,
        "{} covering {}",
        show_scope(scope),
        show(uri)
    );
}

/// Whether a configured session cookie name (`name` or `stem*`) matches a
/// cookie name: the oracle of property 4.
pub fn session_name_matches(configured: &[String], name: &[u8]) -> bool {
    configured
        .iter()
        .any(|c| match c.as_bytes().strip_suffix(b"*") {
            Some(stem) => name.starts_with(stem),
            None => name == c.as_bytes(),
        })
}

/// Property 4: a `Cookie` header holding a session cookie among any others
/// is seen, whatever separator joins them (`; ` by browsers; `, ` when a
/// proxy folds several `Cookie` headers into one, as HTTP/1 folding does).
pub fn check_session_seen(
    cookies: &SessionCookies,
    session: &[u8],
    before: &[Vec<u8>],
    after: &[Vec<u8>],
    separator: &[u8],
) {
    let all: Vec<&[u8]> = before
        .iter()
        .map(Vec::as_slice)
        .chain([session])
        .chain(after.iter().map(Vec::as_slice))
        .collect();
    let header = all.join(separator);
    assert!(
        cookies.present_in(&header),
        "session cookie {} not seen in {}",
        show(session),
        show(&header)
    );
}

/// Property 4: cookies without a session name never count.
pub fn check_others_ignored(cookies: &SessionCookies, others: &[Vec<u8>], separator: &[u8]) {
    let header = others.join(separator);
    assert!(
        !cookies.present_in(&header),
        "no session cookie, yet seen in {}",
        show(&header)
    );
}

/// Property 5: a page header written for printable values (and tags, as
/// `Tags::as_line` gives them) reads back the same, at its exact length, and no truncation of it reads as a header;
/// values with control bytes, or too long, are refused.
pub fn check_header_round_trip(content_type: &[u8], uri: &[u8], tags: &[u8], body: &[u8]) {
    let unprintable = content_type
        .iter()
        .chain(uri)
        .chain(tags)
        .copied()
        .any(is_control);
    let tags_line = if tags.is_empty() { 0 } else { tags.len() + 7 };
    let len = MAGIC.len()
        + b"content-type: \nuri: \n\n".len()
        + content_type.len()
        + uri.len()
        + tags_line;
    let header = match encode_header(content_type, uri, tags) {
        Ok(header) => header,
        Err(e) => {
            assert_eq!(e, HeaderError::Unwritable);
            assert!(
                unprintable || len > MAX_HEADER_LEN,
                "refused printable header for type {} uri {}",
                show(content_type),
                show(uri)
            );
            return;
        }
    };
    assert!(!unprintable, "wrote control bytes: {}", show(&header));
    assert!(header.len() <= MAX_HEADER_LEN);
    let file = [&header[..], body].concat();
    let decoded = decode_header(&file).unwrap_or_else(|e| panic!("{e}: {}", show(&header)));
    assert_eq!(show(decoded.content_type), show(content_type));
    assert_eq!(show(decoded.tags), show(tags));
    assert_eq!(decoded.body_offset, header.len());
    for cut in [
        0,
        MAGIC.len(),
        header.len() / 2,
        header.len() - 2,
        header.len() - 1,
    ] {
        assert!(
            decode_header(&file[..cut]).is_err(),
            "truncated header read: {}",
            show(&file[..cut])
        );
    }
}

/// Property 5: reading any bytes as a page header never panics, and what it
/// reads lies within them: a `content-type` line of the header, and a body
/// offset just past the blank line.
pub fn check_decode(start: &[u8]) {
    let Ok(header) = decode_header(start) else {
        return;
    };
    // either first line: the identity body only, or with variants
    assert!(is_page_start(start), "read without a page's first line");
    let offset = header.body_offset;
    assert!(offset <= start.len(), "body past the end");
    assert_eq!(
        &start[offset - 2..offset],
        b"\n\n",
        "body not after a blank line"
    );
    let ct = header.content_type;
    let ct_at = (ct.as_ptr() as usize).wrapping_sub(start.as_ptr() as usize);
    assert!(ct_at + ct.len() < offset, "content type outside the header");
    assert!(start[..ct_at].ends_with(b"\ncontent-type: "));
    assert!(!ct.contains(&b'\n'));
}

/// `static_gen_pattern`: any text either compiles or gives a one-line error.
pub fn check_pattern(pattern: &str) {
    if let Err(e) = check(pattern) {
        let message = e.to_string();
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{pattern:?}: {message:?}"
        );
    }
}

/// A regular expression matching exactly `bytes`, whatever they are.
pub fn exact_pattern(bytes: &[u8]) -> String {
    let mut pattern = String::from("^");
    for b in bytes {
        pattern.push_str(&format!(r"\x{b:02x}"));
    }
    pattern.push('$');
    pattern
}

fn list(patterns: &[String]) -> PatternList {
    let mut list = PatternList::default();
    for p in patterns {
        // patterns that do not compile are refused and leave the list as is
        let _ = list.add(p);
    }
    list
}

/// A filter allows a URI when one include pattern (or none is given)
/// matches and no exclude pattern does, each judged alone; an exact
/// pattern matches its URI.
pub fn check_filter(include: &[String], exclude: &[String], uri: &[u8]) {
    let one = |p: &String| {
        check(p).is_ok()
            && UriFilter::new(&list(std::slice::from_ref(p)), &PatternList::default()).allows(uri)
    };
    let included = !include.iter().any(|p| check(p).is_ok()) || include.iter().any(one);
    let excluded = exclude.iter().any(one);
    let filter = UriFilter::new(&list(include), &list(exclude));
    assert_eq!(
        filter.allows(uri),
        included && !excluded,
        "include {include:?} exclude {exclude:?} uri {}",
        show(uri)
    );
    let exact = vec![exact_pattern(uri)];
    let empty = PatternList::default();
    assert!(UriFilter::new(&list(&exact), &empty).allows(uri));
    assert!(!UriFilter::new(&empty, &list(&exact)).allows(uri));
}

/// `static_gen_types`: accepted values are `*` (also written `*/*`) or a
/// lowercase `type/subtype` (or `type/*`) without parameters.
pub fn check_types(types: &[String]) {
    let Ok(parsed) = parse_types(types) else {
        return;
    };
    assert_eq!(parsed.len(), types.len());
    for (t, given) in parsed.iter().zip(types) {
        let any = given == "*/*" && t == "*";
        assert!(any || t.eq_ignore_ascii_case(given), "{given:?} -> {t:?}");
        let plain = t.split_once('/').is_some_and(|(main, sub)| {
            let token = |s: &str| {
                !s.is_empty()
                    && s.bytes().all(|b| {
                        b.is_ascii_graphic() && !b.is_ascii_uppercase() && !b";/".contains(&b)
                    })
            };
            token(main) && token(sub)
        });
        assert!(t == "*" || plain, "{given:?} -> {t:?}");
    }
}

/// The MIME type of a `Content-Type` is a trimmed part of it without
/// parameters.
pub fn check_mime_type(content_type: &[u8]) {
    let mime = mime_type(content_type);
    assert!(!mime.contains(&b';'));
    assert_eq!(mime.trim_ascii(), mime);
    assert!(
        memchr_contains(content_type, mime),
        "{} -> {}",
        show(content_type),
        show(mime)
    );
}

fn memchr_contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A response stored is a plain shareable 200 of a listed type.
pub fn check_storable(facts: &ResponseFacts<'_>, types: &[String]) {
    if storable(facts, types).is_err() {
        return;
    }
    let at = || format!("{facts:?} types {types:?}");
    assert_eq!(facts.status, 200, "{}", at());
    assert!(!facts.has_set_cookie, "{}", at());
    assert!(
        !cache_control_forbids_sharing(facts.cache_control),
        "{}",
        at()
    );
    assert!(vary_is_shareable(facts.vary), "{}", at());
    assert!(
        facts.content_encoding.is_empty()
            || facts.content_encoding.eq_ignore_ascii_case(b"identity"),
        "{}",
        at()
    );
    let mime = mime_type(facts.content_type);
    // `*`, the type itself, or `main/*` for a type with that main type and
    // a subtype
    let main_of = |mime: &[u8]| match mime.iter().position(|&b| b == b'/') {
        Some(slash) if slash + 1 < mime.len() => Some(mime[..slash].to_vec()),
        _ => None,
    };
    let listed = |t: &String| match t.strip_suffix("/*") {
        _ if t == "*" => true,
        Some(main) => main_of(mime).is_some_and(|m| m.eq_ignore_ascii_case(main.as_bytes())),
        None => !mime.is_empty() && mime.eq_ignore_ascii_case(t.as_bytes()),
    };
    assert!(types.iter().any(listed), "{}", at());
}

/// `static_gen_access`: accepted exactly for `user|group|all` : `r|rw`
/// words; pages stay owner-writable and never executable.
pub fn check_access(words: &[String]) {
    let valid = words.iter().all(|w| {
        w.split_once(':').is_some_and(|(who, perm)| {
            matches!(who, "user" | "group" | "all") && matches!(perm, "r" | "rw")
        })
    });
    match parse_access(words) {
        Ok(mode) => {
            assert!(valid, "{words:?} accepted");
            assert_eq!(mode & 0o600, 0o600, "{words:?} -> {mode:o}");
            assert_eq!(mode & !0o666, 0, "{words:?} -> {mode:o}");
        }
        Err(_) => assert!(!valid, "{words:?} refused"),
    }
}
