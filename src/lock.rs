//! A page lock held by a request of this worker (see
//! `static_gen_logic::tree::locks`): freed as soon as the page is installed
//! or will not be, or when the request ends, and then every waiter is told:
//! those of this worker at once, those of other workers through `notify`.

use std::cell::Cell;
use std::rc::Rc;

use static_gen_logic::tree::{Holder, Lock, Tree};

use crate::{notify, wait};

/// A lock this worker holds on a page.
pub(crate) struct PageLock {
    tree: Rc<Tree>,
    key: u64,
}

impl PageLock {
    /// Tries to take the lock of the page with `key`.
    pub(crate) fn take(tree: &Rc<Tree>, key: u64) -> Result<PageLock, Lock> {
        match tree.state().lock(key, me()) {
            Lock::Acquired => Ok(PageLock {
                tree: tree.clone(),
                key,
            }),
            other => Err(other),
        }
    }
}

impl Drop for PageLock {
    fn drop(&mut self) {
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
