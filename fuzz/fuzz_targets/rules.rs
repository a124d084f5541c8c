//! Storage rules: `static_gen_types`, `static_gen_access`, and which
//! responses are stored.
#![no_main]

#[path = "../../logic/tests/invariants/mod.rs"]
mod invariants;

use arbitrary::Arbitrary;
use invariants::{check_access, check_mime_type, check_storable, check_types};
use libfuzzer_sys::fuzz_target;
use static_gen_logic::rules::ResponseFacts;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    status: u16,
    content_type: &'a [u8],
    content_encoding: &'a [u8],
    has_set_cookie: bool,
    cache_control: &'a [u8],
    vary: &'a [u8],
    types: Vec<String>,
    access: Vec<String>,
}

fuzz_target!(|input: Input<'_>| {
    check_types(&input.types);
    check_access(&input.access);
    check_mime_type(input.content_type);
    let facts = ResponseFacts {
        status: input.status.into(),
        content_type: input.content_type,
        content_encoding: input.content_encoding,
        has_set_cookie: input.has_set_cookie,
        cache_control: input.cache_control,
        vary: input.vary,
        location: b"",
    };
    check_storable(&facts, &input.types);
});
