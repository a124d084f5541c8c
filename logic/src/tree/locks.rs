//! Page locks in the shared state, so that one request in any worker (of
//! any nginx serving the tree) regenerates a missing or stale page while
//! the others wait for it or are served the stale one.
//!
//! A lock is a slot of a direct-mapped table, chosen by the page's key: one
//! word, taken and freed by compare-and-swap, holds 24 more bits of the key
//! and the holder: its pid and the low bits of its start time (so a reused
//! pid is not taken for a holder that is gone, even after a reboot); beside
//! it, the pids of the workers waiting for it, told when it is freed. Two
//! pages whose keys share a slot wait for each other: the second one's
//! requests wait until the first one's page is in, then take the lock
//! themselves (one render later, but never a render too many). A lock
//! never outlives its holder: whoever finds the holder gone takes over.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::SharedState;

const _: () = assert!(std::mem::size_of::<LockSlot>() == 64);

/// Slots in the table.
pub const LOCK_SLOTS: usize = 1024;
/// Worker pids a slot remembers as waiting.
const WAITERS: usize = 12;
const PID_BITS: u32 = 22;
const START_BITS: u32 = 18;
const HOLDER_BITS: u32 = PID_BITS + START_BITS;

/// One lock.
#[repr(C)]
pub struct LockSlot {
    /// `key bits << 40 | start bits << 22 | pid`, 0 when free.
    word: AtomicU64,
    waiters: [AtomicU32; WAITERS],
    /// A page of this slot whose responses cannot be stored, until when:
    /// `key >> 32 << 32 | until` (seconds since the epoch), 0 for none.
    /// Zeros in a state file of an older version: none.
    unstorable: AtomicU64,
}

/// How long a page whose response could not be stored is regenerated
/// without the lock (Varnish's hit-for-miss): its requests go to the
/// application at once, not one after another.
pub const UNSTORABLE_SECS: u32 = 60;

/// A process that can hold locks: its pid and its start time (clock ticks
/// since boot, `/proc/<pid>/stat`), which together never repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub start: u64,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    /// True while the process runs (and is the same process).
    pub fn alive(&self) -> bool {
        process_start(self.pid).is_some_and(|start| low(start) == low(self.start))
    }

    fn bits(&self) -> u64 {
        low(self.start) << PID_BITS | u64::from(self.pid) & ((1 << PID_BITS) - 1)
    }

    fn from_bits(word: u64) -> Holder {
        Holder {
            pid: (word & ((1 << PID_BITS) - 1)) as u32,
            start: (word >> PID_BITS) & ((1 << START_BITS) - 1),
        }
    }
}

fn low(start: u64) -> u64 {
    start & ((1 << START_BITS) - 1)
}

/// A process's start time from `/proc/<pid>/stat`, or `None` when it does
/// not run.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // after the command name in parentheses: state is field 3, start 22
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// What trying a page's lock gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Ours now: release it with [`SharedState::unlock`].
    Acquired,
    /// Another process (or request of this one) regenerates the page, or a
    /// page that shares its slot.
    Held(Holding),
    /// No lock can be taken (a read-only tree, where nothing is stored).
    Unavailable,
}

/// A lock held by someone else, as it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub holder: Holder,
    word: u64,
}

/// The slot of a page key: waiters of every page that shares it are told
/// when it is freed.
pub fn lock_slot(key: u64) -> usize {
    (key % LOCK_SLOTS as u64) as usize
}

impl SharedState {
    fn slot(&self, key: u64) -> &LockSlot {
        &self.data().locks[lock_slot(key)]
    }

    /// Tries to take the lock of the page with `key` for `me`; takes over a
    /// lock whose holder is gone.
    pub fn lock(&self, key: u64, me: Holder) -> Lock {
        let slot = self.slot(key);
        let mine = word(key, me);
        let mut current = slot.word.load(Ordering::SeqCst);
        loop {
            if current != 0 {
                let holder = Holder::from_bits(current);
                if holder.alive() {
                    return Lock::Held(Holding {
                        holder,
                        word: current,
                    });
                }
            }
            if !self.writable() {
                return Lock::Unavailable;
            }
            // free, or its holder is gone: take it
            match slot
                .word
                .compare_exchange(current, mine, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Lock::Acquired,
                Err(now) => current = now,
            }
        }
    }

    /// Frees the lock `me` holds on `key`; returns the pids of the workers
    /// that wait for it, to be told.
    pub fn unlock(&self, key: u64, me: Holder) -> Vec<u32> {
        let slot = self.slot(key);
        let mine = word(key, me);
        if slot
            .word
            .compare_exchange(mine, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // taken over meanwhile (this process was thought gone): the new
            // holder tells the waiters
            return Vec::new();
        }
        slot.waiters
            .iter()
            .map(|w| w.swap(0, Ordering::SeqCst))
            .filter(|&pid| pid != 0)
            .collect()
    }

    /// Records that worker `pid` waits for the lock on `key`. False when the
    /// slot remembers too many workers already (the caller then checks
    /// again later), or when the lock is no longer as `holding` saw it (the
    /// caller must look again: it may have been freed before the record).
    pub fn wait_for(&self, key: u64, holding: Holding, pid: u32) -> bool {
        let slot = self.slot(key);
        let recorded = slot.waiters.iter().any(|w| {
            let current = w.load(Ordering::SeqCst);
            current == pid
                || (current == 0
                    && w.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok())
        });
        // after the record: a holder that freed the lock before it saw no
        // waiter, so look at the lock again
        recorded && slot.word.load(Ordering::SeqCst) == holding.word
    }

    /// Remembers, until `now_secs` + [`UNSTORABLE_SECS`], that the page
    /// with `key` answered with a response that cannot be stored.
    pub fn note_unstorable(&self, key: u64, now_secs: u32) {
        let until = now_secs.saturating_add(UNSTORABLE_SECS).max(1);
        let record = key >> 32 << 32 | u64::from(until);
        self.slot(key).unstorable.store(record, Ordering::SeqCst);
    }

    /// True while the page with `key` is remembered as unstorable.
    pub fn is_unstorable(&self, key: u64, now_secs: u32) -> bool {
        let record = self.slot(key).unstorable.load(Ordering::SeqCst);
        record >> 32 == key >> 32 && now_secs < record as u32
    }

    /// Forgets that the page with `key` was unstorable (it was stored).
    pub fn clear_unstorable(&self, key: u64) {
        let slot = self.slot(key);
        let record = slot.unstorable.load(Ordering::SeqCst);
        if record != 0 && record >> 32 == key >> 32 {
            // another page's newer record stays
            let _ = slot
                .unstorable
                .compare_exchange(record, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// A slot's word for `key` held by `holder`: never 0 (pids are not).
fn word(key: u64, holder: Holder) -> u64 {
    (key >> HOLDER_BITS << HOLDER_BITS) | holder.bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::Scratch;
    use crate::tree::Tree;

    #[test]
    fn one_holder_at_a_time_and_waiters_are_told() {
        let scratch = Scratch::new("locks");
        let tree = Tree::open(&scratch.0).unwrap();
        let state = tree.state();
        let me = Holder::me();
        let key = 0xdead_beef_0000_1234;
        assert_eq!(state.lock(key, me), Lock::Acquired);
        // another process of the same machine sees it held by us
        let other = Tree::open(&scratch.0).unwrap();
        let Lock::Held(holding) = other.state().lock(key, me) else {
            panic!("not held");
        };
        assert_eq!(holding.holder.pid, me.pid);
        assert!(other.state().wait_for(key, holding, 4242));
        assert_eq!(state.unlock(key, me), vec![4242]);
        assert_eq!(state.unlock(key, me), Vec::<u32>::new(), "freed once");
        assert_eq!(other.state().lock(key, me), Lock::Acquired);
        state.unlock(key, me);
    }

    #[test]
    fn another_page_in_the_same_slot_waits_for_it() {
        let scratch = Scratch::new("locks-shared");
        let tree = Tree::open(&scratch.0).unwrap();
        let me = Holder::me();
        let a = 7 << 40;
        let b = a + (1 << HOLDER_BITS);
        assert_eq!(lock_slot(a), lock_slot(b));
        assert_eq!(tree.state().lock(a, me), Lock::Acquired);
        let Lock::Held(holding) = tree.state().lock(b, me) else {
            panic!("b took a's slot");
        };
        assert!(tree.state().wait_for(b, holding, 99));
        assert_eq!(tree.state().unlock(a, me), vec![99]);
        assert_eq!(tree.state().lock(b, me), Lock::Acquired);
    }

    #[test]
    fn a_lock_of_a_process_that_is_gone_is_taken_over() {
        let scratch = Scratch::new("locks-dead");
        let tree = Tree::open(&scratch.0).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Holder { pid, start: 1 };
        assert!(!gone.alive());
        let key = 99 << 30;
        assert_eq!(tree.state().lock(key, gone), Lock::Acquired);
        assert_eq!(tree.state().lock(key, Holder::me()), Lock::Acquired);
        // a reused pid with another start time is not the holder either
        let impostor = Holder {
            pid: std::process::id(),
            start: 12345,
        };
        assert!(!impostor.alive());
        assert!(Holder::me().alive());
    }

    #[test]
    fn an_unstorable_page_is_remembered_for_a_while_and_until_stored() {
        let scratch = Scratch::new("locks-unstorable");
        let tree = Tree::open(&scratch.0).unwrap();
        let other = Tree::open(&scratch.0).unwrap();
        let key = 0x1234_5678_0000_0042;
        let now = 1_000_000;
        assert!(!tree.state().is_unstorable(key, now));
        tree.state().note_unstorable(key, now);
        // seen by every process of the tree, for UNSTORABLE_SECS
        assert!(other.state().is_unstorable(key, now));
        assert!(other.state().is_unstorable(key, now + UNSTORABLE_SECS - 1));
        assert!(!other.state().is_unstorable(key, now + UNSTORABLE_SECS));
        // another page of the same slot is not
        let neighbour = key + (LOCK_SLOTS as u64) * (1 << 32);
        assert_eq!(lock_slot(neighbour), lock_slot(key));
        assert!(!tree.state().is_unstorable(neighbour, now));
        tree.state().clear_unstorable(neighbour);
        assert!(
            tree.state().is_unstorable(key, now),
            "cleared by another page"
        );
        other.state().clear_unstorable(key);
        assert!(!tree.state().is_unstorable(key, now));
    }

    #[test]
    fn a_waiter_recorded_after_the_release_looks_again() {
        let scratch = Scratch::new("locks-late");
        let tree = Tree::open(&scratch.0).unwrap();
        let me = Holder::me();
        let key = 5 << 40;
        assert_eq!(tree.state().lock(key, me), Lock::Acquired);
        let other = Tree::open(&scratch.0).unwrap();
        let Lock::Held(holding) = other.state().lock(key, me) else {
            panic!("not held");
        };
        tree.state().unlock(key, me);
        assert!(!tree.state().wait_for(key, holding, 77), "the lock is free");
    }
}
