//! The lookup: in the precontent phase, decide whether the request takes
//! part, look for its page, and when there is a fresh one, replace the
//! location's content handler with the one in `hit` that serves it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use nginx_sys::{
    ngx_conf_t, ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE as PRECONTENT_PHASE, ngx_http_request_t,
    ngx_int_t, ngx_msec_t, ngx_str_t, ngx_table_elt_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR,
    NGX_LOG_INFO,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, Request};
use static_gen_logic::args::ArgRules;
use static_gen_logic::freshness::{freshness, Freshness};
use static_gen_logic::host::{forwarded_host, normalize_host};
use static_gen_logic::journal;
use static_gen_logic::open_pages::OpenError;
use static_gen_logic::path::{check_canonical, page_file_into, PathError};
use static_gen_logic::stats::{Bypass, Reason, Unstored};
use static_gen_logic::tree::{now, path_key, Holding, Lock, PageKeys, Tree, TreeError};

use crate::conf::StaticGenConf;
use crate::ctx::{self, HitPage, LookupStatus, MissPage, RequestCtx};
use crate::ext::{add_phase_handler, RequestExt};
use crate::hit;
use crate::lock::{self, PageLock};
use crate::log::{log_errno, log_tree_error};
use crate::notify;
use crate::pages;
use crate::stats;
use crate::tree::{self, expand_root};
use crate::wait::Wait;
use crate::StaticGenModule;

/// Adds the lookup handler to the precontent phase.
pub(crate) fn install(cf: &mut ngx_conf_t) -> Result<(), ()> {
    add_phase_handler(cf, PRECONTENT_PHASE, Some(lookup_handler))
}

extern "C" fn lookup_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let Some(conf) = StaticGenModule::location_conf(r) else {
        return Status::NGX_DECLINED.into();
    };
    if !conf.enabled() || !r.is_main() {
        return Status::NGX_DECLINED.into();
    }
    match ctx::get(r) {
        // woken, or its timer fired: look again
        Some(ctx) if ctx.wait.is_some() => return resume(r, conf, ctx),
        Some(_) => return Status::NGX_DECLINED.into(),
        None => {}
    }
    let deadline = now_msec() + conf.lock_timeout;
    let request_ctx = lookup(r, conf, deadline);
    if ctx::set(r, request_ctx).is_err() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    proceed(r)
}

/// Goes on with the request as its context says: a HIT is served by the
/// module, a waiter is parked, anything else goes to the location's
/// handler.
fn proceed(r: &mut Request) -> ngx_int_t {
    let Some(ctx) = ctx::get(r) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    if let Some(wait) = ctx.wait.as_mut() {
        wait.park(r);
        return Status::NGX_AGAIN.into();
    }
    if ctx.hit.is_some() {
        r.raw_mut().content_handler = Some(hit::serve_hit);
    }
    Status::NGX_DECLINED.into()
}

/// A waiting request runs again: past `static_gen_lock_timeout` it goes
/// upstream without storing (as `proxy_cache_lock_timeout`), else it looks
/// again (within the same deadline).
fn resume(r: &mut Request, conf: &'static StaticGenConf, ctx: &mut RequestCtx) -> ngx_int_t {
    let Some(mut wait) = ctx.wait.take() else {
        return Status::NGX_DECLINED.into();
    };
    wait.unpark();
    *ctx = if wait.timed_out() {
        ngx::ngx_log_debug_http!(r, "static_gen: lock wait timed out, not storing");
        let mut ctx = RequestCtx::new(LookupStatus::Miss);
        ctx.reason = Some(Reason::Unstored(Unstored::LockTimeout));
        ctx
    } else {
        lookup(r, conf, wait.deadline)
    };
    proceed(r)
}

fn now_msec() -> ngx_msec_t {
    // SAFETY: nginx's cached clock, read on its own thread.
    unsafe { nginx_sys::ngx_current_msec }
}

/// Classifies the request and, for an eligible one, looks for its page.
/// `deadline` ends a wait for the page's lock.
fn lookup(r: &mut Request, conf: &'static StaticGenConf, deadline: ngx_msec_t) -> RequestCtx {
    let mut rel = PageFileBuf::take();
    let root = match eligible_page(r, conf, &mut rel) {
        Ok(root) => root,
        Err(reason) => return RequestCtx::bypass(reason),
    };
    let kept = match tree::tree(&root) {
        Ok(tree) => tree,
        Err(err) => return unusable_tree(r, &err),
    };
    // purges keep pages on disk as long as some location serves them stale
    if kept.state().max_stale_ms() < conf.stale_ms() {
        kept.state().note_stale_ms(conf.stale_ms());
    }
    let stale = match find(r, conf, &kept, &rel) {
        Found::Stale(stale) => stale,
        other => return other.into_ctx(),
    };
    // a MISS makes system calls anyway: one more checks that the kept tree
    // is still the one on disk (a tree replaced by hand), else looks again
    let tree = match tree::current_tree(&root) {
        Ok(tree) => tree,
        Err(err) => return unusable_tree(r, &err),
    };
    if Rc::ptr_eq(&tree, &kept) {
        return regenerate(r, conf, tree, &rel, stale, deadline);
    }
    match find(r, conf, &tree, &rel) {
        Found::Stale(stale) => regenerate(r, conf, tree, &rel, stale, deadline),
        other => other.into_ctx(),
    }
}

/// The page to answer with instead of a failed regeneration of `miss`'s
/// page, as a lookup now would find it: a page installed meanwhile (a
/// `HIT`), or the stale one if purges since (hard, tag, whole) and its
/// stale time still allow it; `None` when nothing may be served.
pub(crate) fn fallback_now(r: &Request, miss: &MissPage) -> Option<(HitPage, LookupStatus)> {
    let tree = match tree::current_tree(miss.tree.root()) {
        Ok(tree) => tree,
        Err(err) => {
            log_tree_error(r.log(), "stale page not served", &err);
            return None;
        }
    };
    match find(r, miss.conf, &tree, &miss.rel) {
        Found::Hit(page) => Some((page, LookupStatus::Hit)),
        Found::Stale(stale) => stale.servable.map(|page| (page, LookupStatus::Stale)),
        Found::Bypass(_) => None,
    }
}

/// What a look in a tree found: a page to serve, a file not to serve, or
/// no fresh page.
enum Found {
    Hit(HitPage),
    Bypass(Bypass),
    Stale(StalePage),
}

/// No fresh page: missing, purged or expired; maybe still servable stale.
struct StalePage {
    status: LookupStatus,
    servable: Option<HitPage>,
}

impl StalePage {
    /// Answered with the stale page (which must be servable).
    fn into_stale_ctx(self) -> RequestCtx {
        RequestCtx {
            hit: self.servable,
            ..RequestCtx::new(LookupStatus::Stale)
        }
    }
}

impl Found {
    fn into_ctx(self) -> RequestCtx {
        match self {
            Found::Hit(page) => RequestCtx {
                hit: Some(page),
                ..RequestCtx::new(LookupStatus::Hit)
            },
            Found::Bypass(reason) => RequestCtx::bypass(reason),
            Found::Stale(stale) => RequestCtx::new(stale.status),
        }
    }
}

/// Looks for the page in `tree`: fresh, stale (missing, purged since it
/// was written, expired), or a file the module does not serve.
fn find(r: &Request, conf: &StaticGenConf, tree: &Rc<Tree>, rel: &[u8]) -> Found {
    let missing = |status| {
        Found::Stale(StalePage {
            status,
            servable: None,
        })
    };
    let keys = PageKeys::of(rel);
    match pages::open(tree, rel, keys.page()) {
        Ok(page) => {
            let purged = tree.state().staleness(&keys, &page.tag_keys, page.modified);
            match freshness(page.modified, purged, conf.lifetimes(page.status), now()) {
                Freshness::Fresh => Found::Hit(page),
                Freshness::Stale { expired, servable } => Found::Stale(StalePage {
                    status: if expired {
                        LookupStatus::Expired
                    } else {
                        LookupStatus::Miss
                    },
                    servable: servable.then_some(page),
                }),
            }
        }
        Err(OpenError::Missing) => missing(LookupStatus::Miss),
        Err(OpenError::Foreign) => {
            log_errno(
                NGX_LOG_INFO,
                r.log(),
                0,
                format_args!(
                    "static_gen: \"{}\" is not a generated page (or a path through a \
                     symbolic link), bypassing",
                    tree.display_path(rel).display()
                ),
            );
            Found::Bypass(Bypass::Mapping)
        }
        Err(OpenError::Io(err)) => {
            log_errno(
                NGX_LOG_ERR,
                r.log(),
                err.raw_os_error().unwrap_or(0),
                format_args!(
                    "static_gen: open \"{}\" failed",
                    tree.display_path(rel).display()
                ),
            );
            Found::Bypass(Bypass::Root)
        }
    }
}

/// No fresh page: one request regenerates it (holding its lock, when
/// `static_gen_lock` is on or a stale page may be served); the others are
/// served the stale page, or wait for the new one, or go upstream too
/// (no lock: as without this module's help).
fn regenerate(
    r: &mut Request,
    conf: &'static StaticGenConf,
    tree: Rc<Tree>,
    rel: &[u8],
    stale: StalePage,
    deadline: ngx_msec_t,
) -> RequestCtx {
    if !r.is_get() || !(conf.lock() || stale.servable.is_some()) {
        return miss(r, conf, tree, rel, stale.status, None);
    }
    // a stale page is regenerated by at most static_gen_stale_updates
    // requests of this worker at a time: the others are served it at once,
    // so a purge of many pages never holds every client up at once
    let updating = stale.servable.is_some();
    if updating && lock::stale_updates() >= conf.stale_updates() {
        return stale.into_stale_ctx();
    }
    let key = path_key(rel);
    if !updating && lock::is_unstorable(&tree, key) {
        // its last answer could not be stored: nothing to wait for
        return miss(r, conf, tree, rel, stale.status, None);
    }
    match PageLock::take(&tree, key, updating) {
        Ok(lock) => {
            // the holder before us may have installed the page and freed
            // the lock since we looked: look again, as the lock is ours
            let stale = match find(r, conf, &tree, rel) {
                Found::Stale(now) => now,
                other => return other.into_ctx(),
            };
            let mut ctx = miss(r, conf, tree, rel, stale.status, Some(lock));
            ctx.fallback = stale.servable;
            ctx
        }
        Err(Lock::Held(_)) if updating => stale.into_stale_ctx(),
        Err(Lock::Held(holding)) if conf.lock() => {
            wait_for(&tree, key, holding, deadline, stale.status)
        }
        Err(_) => miss(r, conf, tree, rel, stale.status, None),
    }
}

/// A request that waits for the page the lock's holder regenerates.
fn wait_for(
    tree: &Tree,
    key: u64,
    holding: Holding,
    deadline: ngx_msec_t,
    status: LookupStatus,
) -> RequestCtx {
    let me = lock::me();
    let holder = holding.holder;
    let tree_id = tree.state().tree_id();
    let mut ctx = RequestCtx::new(status);
    stats::lock_wait();
    if holder.pid != me.pid {
        // told when it is freed, or when the holder dies; if the lock was
        // freed meanwhile, look again at once
        let mut wait = Box::new(Wait::new(tree_id, key, holder.pid, deadline));
        if tree.state().wait_for(key, holding, me.pid) {
            notify::watch_exit(holder.pid);
        } else {
            wait.look_again_now();
        }
        ctx.wait = Some(wait);
        return ctx;
    }
    ctx.wait = Some(Box::new(Wait::new(tree_id, key, holder.pid, deadline)));
    ctx
}

/// A tree that cannot be opened: a MISS that cannot store (the request
/// goes upstream as usual), logged.
fn unusable_tree(r: &Request, err: &TreeError) -> RequestCtx {
    log_tree_error(r.log(), "page not stored", err);
    let mut ctx = RequestCtx::new(LookupStatus::Miss);
    ctx.reason = Some(Reason::Unstored(Unstored::WriteError));
    ctx
}

/// A request that goes upstream and whose response may replace its page:
/// notes the purge journal first, so a purge during the fetch wins.
fn miss(
    r: &mut Request,
    conf: &'static StaticGenConf,
    tree: Rc<Tree>,
    rel: &[u8],
    status: LookupStatus,
    lock: Option<PageLock>,
) -> RequestCtx {
    let mut ctx = RequestCtx::new(status);
    match journal::mark(&tree) {
        Ok(mark) => {
            ctx.miss = Some(MissPage {
                tree,
                rel: rel.to_vec(),
                conf,
                mark,
                lock,
            });
            if r.is_get() {
                ctx.upstream_identity = ask_identity(r);
            }
        }
        Err(err) => {
            log_tree_error(r.log(), "page not stored", &err);
            ctx.reason = Some(Reason::Unstored(Unstored::WriteError));
        }
    }
    ctx
}

/// The root of an eligible request, with its page file (relative to the
/// root) in `rel`, or why it must bypass.
fn eligible_page<'c>(
    r: &mut Request,
    conf: &'c StaticGenConf,
    rel: &mut Vec<u8>,
) -> Result<Cow<'c, Path>, Bypass> {
    if !r.is_get_or_head() {
        return Err(Bypass::Method);
    }
    // credentials mean a private answer, as for a session cookie
    if r.has_credentials() {
        return Err(Bypass::Credentials);
    }
    if !conf.hosts.allows(r.host()) {
        ngx::ngx_log_debug_http!(r, "static_gen: bypass: host is not a name of the site");
        return Err(Bypass::Host);
    }
    headers_allow(r, conf)?;
    let uri = r.uri();
    if !conf.filter.allows(uri) {
        return Err(Bypass::Pattern);
    }
    check_canonical(r.raw_path(), uri)
        .and_then(|()| page_file_into(uri, rel))
        .map_err(|err: PathError| debug_bypass(r, err))
        .map_err(|()| Bypass::Mapping)?;
    if r.has_query() {
        add_page_args(r, conf, rel)?;
    }
    if !r.predicates_pass(conf.bypass) {
        return Err(Bypass::Predicate);
    }
    conf.tree
        .as_ref()
        .and_then(|root| expand_root(r, root))
        .ok_or(Bypass::Root)
}

/// Appends to the page file `rel` the canonical form of the request's key
/// arguments (`?page=2`), if any are left once the ignored ones are
/// removed; or says why the request must bypass.
fn add_page_args(r: &Request, conf: &StaticGenConf, rel: &mut Vec<u8>) -> Result<(), Bypass> {
    let name_len = rel.len() - rel.iter().rposition(|&b| b == b'/').map_or(0, |at| at + 1);
    let mut args = Vec::new();
    let room = ArgRules::room_after(name_len);
    if let Err(err) = conf
        .args
        .page_args(r.raw().args.as_bytes(), room, &mut args)
    {
        ngx::ngx_log_debug_http!(r, "static_gen: bypass: {}", err);
        return Err(Bypass::Args);
    }
    if !args.is_empty() {
        rel.push(b'?');
        rel.extend_from_slice(&args);
    }
    Ok(())
}

thread_local! {
    /// The page file buffer of lookups, reused: a HIT allocates nothing.
    static PAGE_FILE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The lookup's page file, in the worker's reused buffer (given back when
/// dropped).
struct PageFileBuf(Vec<u8>);

impl PageFileBuf {
    fn take() -> PageFileBuf {
        PageFileBuf(PAGE_FILE.with(RefCell::take))
    }
}

impl Drop for PageFileBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        PAGE_FILE.with(|b| b.replace(buf));
    }
}

impl core::ops::Deref for PageFileBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl core::ops::DerefMut for PageFileBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

/// False when a request header makes the answer private (a session
/// cookie) or names another host than the site's for the application
/// (`X-Forwarded-Host`, `Forwarded: host=`, which frameworks may trust).
fn headers_allow(r: &Request, conf: &StaticGenConf) -> Result<(), Bypass> {
    let cookies = conf.cookies();
    let site_host =
        |value: &[u8]| normalize_host(value).is_some_and(|host| conf.hosts.allows(&host));
    for header in r.headers_in() {
        let (key, value) = (header.key.as_bytes(), header.value.as_bytes());
        if key.eq_ignore_ascii_case(b"cookie") {
            if cookies.present_in(value) {
                return Err(Bypass::Cookie);
            }
        } else if key.eq_ignore_ascii_case(b"x-forwarded-host") {
            if !value.split(|&b| b == b',').all(site_host) {
                return Err(Bypass::Host);
            }
        } else if key.eq_ignore_ascii_case(b"forwarded") {
            let mut elements = value.split(|&b| b == b',');
            if !elements.all(|element| forwarded_host(element).is_none_or(site_host)) {
                return Err(Bypass::Host);
            }
        }
    }
    Ok(())
}

/// Makes the upstream answer a MISS uncompressed, so the page is stored as
/// identity (nginx's gzip filter still compresses it for the client): every
/// `Accept-Encoding` request header is set to `identity` until the response
/// header arrives. Returns what to restore.
fn ask_identity(r: &mut Request) -> Vec<(*mut ngx_table_elt_t, ngx_str_t)> {
    let mut saved = Vec::new();
    for header in r.headers_in_mut() {
        if header
            .key
            .as_bytes()
            .eq_ignore_ascii_case(b"accept-encoding")
        {
            saved.push((core::ptr::from_mut(header), header.value));
            header.value = ngx::ngx_string!("identity");
        }
    }
    saved
}

fn debug_bypass(r: &Request, err: PathError) {
    ngx::ngx_log_debug_http!(r, "static_gen: bypass: {}", err);
}
