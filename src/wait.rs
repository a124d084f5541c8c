//! Requests waiting for a page another request regenerates (a held page
//! lock): they hold no thread, only their connection and an event. The
//! event is posted the moment the lock is freed (by this worker, or by
//! another through `notify`), or when its holder dies; its timer ends the
//! wait at `static_gen_lock_timeout`, and looks again every
//! [`LOOK_AGAIN`] in case a message was lost. The request then runs its
//! phases again: the lookup finds the page (a HIT), takes the lock over, or
//! waits on.

use core::ptr;
use std::cell::RefCell;

use nginx_sys::{
    ngx_add_timer, ngx_current_msec, ngx_del_timer, ngx_delete_posted_event, ngx_event_t,
    ngx_http_block_reading, ngx_http_core_run_phases, ngx_http_request_t,
    ngx_http_run_posted_requests, ngx_http_test_reading, ngx_msec_t, ngx_post_event,
    ngx_posted_events,
};
use ngx::http::Request;
use static_gen_logic::tree::lock_slot;

/// The longest a waiter sleeps without looking again.
const LOOK_AGAIN: ngx_msec_t = 100;

/// A request's wait, kept in its context (in the request pool, so its
/// address does not change while the event is registered).
pub(crate) struct Wait {
    event: ngx_event_t,
    tree_id: u64,
    key: u64,
    holder: u32,
    /// When `static_gen_lock_timeout` ends, in `ngx_current_msec` time.
    pub deadline: ngx_msec_t,
    parked: bool,
    /// Look again at the next timer tick (the lock may be free already).
    soon: bool,
}

thread_local! {
    /// The waits of this worker, by address.
    static WAITING: RefCell<Vec<*mut Wait>> = const { RefCell::new(Vec::new()) };
}

impl Wait {
    pub(crate) fn new(tree_id: u64, key: u64, holder: u32, deadline: ngx_msec_t) -> Wait {
        Wait {
            // SAFETY: a zeroed event is nginx's initial state for one.
            event: unsafe { core::mem::zeroed() },
            tree_id,
            key,
            holder,
            deadline,
            parked: false,
            soon: false,
        }
    }

    /// Makes the first look again happen at once, not after a wait.
    pub(crate) fn look_again_now(&mut self) {
        self.soon = true;
    }

    /// True once `static_gen_lock_timeout` has passed.
    pub(crate) fn timed_out(&self) -> bool {
        // SAFETY: nginx's cached clock, read on its own thread.
        let now = unsafe { ngx_current_msec };
        now >= self.deadline
    }

    /// Suspends `r` until the lock is freed, its holder dies, or a timer
    /// fires; the wait must not move from here on (it lives in the
    /// request's context in the pool).
    pub(crate) fn park(&mut self, r: &mut Request) {
        let raw: *mut ngx_http_request_t = r.into();
        // SAFETY: the event lives as long as the request's context, and is
        // unregistered before that ends (`unpark`, Drop).
        unsafe {
            self.event.data = raw.cast();
            self.event.log = (*(*raw).connection).log;
            self.event.handler = Some(resume);
            // a client that goes away ends the request, and the wait
            (*raw).read_event_handler = Some(ngx_http_test_reading);
            let now = ngx_current_msec;
            let left = if self.soon {
                1
            } else {
                self.deadline.saturating_sub(now).clamp(1, LOOK_AGAIN)
            };
            ngx_add_timer(&mut self.event, left);
        }
        self.parked = true;
        let me = ptr::from_mut(self);
        WAITING.with(|w| w.borrow_mut().push(me));
    }

    /// Ends the wait: its event is neither on a timer nor posted, and no
    /// wake-up finds it.
    pub(crate) fn unpark(&mut self) {
        if !self.parked {
            return;
        }
        self.parked = false;
        let me = ptr::from_mut(self);
        let found = WAITING.with(|w| {
            let mut waits = w.borrow_mut();
            let before = waits.len();
            waits.retain(|&p| p != me);
            before - waits.len()
        });
        // a wait registered once, where it was registered (one that moved
        // would leave a dangling entry)
        debug_assert_eq!(found, 1, "a wait was moved after it was parked");
        // SAFETY: the event was set up by `park`.
        unsafe {
            if self.event.timer_set() != 0 {
                ngx_del_timer(&mut self.event);
            }
            if self.event.posted() != 0 {
                ngx_delete_posted_event(&mut self.event);
            }
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.unpark();
    }
}

/// Wakes the requests of this worker that wait for the lock on `key` in
/// the tree `tree_id`, and for every page that shares its slot.
pub(crate) fn wake(tree_id: u64, key: u64) {
    let slot = lock_slot(key);
    wake_where(|w| w.tree_id == tree_id && lock_slot(w.key) == slot);
}

/// Wakes the requests that wait for a lock held by `pid`, which exited.
pub(crate) fn holder_gone(pid: u32) {
    wake_where(|w| w.holder == pid);
}

fn wake_where(matches: impl Fn(&Wait) -> bool) {
    let waits = WAITING.with(|w| w.borrow().clone());
    for wait in waits {
        // SAFETY: registered waits are alive (unregistered when dropped).
        let wait = unsafe { &mut *wait };
        if matches(wait) && wait.event.posted() == 0 {
            // SAFETY: the event is set up; posted events run this cycle.
            unsafe {
                if wait.event.timer_set() != 0 {
                    ngx_del_timer(&mut wait.event);
                }
                ngx_post_event(&mut wait.event, ptr::addr_of_mut!(ngx_posted_events));
            }
        }
    }
}

/// The wait's event: the request runs its phases again, from the lookup.
unsafe extern "C" fn resume(ev: *mut ngx_event_t) {
    let r = (*ev).data.cast::<ngx_http_request_t>();
    let c = (*r).connection;
    (*r).read_event_handler = Some(ngx_http_block_reading);
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}
