//! Page files: any bytes read as a header, and a header written from a
//! content type, a URI and tags, then read back (property 5).
#![no_main]

#[path = "../../logic/tests/invariants/mod.rs"]
mod invariants;

use invariants::{check_decode, check_header_round_trip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_decode(data);
    // content type, newline, URI, newline, body
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let content_type = parts.next().unwrap_or_default();
    let uri = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    check_header_round_trip(content_type, uri, b"", body);
    check_header_round_trip(content_type, uri, b"article-1 home", body);
    // the one control byte the split leaves out
    check_header_round_trip(&[content_type, b"\n"].concat(), uri, b"", body);
});
