//! Per-request state, kept in the request pool: dropping it (when nginx
//! destroys the pool) closes the page file and removes an unfinished
//! temporary file.

use std::fs::File;
use std::path::PathBuf;

use ngx::http::{HttpModule, Request};
use static_gen_logic::store::PageWriter;

use crate::StaticGenModule;

/// The outcome of the lookup, as `$static_gen_status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookupStatus {
    /// Answered from a generated page.
    Hit,
    /// No page yet: the request goes upstream and its response may be stored.
    Miss,
    /// Not eligible: method, query string, session cookie, pattern, or URI.
    Bypass,
}

impl LookupStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Hit => "HIT",
            LookupStatus::Miss => "MISS",
            LookupStatus::Bypass => "BYPASS",
        }
    }
}

/// A generated page opened for a HIT.
pub(crate) struct HitPage {
    pub file: File,
    pub path: PathBuf,
    pub size: u64,
    pub mtime: i64,
    pub body_offset: u64,
    pub content_type: Vec<u8>,
}

/// Where a MISS would store its page.
pub(crate) struct MissPage {
    pub root: PathBuf,
    pub file: PathBuf,
}

pub(crate) struct RequestCtx {
    pub status: LookupStatus,
    pub hit: Option<HitPage>,
    pub miss: Option<MissPage>,
    pub writer: Option<PageWriter>,
}

impl RequestCtx {
    pub(crate) fn new(status: LookupStatus) -> Self {
        RequestCtx {
            status,
            hit: None,
            miss: None,
            writer: None,
        }
    }
}

/// The request's context, if the lookup phase created one. It lives in the
/// request pool, so it outlives any borrow of the request wrapper.
pub(crate) fn get<'a>(r: &Request) -> Option<&'a mut RequestCtx> {
    let index = StaticGenModule::module().ctx_index;
    // SAFETY: the slot is NULL or a RequestCtx stored by `set`.
    unsafe { (*r.as_ref().ctx.add(index)).cast::<RequestCtx>().as_mut() }
}

/// Moves `ctx` into the request pool and attaches it to the request.
pub(crate) fn set(r: &Request, ctx: RequestCtx) -> Result<(), ()> {
    let ptr = r.pool().allocate(ctx);
    if ptr.is_null() {
        return Err(());
    }
    r.set_module_ctx(ptr.cast(), StaticGenModule::module());
    Ok(())
}
