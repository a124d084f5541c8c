//! Request paths: lines of raw paths (before any `?`), each taken to nginx's
//! URI and through `check_canonical` and `page_file`; the files of all lines
//! must not clash (properties 1, 2, 6).
#![no_main]

#[path = "../../logic/tests/invariants/mod.rs"]
mod invariants;

use invariants::{check_mapping, check_request, nginx_uri};
use libfuzzer_sys::fuzz_target;
use static_gen_logic::path::check_canonical;

fuzz_target!(|data: &[u8]| {
    let mut uris = Vec::new();
    // a raw path never holds a newline: it separates the paths
    for raw in data.split(|&b| b == b'\n') {
        check_request(raw);
        if let Some(uri) = nginx_uri(raw) {
            if check_canonical(raw, &uri).is_ok() {
                uris.push(uri);
            }
        }
        // a URI as given, in case nginx's would never reach some rule
        uris.push(raw.to_vec());
    }
    check_mapping(&uris);
});
