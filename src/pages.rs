//! The pages this worker keeps open (`static_gen_open_cache`, see
//! `static_gen_logic::open_pages`), and the timer that closes, every
//! second, those that can no longer be served, so that a purge frees the
//! disk space of the pages it deleted even in a worker that serves nothing.

use std::cell::RefCell;
use std::ptr;
use std::rc::Rc;

use nginx_sys::{
    ngx_add_timer, ngx_connection_t, ngx_current_msec, ngx_cycle_t, ngx_event_t, ngx_msec_t,
};
use static_gen_logic::open_pages::{OpenCacheConfig, OpenError, OpenPage, OpenPages};
use static_gen_logic::tree::{now, Tree};

/// How often kept pages are checked.
const SWEEP_EVERY: ngx_msec_t = 1000;

thread_local! {
    static PAGES: RefCell<Option<OpenPages>> = const { RefCell::new(None) };
}

/// Starts the cache when the worker starts. It may hold half of what the
/// worker's open-file limit leaves beside `worker_connections` (and 64 for
/// logs and listening sockets): the other half stays for nginx's own
/// descriptor users (`open_file_cache`, cache files, temporary files);
/// and at least an eighth of the limit. When descriptors run out all the
/// same, it gives up half its pages.
pub(crate) fn start(cycle: &ngx_cycle_t, config: OpenCacheConfig) {
    let limit = open_file_limit().map_or(usize::MAX, |n| {
        let left = n.saturating_sub(cycle.connection_n + 64);
        (left / 2).max(n / 8)
    });
    PAGES.with(|p| *p.borrow_mut() = Some(OpenPages::new(config, limit)));
    if config.max == 0 {
        return;
    }
    // SAFETY: a zeroed event is nginx's initial state for one; it lives as
    // long as the process (the timer tree holds it).
    unsafe {
        let ev = &mut *Box::into_raw(Box::new(core::mem::zeroed::<ngx_event_t>()));
        // a debug build logs the fd of every expiring timer's connection
        // (`ngx_event_ident`); a timer without one needs a dummy, as
        // nginx's cache manager has
        let dummy = &mut *Box::into_raw(Box::new(core::mem::zeroed::<ngx_connection_t>()));
        dummy.fd = -1;
        ev.data = ptr::from_mut(dummy).cast();
        ev.handler = Some(on_sweep);
        ev.log = cycle.log;
        // a timer that does not keep a worker that is shutting down
        ev.set_cancelable(1);
        ngx_add_timer(ev, SWEEP_EVERY);
    }
}

/// The worker's open-file limit (after `worker_rlimit_nofile`).
fn open_file_limit() -> Option<usize> {
    // SAFETY: getrlimit fills the struct it is given.
    let mut limit: libc::rlimit = unsafe { core::mem::zeroed() };
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as usize)
}

/// Closes every kept page (the worker exits).
pub(crate) fn stop() {
    PAGES.with(|p| p.borrow_mut().take());
}

/// The page `rel` (whose key is `key`) of `tree`, kept open or opened now.
pub(crate) fn open(tree: &Rc<Tree>, rel: &[u8], key: u64) -> Result<Rc<OpenPage>, OpenError> {
    // SAFETY: nginx's cached clock, read on its own thread.
    let now_ms = unsafe { ngx_current_msec } as u64;
    PAGES.with(|p| match p.borrow_mut().as_mut() {
        Some(pages) => pages.open(tree, rel, key, now_ms),
        // before the worker started (never for requests): keep nothing
        None => OpenPages::new(OpenCacheConfig::off(), 0).open(tree, rel, key, now_ms),
    })
}

unsafe extern "C" fn on_sweep(ev: *mut ngx_event_t) {
    let now_ms = ngx_current_msec as u64;
    PAGES.with(|p| {
        if let Some(pages) = p.borrow_mut().as_mut() {
            pages.sweep(now_ms, now());
        }
    });
    if nginx_sys::ngx_exiting == 0 && nginx_sys::ngx_quit == 0 {
        ngx_add_timer(ev, SWEEP_EVERY);
    }
}
