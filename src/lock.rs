//! A page lock held by a request of this worker (see
//! `static_gen_logic::tree::locks`): freed as soon as the page is installed
//! or will not be, or when the request ends, and then every waiter is told:
//! those of this worker at once, those of other workers through `notify`.

use std::cell::Cell;
use std::rc::Rc;

use static_gen_logic::tree::{now, Holder, Lock, Tree};

use crate::{notify, wait};

/// A lock this worker holds on a page.
pub(crate) struct PageLock {
    tree: Rc<Tree>,
    key: u64,
    /// Regenerating a page that is served stale meanwhile (counted).
    stale_update: bool,
}

thread_local! {
    /// Stale pages this worker's requests regenerate now.
    static STALE_UPDATES: Cell<usize> = const { Cell::new(0) };
}

/// How many stale pages this worker regenerates now.
pub(crate) fn stale_updates() -> usize {
    STALE_UPDATES.with(Cell::get)
}

impl PageLock {
    /// Tries to take the lock of the page with `key`; `stale_update` when
    /// the page is served stale meanwhile.
    pub(crate) fn take(tree: &Rc<Tree>, key: u64, stale_update: bool) -> Result<PageLock, Lock> {
        match tree.state().lock(key, me()) {
            Lock::Acquired => {
                if stale_update {
                    STALE_UPDATES.with(|n| n.set(n.get() + 1));
                }
                Ok(PageLock {
                    tree: tree.clone(),
                    key,
                    stale_update,
                })
            }
            other => Err(other),
        }
    }
}

impl Drop for PageLock {
    fn drop(&mut self) {
        if self.stale_update {
            STALE_UPDATES.with(|n| n.set(n.get().saturating_sub(1)));
        }
        let me = me();
        let tree_id = self.tree.state().tree_id();
        for pid in self.tree.state().unlock(self.key, me) {
            if pid != me.pid {
                notify::tell(pid, tree_id, self.key);
            }
        }
        wait::wake(tree_id, self.key);
    }
}

/// Remembers that the page with `key` answered with a response that
/// cannot be stored (for `UNSTORABLE_SECS`, in every worker).
pub(crate) fn note_unstorable(tree: &Tree, key: u64) {
    tree.state().note_unstorable(key, now_secs());
}

/// True while the page with `key` is remembered as unstorable: its
/// requests go upstream without the lock.
pub(crate) fn is_unstorable(tree: &Tree, key: u64) -> bool {
    tree.state().is_unstorable(key, now_secs())
}

/// The page with `key` was stored: its requests take the lock again.
pub(crate) fn clear_unstorable(tree: &Tree, key: u64) {
    tree.state().clear_unstorable(key);
}

fn now_secs() -> u32 {
    u32::try_from(now().sec).unwrap_or(u32::MAX)
}

/// This worker as a lock holder (its pid and start time, read once per
/// process: a worker forked from the master must not use the master's).
pub(crate) fn me() -> Holder {
    thread_local! {
        static ME: Cell<Option<Holder>> = const { Cell::new(None) };
    }
    ME.with(|me| match me.get() {
        Some(holder) if holder.pid == std::process::id() => holder,
        _ => {
            let holder = Holder::me();
            me.set(Some(holder));
            holder
        }
    })
}
