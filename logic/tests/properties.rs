//! Property tests of the logic's rules, through its public API only. The
//! rules themselves are in `invariants/` (shared with the fuzz targets);
//! here are the input generators, biased towards the inputs that break
//! such rules: `index`, `.html`, dot and empty segments, the reserved
//! directory, escapes, and lengths around the limits.
//!
//! Tests that were marked `#[ignore]` held a rule the code broke (a known bug
//! being fixed); `cargo test -p static-gen-logic --test properties --
//! --ignored` runs them.

mod invariants;

use invariants::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use static_gen_logic::cookie::SessionCookies;
use static_gen_logic::path::{page_file, MAX_DEPTH, MAX_NAME_LEN, MAX_URI_LEN};
use static_gen_logic::rules::{
    cache_control_forbids_sharing, storable, vary_is_shareable, ResponseFacts,
};
use static_gen_logic::scope::Scope;
use static_gen_logic::tags::{add_purge_value, check_tag, Tags, MAX_TAGS_BYTES, MAX_TAG_LEN};

// ---- generators -------------------------------------------------------

fn words(words: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    select(words).prop_map(|w| w.as_bytes().to_vec())
}

/// URI segments that tend to collide or to be refused.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    let near_limit = MAX_NAME_LEN - 7..=MAX_NAME_LEN + 1;
    prop_oneof![
        8 => words(&[
            "index", "index.html", "a", "a.html", "a.html.html", ".html", "html", "b",
            ".static_gen", ".", "..", "", "%", "%2e", "%2F", "caf\u{e9}", "a b", "?",
        ]),
        1 => near_limit.clone().prop_map(|n| vec![b'x'; n]),
        1 => near_limit.prop_map(|n| [&vec![b'y'; n - 5][..], b".html"].concat()),
        1 => vec(any::<u8>(), 0..4),
    ]
}

fn join_uri(segments: &[Vec<u8>], trailing_slash: bool) -> Vec<u8> {
    let mut uri = b"/".to_vec();
    uri.extend_from_slice(&segments.join(&b'/'));
    if trailing_slash && !segments.is_empty() {
        uri.push(b'/');
    }
    uri
}

/// Absolute URIs: short ones from [`segment`], some around the depth limit,
/// some around the length limit.
fn uri() -> impl Strategy<Value = Vec<u8>> {
    let plain = || words(&["a", "b", "index", "a.html"]);
    let long = (MAX_NAME_LEN - 40..=MAX_NAME_LEN).prop_map(|n| vec![b'z'; n]);
    prop_oneof![
        8 => (vec(segment(), 0..5), any::<bool>()),
        1 => (vec(plain(), MAX_DEPTH - 2..=MAX_DEPTH + 1), any::<bool>()),
        1 => (vec(long, MAX_URI_LEN / MAX_NAME_LEN..=MAX_URI_LEN / MAX_NAME_LEN + 1), any::<bool>()),
    ]
    .prop_map(|(segments, slash)| join_uri(&segments, slash))
}

/// How to write one byte in a raw path or an argument.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Plain,
    Upper,
    Lower,
}

fn spellings() -> impl Strategy<Value = Vec<Spelling>> {
    vec(
        prop_oneof![2 => Just(Spelling::Plain), 1 => Just(Spelling::Upper), 1 => Just(Spelling::Lower)],
        0..64,
    )
}

/// Percent-encodes the bytes of `text` as `how` says (plain beyond it),
/// escaping `must` bytes always.
fn encode(text: &[u8], how: &[Spelling], must: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in text.iter().enumerate() {
        match how.get(i).copied().unwrap_or(Spelling::Plain) {
            Spelling::Plain if !must(b) => out.push(b),
            Spelling::Lower => out.extend(format!("%{b:02x}").bytes()),
            _ => out.extend(format!("%{b:02X}").bytes()),
        }
    }
    out
}

/// Purge arguments: `uri=`, `prefix=` or another name, with a path (whole
/// URIs and leading parts of them) percent-encoded at random.
fn purge_args() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let name = words(&["uri", "prefix", "prefix", "page", ""]);
    (
        name,
        uri(),
        any::<prop::sample::Index>(),
        spellings(),
        any::<bool>(),
    )
        .prop_map(|(name, uri, cut, how, stray)| {
            let path = uri[..=cut.index(uri.len())].to_vec();
            let mut args = name;
            args.push(b'=');
            args.extend(encode(&path, &how, |b| matches!(b, b'&' | b'%' | b'+')));
            if stray {
                args.extend_from_slice(b"&");
            }
            (args, path)
        })
}

fn cookie_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.!#$&'^`|~+-]{1,8}"
}

/// A cookie value, RFC 6265 `cookie-octet`s (no space, `"`, `,`, `;`, `\`).
fn cookie_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'()*+./:<=>?@^_`{|}~\\[\\]-]{0,10}"
}

/// Configured session names (`name` or `stem*`).
fn session_names() -> impl Strategy<Value = Vec<String>> {
    vec(
        (cookie_name(), any::<bool>())
            .prop_map(|(name, prefix)| if prefix { name + "*" } else { name }),
        1..4,
    )
}

fn other_cookies() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((cookie_name(), cookie_value()), 0..4)
}

fn pairs(cookies: &[(String, String)]) -> Vec<Vec<u8>> {
    cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}").into_bytes())
        .collect()
}

/// Configured names, the session cookie (`name=value`, the name one of
/// them matches), and other cookies before and after it.
type SessionCase = (SessionCookies, Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn session_case() -> impl Strategy<Value = SessionCase> {
    (
        session_names(),
        any::<prop::sample::Index>(),
        "[A-Za-z0-9_]{0,5}",
        cookie_value(),
        other_cookies(),
        other_cookies(),
    )
        .prop_map(|(names, pick, suffix, value, before, after)| {
            let configured = pick.get(&names);
            let name = match configured.strip_suffix('*') {
                Some(stem) => format!("{stem}{suffix}"),
                None => configured.clone(),
            };
            let cookies = SessionCookies::new(&names).expect("valid names");
            let session = format!("{name}={value}").into_bytes();
            (cookies, session, pairs(&before), pairs(&after))
        })
}

/// Header values without control bytes, some near the header's size limit.
fn printable() -> impl Strategy<Value = Vec<u8>> {
    // no filter: it would reject too often in values of 20 KB
    let byte = prop_oneof![0x20u8..0x7f, 0x80u8..=0xff];
    prop_oneof![
        8 => vec(byte.clone(), 0..40),
        1 => vec(byte, 20_400..20_500),
    ]
}

/// `X-Static-Gen-Tags` values: tags from a few words, separators, bytes
/// that are refused, and sizes around the limits.
fn tag_values() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let piece = prop_oneof![
        8 => words(&["a", "article-12", "home", " ", ",", ", ", "\t", "..", "/", "%2e"]),
        1 => vec(any::<u8>(), 0..3),
        1 => (MAX_TAG_LEN - 1..=MAX_TAG_LEN + 1).prop_map(|n| vec![b't'; n]),
    ];
    let value = vec(piece, 0..8).prop_map(|p| p.concat());
    prop_oneof![
        8 => vec(value, 0..4),
        1 => (MAX_TAGS_BYTES - 2..=MAX_TAGS_BYTES + 2).prop_map(|n| {
            let tag = [vec![b'x'; 99], vec![b' ']].concat();
            vec![tag.repeat(n / 100 + 1)[..n].to_vec()]
        }),
    ]
}

fn control() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..0x20, Just(0x7f)]
}

// ---- 1, 2: URI to file mapping ------------------------------------------

proptest! {
    #[test]
    fn mapped_files_stay_in_the_tree_and_never_clash(uris in vec(uri(), 2..24)) {
        check_mapping(&uris);
    }

    #[test]
    fn arbitrary_bytes_map_safely(uri in vec(any::<u8>(), 0..64)) {
        check_mapping(&[[b"/", &uri[..]].concat(), uri]);
    }

    // ---- 6: canonical requests ----------------------------------------

    /// Raw paths spelled with escapes of any byte (`/`, `.` included).
    #[test]
    fn canonical_check_is_sound(uri in uri(), how in spellings()) {
        check_request(&encode(&uri, &how, |_| false));
    }

    #[test]
    fn canonical_check_never_panics(raw in vec(any::<u8>(), 0..64), uri in vec(any::<u8>(), 0..64)) {
        check_canonical_sound(&raw, &uri);
        check_request(&raw);
    }

    /// What the README promises to accept: a mapped URI spelled plainly or
    /// with harmless escapes (letters, digits, `-_~%`, space, non-ASCII).
    #[test]
    fn the_normal_form_is_accepted_and_no_other_spelling(uri in uri(), how in spellings()) {
        prop_assume!(page_file(&uri).is_ok() && std::str::from_utf8(&uri).is_ok());
        // a `?`, `#`, `[` or `]` can only be spelled escaped, and escaped
        // reserved characters bypass
        prop_assume!(!uri.iter().any(|b| b"?#[]".contains(b)));
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        let normal = encode(&uri, &[], |b| !plain(b));
        prop_assert!(
            static_gen_logic::path::check_canonical(&normal, &uri).is_ok(),
            "{} refused for {}", show(&normal), show(&uri)
        );
        let other = encode(&uri, &how, |b| !plain(b));
        let same = other == normal;
        prop_assert_eq!(
            static_gen_logic::path::check_canonical(&other, &uri).is_ok(),
            same,
            "{} for {}", show(&other), show(&uri)
        );
    }

    #[test]
    fn expanded_roots_stay_in_their_directory(
        dir in vec(words(&["var", "cache", "site"]), 0..3),
        partial in words(&["", "site-", "."]),
        expansion in vec(words(&["a", "b.c", "..", ".", "", "/", "x\n"]), 0..5),
        absolute in any::<bool>(),
    ) {
        let mut prefix = if absolute { b"/".to_vec() } else { Vec::new() };
        for d in &dir {
            prefix.extend_from_slice(d);
            prefix.push(b'/');
        }
        prefix.extend_from_slice(&partial);
        let expanded = [&prefix[..], &expansion.concat()].concat();
        check_expanded_root_sound(&expanded, &prefix);
    }

    #[test]
    fn expanded_root_check_never_panics(expanded in vec(any::<u8>(), 0..32), prefix in vec(any::<u8>(), 0..8)) {
        check_expanded_root_sound(&expanded, &prefix);
        check_expanded_root_sound(&[&prefix[..], &expanded[..]].concat(), &prefix);
    }

    // ---- 3: purge scopes --------------------------------------------------

    #[test]
    fn scope_parsing_never_panics(args in vec(any::<u8>(), 0..64)) {
        check_scope(&args);
    }

    #[test]
    fn scopes_are_plain_paths_and_cover_what_they_name(
        (args, path) in purge_args(),
        other in uri(),
        cut in any::<prop::sample::Index>(),
    ) {
        if let Some(scope) = check_scope(&args) {
            let shorter = &path[..cut.index(path.len())];
            for uri in [&path[..], shorter, &[&path[..], b"x/"].concat(), &other, b"/"] {
                check_covers(&scope, uri);
            }
        }
    }

    /// Every page stored can be purged, alone or with its directories.
    #[test]
    fn every_page_can_be_purged(uri in uri(), how in spellings()) {
        check_purgeable(&uri, &|path| encode(path, &how, |b| matches!(b, b'&' | b'%' | b'+')));
    }

    #[test]
    fn scopes_never_reach_the_reserved_directory((args, _) in purge_args()) {
        if let Some(scope) = check_scope(&args) {
            check_scope_not_reserved(&scope);
        }
    }

    // ---- 4: session cookies -----------------------------------------------

    #[test]
    fn cookie_check_never_panics(names in session_names(), header in vec(any::<u8>(), 0..64)) {
        let cookies = SessionCookies::new(&names).expect("valid names");
        cookies.present_in(&header);
    }

    #[test]
    fn cookie_names_never_panic(names in vec("\\PC{0,6}", 0..3)) {
        let _ = SessionCookies::new(&names);
    }

    #[test]
    fn session_cookie_is_seen(
        (cookies, session, before, after) in session_case(),
        separator in words(&["; ", ";"]),
    ) {
        check_session_seen(&cookies, &session, &before, &after, &separator);
    }

    #[test]
    fn session_cookie_is_seen_in_folded_headers((cookies, session, before, after) in session_case()) {
        check_session_seen(&cookies, &session, &before, &after, b", ");
    }

    #[test]
    fn other_cookies_do_not_count(
        names in session_names(),
        others in other_cookies(),
        separator in words(&["; ", ";", ", "]),
    ) {
        let cookies = SessionCookies::new(&names).expect("valid names");
        let others: Vec<_> = others
            .into_iter()
            .filter(|(name, _)| !session_name_matches(&names, name.as_bytes()))
            .collect();
        check_others_ignored(&cookies, &pairs(&others), &separator);
    }

    // ---- 5: page header ---------------------------------------------------

    #[test]
    fn page_header_round_trips(
        content_type in printable(),
        uri in printable(),
        tags in tag_values(),
        body in vec(select(&b"\n\nab\0"[..]), 0..16),
    ) {
        let tags = Tags::from_header_values(tags.iter().map(Vec::as_slice)).unwrap_or_default();
        check_header_round_trip(&content_type, &uri, tags.as_line(), &body);
        let again = Tags::from_line(tags.as_line());
        prop_assert_eq!(again, tags);
    }

    #[test]
    fn tag_header_values_parse_strictly(values in tag_values()) {
        let total: usize = values.iter().map(Vec::len).sum();
        let parsed = Tags::from_header_values(values.iter().map(Vec::as_slice));
        let tags: Vec<&[u8]> = values
            .iter()
            .flat_map(|v| v.split(|&b| matches!(b, b' ' | b'\t' | b',')))
            .filter(|t| !t.is_empty())
            .collect();
        let valid = total <= MAX_TAGS_BYTES && tags.iter().all(|t| check_tag(t).is_ok());
        prop_assert_eq!(parsed.is_ok(), valid);
        if let Ok(parsed) = parsed {
            for tag in &tags {
                prop_assert!(parsed.iter().any(|t| t == *tag));
            }
            prop_assert!(parsed.iter().all(|t| tags.contains(&t)));
        }
    }

    #[test]
    fn purge_tags_are_visible_ascii_or_refused(value in vec(any::<u8>(), 0..300)) {
        let mut tags = Vec::new();
        if add_purge_value(&mut tags, &value).is_ok() {
            for tag in &tags {
                prop_assert!(!tag.is_empty() && tag.len() <= MAX_TAG_LEN);
                prop_assert!(tag.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b','));
            }
        }
    }

    #[test]
    fn page_header_refuses_control_bytes(
        content_type in printable(),
        uri in printable(),
        byte in control(),
        at in any::<prop::sample::Index>(),
        in_type in any::<bool>(),
    ) {
        let (mut content_type, mut uri) = (content_type, uri);
        let value = if in_type { &mut content_type } else { &mut uri };
        value.insert(at.index(value.len() + 1), byte);
        check_header_round_trip(&content_type, &uri, b"", b"");
    }

    #[test]
    fn page_header_decoding_never_panics(
        junk in vec(any::<u8>(), 0..64),
        pieces in vec(words(&["\n", "\n\n", "content-type: ", "uri: ", "x", "static_gen 1\n",
            "identity: 1", "variant: br 1 2"]), 0..8),
        with_variants in any::<bool>(),
    ) {
        use static_gen_logic::page::{MAGIC, MAGIC_VARIANTS};
        check_decode(&junk);
        let magic = if with_variants { MAGIC_VARIANTS } else { MAGIC };
        check_decode(&[magic, &pieces.concat()].concat());
    }

    // ---- patterns and storage rules -----------------------------------------

    #[test]
    fn patterns_compile_or_fail_on_one_line(pattern in "\\PC{0,12}") {
        check_pattern(&pattern);
    }

    #[test]
    fn filters_combine_their_patterns(
        include in vec(pattern(), 0..3),
        exclude in vec(pattern(), 0..3),
        uri in uri(),
    ) {
        check_filter(&include, &exclude, &uri);
    }

    #[test]
    fn vary_on_encoding_and_cookie_is_shared(
        fields in vec((words(&["Accept-Encoding", "accept-encoding", "COOKIE", "Cookie", ""]), space(), space()), 0..4),
        other in prop_oneof![Just("*".to_owned()), "[A-Za-z-]{1,16}"],
        at in any::<prop::sample::Index>(),
    ) {
        let mut fields: Vec<Vec<u8>> = fields.into_iter().map(|(f, l, r)| [l, f, r].concat()).collect();
        prop_assert!(vary_is_shareable(&fields.join(&b',')), "{:?}", fields);
        prop_assume!(!["accept-encoding", "cookie"].iter().any(|f| other.eq_ignore_ascii_case(f)));
        fields.insert(at.index(fields.len() + 1), other.into_bytes());
        prop_assert!(!vary_is_shareable(&fields.join(&b',')), "{:?}", fields);
    }

    #[test]
    fn private_cache_control_is_never_shared(
        harmless in vec((words(&["public", "max-age=60", "s-maxage=0", "must-revalidate",
            "no-transform", "immutable", "community=\"UCI\"", ""]), space()), 0..4),
        forbidden in (words(&["private", "no-store", "no-cache"]), vec(any::<bool>(), 8)),
        argument in words(&["", "=\"Set-Cookie\"", "=\"Set-Cookie, X-Id\"", "=x"]),
        at in any::<prop::sample::Index>(),
    ) {
        let mut directives: Vec<Vec<u8>> = harmless.into_iter().map(|(d, s)| [s, d].concat()).collect();
        prop_assert!(!cache_control_forbids_sharing(&directives.join(&b',')), "{:?}", directives);
        let (name, upper) = forbidden;
        let name: Vec<u8> = name.iter().zip(upper.iter().cycle())
            .map(|(&b, &up)| if up { b.to_ascii_uppercase() } else { b })
            .collect();
        directives.insert(at.index(directives.len() + 1), [&b" "[..], &name, &argument].concat());
        prop_assert!(cache_control_forbids_sharing(&directives.join(&b',')), "{:?}", directives);
    }

    #[test]
    fn listed_types_are_stored_with_any_parameters(
        main in "[A-Za-z0-9.+-]{1,8}",
        sub in "[A-Za-z0-9.+-]{1,8}",
        params in words(&["", "; charset=utf-8", " ;charset=UTF-8", ";q"]),
        pad in space(),
    ) {
        let types = static_gen_logic::rules::parse_types(&[format!("{main}/{sub}")]).unwrap();
        check_types(&types);
        let content_type = [&pad[..], main.to_ascii_uppercase().as_bytes(), b"/", sub.as_bytes(), &params].concat();
        let facts = ResponseFacts { status: 200, content_type: &content_type, ..Default::default() };
        prop_assert_eq!(storable(&facts, &types), Ok(()));
    }

    #[test]
    fn stored_responses_are_shareable(
        status in select(&[200usize, 204, 304, 404][..]),
        content_type in vec(select(&b"text/html; a*"[..]), 0..12),
        content_encoding in words(&["", "identity", "IDENTITY", "gzip", "br"]),
        has_set_cookie in any::<bool>(),
        cache_control in words(&["", "public", "private", "no-cache=x", "max-age=1, no-store"]),
        vary in words(&["", "Cookie", "*", "Accept-Encoding, Accept-Language"]),
        types in vec(prop_oneof![Just("*".to_owned()), "[a-z]{1,4}/[a-z]{1,4}"], 0..3),
    ) {
        let facts = ResponseFacts {
            status,
            content_type: &content_type,
            content_encoding: &content_encoding,
            has_set_cookie,
            cache_control: &cache_control,
            vary: &vary,
            location: b"",
        };
        check_storable(&facts, &types);
        check_mime_type(&content_type);
    }

    #[test]
    fn type_and_access_lists_parse_strictly(
        types in vec(prop_oneof!["[ -~]{0,10}", "[a-zA-Z]{1,4}/[a-zA-Z;]{1,4}"], 0..3),
        access in vec(prop_oneof![
            select(&["user:rw", "user:r", "group:r", "group:rw", "all:r", "all:rw",
                "all:x", "user:rwx", "other:r", "all", "", ":r", "group:"][..]).prop_map(String::from),
            "[a-z:]{0,8}",
        ], 0..4),
        content_type in vec(any::<u8>(), 0..16),
    ) {
        check_types(&types);
        check_access(&access);
        check_mime_type(&content_type);
    }
}

fn space() -> impl Strategy<Value = Vec<u8>> {
    words(&["", " ", "\t", "  "])
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&["^/$", "^/a", r"\.html$", "a", "^/(a|b)/", "[", "(", r"\xff", ".*", "^$"][..])
            .prop_map(String::from),
        "[ -~]{0,6}",
        vec(any::<u8>(), 0..4).prop_map(|b| exact_pattern(&b)),
    ]
}

// ---- 3 on disk: a purge removes what it covers ------------------------------

/// A fresh directory for one case, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("static-gen-props.{}.{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What became of one page after a purge.
struct Outcome {
    uri: Vec<u8>,
    file: Vec<u8>,
    covered: bool,
    kept: bool,
    /// What the journal tells a response for `uri` fetched before.
    journal_covered: bool,
}

/// A purge of some pages.
struct PurgeCase {
    scope: Scope,
    /// The purge's error, if it failed.
    error: Option<String>,
    outcomes: Vec<Outcome>,
}

/// Stores a page for each URI that maps, purges `args` (unless it means the
/// whole tree), and tells what became of each page.
fn purge_case(uris: &[Vec<u8>], args: &[u8]) -> Option<PurgeCase> {
    use static_gen_logic::{journal, purge};
    use std::os::unix::ffi::OsStrExt;
    let scope = check_scope(args).filter(|s| *s != Scope::All)?;
    // the known bug of scopes_never_reach_the_reserved_directory
    if scope.path()?.starts_with(b"/.static_gen/") {
        return None;
    }
    let root = Scratch::new();
    let path_of = |file: &[u8]| root.0.join(std::ffi::OsStr::from_bytes(file));
    let mapped: Vec<(Vec<u8>, Vec<u8>)> = uris
        .iter()
        .filter_map(|u| page_file(u).ok().map(|f| (u.clone(), f)))
        .collect();
    for (_, file) in &mapped {
        let path = path_of(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"page").unwrap();
    }
    let tree = static_gen_logic::tree::Tree::open(&root.0).unwrap();
    let mark = journal::mark(&tree).unwrap();
    let error = purge::purge(&tree, &scope, false)
        .err()
        .map(|e| e.to_string());
    let outcomes = mapped
        .into_iter()
        .map(|(uri, file)| Outcome {
            covered: scope.covers(&uri, &Tags::NONE),
            kept: path_of(&file).exists(),
            journal_covered: journal::purged_since(&tree, mark, &uri, &Tags::NONE).unwrap(),
            uri,
            file,
        })
        .collect();
    Some(PurgeCase {
        scope,
        error,
        outcomes,
    })
}

/// Pages, and purge arguments naming one of them, a leading part of it, or
/// that with `.html` or `index` added.
fn purge_cases() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>)> {
    (
        vec(uri(), 0..12),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        words(&["", "", "/", ".html", ".html/", "index"]),
        words(&["prefix=", "uri="]),
    )
        .prop_map(|(mut uris, pick, cut, tail, name)| {
            // pages that always map, so that most cases purge something
            uris.extend(["/a", "/a/", "/a/b", "/a.html"].map(|u| u.as_bytes().to_vec()));
            let uri = pick.get(&uris);
            let path = [&uri[..=cut.index(uri.len())], &tail[..]].concat();
            let args = [&name[..], &encode_all(&path)].concat();
            (uris, args)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After a purge, even one that failed, no page it covers remains (it
    /// would be served stale), and the journal tells a response in flight
    /// exactly which URIs the purge covered.
    #[test]
    fn purge_leaves_no_covered_page((uris, args) in purge_cases()) {
        let Some(case) = purge_case(&uris, &args) else {
            return Ok(());
        };
        for o in case.outcomes {
            let at = format!("{} and {} ({})", show_scope(&case.scope), show(&o.uri), show(&o.file));
            prop_assert!(!(o.covered && o.kept), "left: {}", at);
            prop_assert_eq!(o.journal_covered, o.covered, "journal: {}", at);
        }
    }

    #[test]
    fn purge_removes_only_what_it_covers((uris, args) in purge_cases()) {
        let Some(case) = purge_case(&uris, &args) else {
            return Ok(());
        };
        for o in case.outcomes {
            prop_assert!(o.covered || o.kept, "{} removed {} ({})", show_scope(&case.scope), show(&o.file), show(&o.uri));
        }
    }

    #[test]
    fn purge_of_a_valid_scope_succeeds((uris, args) in purge_cases()) {
        let Some(case) = purge_case(&uris, &args) else {
            return Ok(());
        };
        prop_assert_eq!(case.error, None, "{}", show_scope(&case.scope));
    }
}

// ---- today's findings, smallest inputs -------------------------------------

#[test]
fn reserved_directory_prefix_is_refused() {
    for args in ["prefix=/.static_gen/", "prefix=/.static_gen/purges"] {
        if let Some(scope) = check_scope(args.as_bytes()) {
            check_scope_not_reserved(&scope);
        }
    }
}

/// A prefix through a directory named `*.html` is refused: no page lives
/// below one, and `/a.html/` would name the page file of `/a`.
/// The fuzzer's find (ci/fuzz page): a page header with variants failed
/// the property, which knew only the first line of identity pages.
#[test]
fn a_header_with_variants_is_decoded_within_its_bytes() {
    check_decode(
        b"static_gen 2\niMgen\nidentity: 6\n\0\x16\x16\x16tic_gen 2\n\
          content-type: \xff\xff\xff\0\n\0\n\n\x9c",
    );
}

#[test]
fn purge_of_an_html_directory_is_refused() {
    for args in [
        "prefix=/a.html/",
        "prefix=/a.html/x/",
        "prefix=/index.html/",
    ] {
        assert_eq!(check_scope(args.as_bytes()), None, "{args}");
    }
}

#[test]
fn session_cookie_after_a_comma_is_seen() {
    let cookies = SessionCookies::default();
    check_session_seen(&cookies, b"sessionid=1", &[b"a=1".to_vec()], &[], b", ");
}

/// The module's own Django helper (nginx-conf/django_purge.py) builds the
/// query with `urllib.parse.urlencode`, which writes a space as `+`.
#[test]
fn form_encoded_space_is_purged() {
    assert_eq!(
        Scope::from_args(b"uri=%2Fa+b%2F"),
        Ok(Scope::Uri(b"/a b/".to_vec()))
    );
}

// ---- query arguments ----------------------------------------------------

/// One argument as a client may send it: names and values biased towards
/// escapes, separators and bytes a file name must not hold.
fn argument() -> impl Strategy<Value = Vec<u8>> {
    let part = vec(
        prop_oneof![
            4 => select(&b"abpage_utm019"[..]),
            2 => select(&b"%/?=+.~ \0\xc3\xa9#"[..]),
            1 => any::<u8>(),
        ],
        0..12,
    );
    (part.clone(), proptest::option::of(part)).prop_map(|(name, value)| match value {
        Some(value) => [name, b"=".to_vec(), value].concat(),
        None => name,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The canonical form never leaves the page file's directory, never
    /// passes the room given, and does not depend on the arguments' order.
    #[test]
    fn argument_pages_stay_in_their_directory_and_in_any_order(
        args in vec(argument(), 0..6),
        room in 0usize..64,
    ) {
        let rules = static_gen_logic::args::ArgRules::new(
            static_gen_logic::args::TRACKING_ARGS,
            ["a", "b", "page", "p%", "\u{e9}"],
        );
        let query = args.join(&b'&');
        let mut out = Vec::new();
        let first = rules.page_args(&query, room, &mut out);
        if first.is_ok() {
            prop_assert!(out.len() <= room);
            prop_assert!(!out.iter().any(|&b| b == b'/' || b == b'?' || b == 0 || b == b'#'));
            prop_assert!(out.is_empty() || out != b"." && out != b"..");
        } else {
            prop_assert!(out.is_empty());
        }
        let mut reversed = args.clone();
        reversed.reverse();
        let mut again = Vec::new();
        let second = rules.page_args(&reversed.join(&b'&'), room, &mut again);
        prop_assert_eq!(first.is_ok(), second.is_ok());
        prop_assert_eq!(out, again);
    }
}

/// The input ci/fuzz's `rules` target found once `static_gen_types` took
/// wildcards: `*/*` is kept as `*`, which the invariant did not allow.
#[test]
fn wildcard_types_keep_the_types_invariant() {
    check_types(&[
        "*/*".to_string(),
        "text/*".to_string(),
        "text/html".to_string(),
    ]);
}

/// The second input ci/fuzz's `rules` target found after the wildcards:
/// a `*/*` given to `storable` as it is (not parsed) matches a type whose
/// main type is `*`.
#[test]
fn wildcard_types_keep_the_storable_invariant() {
    let facts = ResponseFacts {
        status: 200,
        content_type: b"*/-",
        ..Default::default()
    };
    check_storable(&facts, &["*/*".to_string()]);
}
