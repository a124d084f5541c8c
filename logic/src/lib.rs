//! The plain-Rust logic of `ngx_http_static_gen_module`.
//!
//! Everything here is independent of nginx so that it can be unit-tested with
//! `cargo test` (a test binary that referenced nginx symbols could not link).
//! The module's FFI layer turns nginx structures into these types.
//!
//! Layers, each using only those below it: `tree` (the root and reserved
//! directory on disk, the mapped shared state), `journal` (purges recorded
//! for MISSes in flight), `store` (writing a page), `sweep` (background
//! deletion), `purge`. The rest (`path`, `scope`, `tags`, `page`, `rules`,
//! `matcher`, `cookie`, `access`, `throttle`) is pure parsing and rules;
//! `stats` the counters' layout and rendering.

pub mod access;
pub mod args;
pub mod compress;
pub mod cookie;
pub mod encoding;
pub mod freshness;
pub mod host;
pub mod journal;
pub mod matcher;
pub mod open_pages;
pub mod page;
pub mod path;
pub mod purge;
pub mod rules;
pub mod scope;
pub mod stats;
pub mod store;
pub mod sweep;
pub mod tags;
pub mod throttle;
pub mod tree;
pub mod validity;
pub mod variants;
pub mod vars;
pub mod writable;
