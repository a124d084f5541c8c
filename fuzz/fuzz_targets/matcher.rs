//! `static_gen_pattern` / `static_gen_exclude`: any pattern compiles or fails
//! on one line, and a filter combines its patterns as documented.
#![no_main]

#[path = "../../logic/tests/invariants/mod.rs"]
mod invariants;

use arbitrary::Arbitrary;
use invariants::{check_filter, check_pattern};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    include: Vec<String>,
    exclude: Vec<String>,
    uri: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // a few short patterns: compiling large ones only slows the search
    let short = |list: &[String]| list.iter().all(|p| p.len() <= 64) && list.len() <= 3;
    if !short(&input.include) || !short(&input.exclude) || input.uri.len() > 256 {
        return;
    }
    for pattern in input.include.iter().chain(&input.exclude) {
        check_pattern(pattern);
    }
    check_filter(&input.include, &input.exclude, &input.uri);
});
