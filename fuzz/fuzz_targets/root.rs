//! `static_gen_root` with variables: a static prefix, a newline, then the
//! variables' value; the expanded root must stay in the prefix's directory.
#![no_main]

#[path = "../../logic/tests/invariants/mod.rs"]
mod invariants;

use invariants::check_expanded_root_sound;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (prefix, value) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b"/var/cache/site/"[..], data),
    };
    check_expanded_root_sound(&[prefix, value].concat(), prefix);
    check_expanded_root_sound(value, prefix);
});
