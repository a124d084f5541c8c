//! The plain-Rust logic of `ngx_http_static_gen_module`.
//!
//! Everything here is independent of nginx so that it can be unit-tested with
//! `cargo test` (a test binary that referenced nginx symbols could not link).
//! The module's FFI layer turns nginx structures into these types.

pub mod access;
pub mod cookie;
pub mod epoch;
pub mod journal;
pub mod matcher;
pub mod page;
pub mod path;
pub mod purge;
pub mod rules;
pub mod scope;
pub mod store;
pub mod throttle;
