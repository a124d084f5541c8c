//! Per-request state, kept in the request pool: dropping it (when nginx
//! destroys the pool) closes the page file and removes an unfinished
//! temporary file.

use std::rc::Rc;

use nginx_sys::{ngx_str_t, ngx_table_elt_t};
use ngx::http::{HttpModule, Request};
use static_gen_logic::encoding::Encoding;
use static_gen_logic::journal::Mark;
use static_gen_logic::open_pages::OpenPage;
use static_gen_logic::stats::{Bypass, Reason, Unstored};
use static_gen_logic::store::PageWriter;
use static_gen_logic::tags::Tags;
use static_gen_logic::tree::{path_key, Tree};

use crate::conf::StaticGenConf;
use crate::lock::{self, PageLock};
use crate::wait::Wait;
use crate::StaticGenModule;

/// The outcome of the lookup, as `$static_gen_status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookupStatus {
    /// Answered from a generated page.
    Hit,
    /// No page yet: the request goes upstream and its response may be stored.
    Miss,
    /// A page older than `static_gen_valid`: handled as a MISS.
    Expired,
    /// A stale page served while another request regenerates it, or
    /// because regenerating it failed (`static_gen_stale`).
    Stale,
    /// Not eligible: method, query string, session cookie, pattern, or URI.
    Bypass,
}

impl LookupStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Hit => "HIT",
            LookupStatus::Miss => "MISS",
            LookupStatus::Expired => "EXPIRED",
            LookupStatus::Stale => "STALE",
            LookupStatus::Bypass => "BYPASS",
        }
    }
}

/// What is sent of a page: its identity body or one of its variants, as a
/// range of the page file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Representation {
    pub encoding: Encoding,
    pub offset: u64,
    pub len: u64,
}

/// A generated page opened for a HIT (kept open by the worker).
pub(crate) type HitPage = Rc<OpenPage>;

/// Where a MISS would store its page, and under which configuration.
pub(crate) struct MissPage {
    pub tree: Rc<Tree>,
    /// The page file, relative to the root.
    pub rel: Vec<u8>,
    pub conf: &'static StaticGenConf,
    /// The purge journal when the request started.
    pub mark: Mark,
    /// The page's lock, when this request regenerates it for others.
    pub lock: Option<PageLock>,
}

pub(crate) struct RequestCtx {
    pub status: LookupStatus,
    pub hit: Option<HitPage>,
    pub miss: Option<MissPage>,
    pub writer: Option<PageWriter>,
    /// The tags of the response being stored (`X-Static-Gen-Tags`).
    pub tags: Tags,
    /// A stale page was servable when the request went upstream: if the
    /// upstream fails, what a lookup finds then is served instead.
    pub fallback: Option<HitPage>,
    /// Serving `fallback` (as this representation): the upstream's body is
    /// dropped.
    pub replacing: Option<Representation>,
    /// Waiting for another request's page: boxed, so that it stays where
    /// it was registered while the context changes around it.
    pub wait: Option<Box<Wait>>,
    /// `Accept-Encoding` request headers set to `identity` for the
    /// upstream, with their values to restore for the client's response.
    pub upstream_identity: Vec<(*mut ngx_table_elt_t, ngx_str_t)>,
    /// Why the request bypassed, or its response was not stored:
    /// `$static_gen_reason` and the counters.
    pub reason: Option<Reason>,
}

impl RequestCtx {
    pub(crate) fn new(status: LookupStatus) -> Self {
        RequestCtx {
            status,
            hit: None,
            miss: None,
            writer: None,
            tags: Tags::NONE,
            fallback: None,
            replacing: None,
            wait: None,
            upstream_identity: Vec::new(),
            reason: None,
        }
    }

    /// A request that bypasses the module, and why.
    pub(crate) fn bypass(reason: Bypass) -> Self {
        RequestCtx {
            reason: Some(Reason::Bypass(reason)),
            ..RequestCtx::new(LookupStatus::Bypass)
        }
    }

    /// Gives up storing, for `reason` (the first one given is kept).
    pub(crate) fn refuse_store(&mut self, reason: Unstored) {
        self.reason.get_or_insert(Reason::Unstored(reason));
        self.abandon_store();
    }

    /// Gives up storing a response answered with `status`; when the
    /// application would answer any request of the page so
    /// ([`Unstored::lasting`]), the page's next requests go upstream at
    /// once for a while instead of one by one under its lock.
    pub(crate) fn refuse_store_of_response(&mut self, reason: Unstored, status: usize) {
        if let Some(miss) = self.miss.as_ref() {
            if miss.conf.lock() && reason.lasting(status) {
                lock::note_unstorable(&miss.tree, path_key(&miss.rel));
            }
        }
        self.refuse_store(reason);
    }

    /// Gives up storing: the page is not installed, and its lock (if
    /// held) is freed so waiters look again.
    pub(crate) fn abandon_store(&mut self) {
        self.writer = None;
        if let Some(miss) = self.miss.as_mut() {
            miss.lock = None;
        }
    }

    /// Gives the client's `Accept-Encoding` back (once the upstream request
    /// is built), so nginx's gzip filter serves the client as asked.
    pub(crate) fn restore_accept_encoding(&mut self) {
        for (header, value) in self.upstream_identity.drain(..) {
            // SAFETY: request headers live as long as the request.
            unsafe { (*header).value = value };
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
