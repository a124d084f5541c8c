//! `Cookie` headers: configured session names, a session cookie among
//! others, and a header of arbitrary bytes (property 4).
#![no_main]

#[path = "../../logic/tests/invariants/mod.rs"]
mod invariants;

use arbitrary::Arbitrary;
use invariants::{check_others_ignored, check_session_seen, session_name_matches};
use libfuzzer_sys::fuzz_target;
use static_gen_logic::cookie::SessionCookies;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Configured names, `true` for a `stem*` prefix.
    names: Vec<(String, bool)>,
    pick: usize,
    suffix: String,
    value: String,
    before: Vec<(String, String)>,
    after: Vec<(String, String)>,
    semicolon_only: bool,
    header: Vec<u8>,
}

/// Keeps the characters a cookie name may hold (an RFC 6265 token).
fn token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}*".contains(*c))
        .collect()
}

/// Keeps the characters a cookie value may hold (`cookie-octet`).
fn octets(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !",;\\\"".contains(*c))
        .collect()
}

fn pairs(cookies: &[(String, String)]) -> Vec<Vec<u8>> {
    cookies
        .iter()
        .map(|(n, v)| (token(n), octets(v)))
        .filter(|(n, _)| !n.is_empty())
        .map(|(n, v)| format!("{n}={v}").into_bytes())
        .collect()
}

fuzz_target!(|input: Input| {
    let raw_names: Vec<&String> = input.names.iter().map(|(n, _)| n).collect();
    let _ = SessionCookies::new(&raw_names);
    let names: Vec<String> = input
        .names
        .iter()
        .map(|(n, prefix)| token(n) + if *prefix { "*" } else { "" })
        .filter(|n| !n.is_empty() && n != "*")
        .collect();
    if names.is_empty() {
        return;
    }
    let cookies = SessionCookies::new(&names).expect("token names are valid");
    cookies.present_in(&input.header);

    let configured = &names[input.pick % names.len()];
    let name = match configured.strip_suffix('*') {
        Some(stem) => stem.to_owned() + &token(&input.suffix),
        None => configured.clone(),
    };
    let session = format!("{name}={}", octets(&input.value)).into_bytes();
    let (before, after) = (pairs(&input.before), pairs(&input.after));
    let separator: &[u8] = if input.semicolon_only { b";" } else { b"; " };
    check_session_seen(&cookies, &session, &before, &after, separator);
    check_session_seen(&cookies, &session, &before, &after, b", ");

    let others: Vec<Vec<u8>> = [before, after]
        .concat()
        .into_iter()
        .filter(|pair| {
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            !session_name_matches(&names, name)
        })
        .collect();
    for separator in [&b"; "[..], b";", b", "] {
        check_others_ignored(&cookies, &others, separator);
    }
});
