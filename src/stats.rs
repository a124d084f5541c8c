//! The counters of `static_gen_stats` (see `static_gen_logic::stats`), in
//! a shared memory zone every worker adds to, kept across reloads: the
//! zone is made at configuration time, and each request is counted once,
//! in the log phase, from its context.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use nginx_sys::{
    ngx_conf_t, ngx_http_phases_NGX_HTTP_LOG_PHASE as LOG_PHASE, ngx_http_request_t, ngx_int_t,
    ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_calloc, ngx_slab_pool_t, ngx_str_t,
    NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_OK,
};
use ngx::core::Status;
use ngx::http::{HttpModule, Request};
use static_gen_logic::encoding::Encoding;
use static_gen_logic::stats::{Counters, PurgeScope, Reason, Status as Counted};

use crate::ctx::{self, LookupStatus};
use crate::ext::{add_phase_handler, send_body, RequestExt};
use crate::StaticGenModule;

/// The zone: the slab pool's header and the counters; nginx wants at least
/// eight pages for a slab pool.
const ZONE_SIZE: usize = 8 * 4096;

/// The counters in the zone, once it is set up (in the master, before the
/// workers start; the same address after a reload).
static COUNTERS: AtomicPtr<Counters> = AtomicPtr::new(ptr::null_mut());

fn counters() -> Option<&'static Counters> {
    // SAFETY: NULL, or the zone's counters, mapped for the process's life.
    unsafe { COUNTERS.load(Ordering::Relaxed).as_ref() }
}

/// Adds the zone (postconfiguration) and the log-phase handler that
/// counts requests.
pub(crate) fn install(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let mut name = ngx::ngx_string!("static_gen_stats");
    let tag = ptr::from_ref(StaticGenModule::module())
        .cast_mut()
        .cast::<c_void>();
    // SAFETY: the configuration being parsed; the zone lives with the cycle.
    let zone = unsafe { ngx_shared_memory_add(cf, &mut name, ZONE_SIZE, tag).as_mut() }.ok_or(())?;
    zone.init = Some(init_zone);
    add_phase_handler(cf, LOG_PHASE, Some(count_request))
}

/// Sets the counters up in a new zone, or keeps the previous cycle's
/// (`data`) on a reload.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let zone = &mut *zone;
    let counters = if data.is_null() {
        let pool = zone.shm.addr.cast::<ngx_slab_pool_t>();
        ngx_slab_calloc(pool, core::mem::size_of::<Counters>())
    } else {
        data
    };
    if counters.is_null() {
        return Status::NGX_ERROR.into();
    }
    zone.data = counters;
    COUNTERS.store(counters.cast(), Ordering::Relaxed);
    Status::NGX_OK.into()
}

/// Counts a request of a `static_gen` location, once, as it is logged.
extern "C" fn count_request(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let (Some(counters), Some(ctx)) = (counters(), ctx::get(r)) else {
        return Status::NGX_OK.into();
    };
    let status = match ctx.status {
        LookupStatus::Hit => Counted::Hit,
        LookupStatus::Miss => Counted::Miss,
        LookupStatus::Expired => Counted::Expired,
        LookupStatus::Stale => Counted::Stale,
        LookupStatus::Bypass => Counted::Bypass,
    };
    let served = matches!(status, Counted::Hit | Counted::Stale).then(|| served(r));
    counters.request(status, ctx.reason, served);
    if let (Counted::Hit, Some(page)) = (status, ctx.hit.as_ref()) {
        counters.hit_of_status(page.status);
    }
    Status::NGX_OK.into()
}

/// The coding and body bytes of a page sent (as `$body_bytes_sent`).
fn served(r: &Request) -> (Encoding, u64) {
    let raw = r.raw();
    // SAFETY: headers_out.content_encoding is NULL or a header of the request.
    let coding = unsafe { raw.headers_out.content_encoding.as_ref() }
        .and_then(|h| Encoding::from_token(h.value.as_bytes()))
        .unwrap_or(Encoding::Identity);
    // SAFETY: a request's connection lives as long as it.
    let sent = unsafe { (*raw.connection).sent } as u64;
    (coding, sent.saturating_sub(raw.header_size as u64))
}

/// A page was installed.
pub(crate) fn stored(bytes: u64) {
    if let Some(c) = counters() {
        c.stored(bytes);
    }
}

/// A request waits for another's page.
pub(crate) fn lock_wait() {
    if let Some(c) = counters() {
        c.lock_wait();
    }
}

/// A purge replied.
pub(crate) fn purged(scope: PurgeScope, soft: bool) {
    if let Some(c) = counters() {
        c.purged(scope, soft);
    }
}

/// `static_gen_stats`: the counters, in the Prometheus text format, or as
/// JSON with `?format=json`.
pub(crate) extern "C" fn stats_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    if r.raw().method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let rc = r.discard_request_body();
    if rc != Status::NGX_OK {
        return rc.into();
    }
    let Some(counters) = counters() else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let json = r
        .raw()
        .args
        .as_bytes()
        .split(|&b| b == b'&')
        .any(|arg| arg == b"format=json");
    if json {
        let body = counters.json() + "\n";
        send_body(r, NGX_HTTP_OK, ngx::ngx_string!("application/json"), &body)
    } else {
        let body = counters.prometheus();
        let text: ngx_str_t = ngx::ngx_string!("text/plain; version=0.0.4; charset=utf-8");
        send_body(r, NGX_HTTP_OK, text, &body)
    }
}

/// `$static_gen_reason`: why the request bypassed or its response was not
/// stored; empty otherwise.
pub(crate) fn reason(r: &Request) -> Option<&'static str> {
    ctx::get(r).and_then(|ctx| ctx.reason).map(Reason::label)
}
