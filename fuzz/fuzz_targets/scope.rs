//! Purge arguments: the query string, then after a newline a URI. The scope
//! must be a plain path and cover what it names, and the URI, if it maps,
//! must be purgeable (property 3).
#![no_main]

#[path = "../../logic/tests/invariants/mod.rs"]
mod invariants;

use invariants::{check_covers, check_purgeable, check_scope, encode_all, encode_delimiters};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (args, uri) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (data, &b"/"[..]),
    };
    check_purgeable(uri, &encode_all);
    check_purgeable(uri, &encode_delimiters);
    let Some(scope) = check_scope(args) else {
        return;
    };
    invariants::check_scope_not_reserved(&scope);
    let path = scope.path().unwrap_or_default();
    for u in [uri, path, &[path, b"x"].concat(), &path[..path.len() / 2]] {
        check_covers(&scope, u);
    }
});
