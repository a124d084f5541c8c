//! Purge marks in the shared state: when pages were last purged, by key,
//! so that a HIT knows without a system call whether its page was purged
//! since it was written, and whether it may still be served stale.
//!
//! A page's keys are its path's and every directory's above it (a prefix
//! purge of `/articles/` marks the directory `articles/`, one store
//! whatever the size of the subtree). Each key falls into one of
//! [`BUCKETS`] buckets that keep the time of the last purge that fell there;
//! two keys sharing a bucket make a page look purged when the other was
//! (one needless regeneration, never a stale page served as fresh). Soft
//! and hard purges have their own buckets: a page hard-purged is never
//! served stale, whatever soft purge came after.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{FileTime, SharedState};

/// Buckets for soft purges, and as many for hard ones.
pub const BUCKETS: usize = 16384;

#[repr(C)]
pub struct PurgeMarks {
    soft: [AtomicU64; BUCKETS],
    hard: [AtomicU64; BUCKETS],
}

/// 64-bit FNV-1a, byte by byte, so that a path's prefixes hash as it goes.
struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn push(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(Self::PRIME);
    }
}

/// The key of a page file or directory: `rel` as in the tree (`a/b.html`;
/// a directory with its trailing `/`: `a/b/`).
pub fn path_key(rel: &[u8]) -> u64 {
    let mut hash = Fnv(Fnv::OFFSET);
    rel.iter().for_each(|&b| hash.push(b));
    hash.0
}

/// Why a page is not fresh: since when it is stale, and whether it may be
/// served stale at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// The last purge that covered the page.
    pub since: FileTime,
    /// A hard purge covered it: never serve it stale.
    pub hard: bool,
}

impl SharedState {
    fn marks(&self) -> &PurgeMarks {
        &self.data().marks
    }

    /// Marks `key` (from [`path_key`]) purged now.
    pub fn mark_purged(&self, key: u64, hard: bool) -> std::io::Result<FileTime> {
        self.check_writable()?;
        let marks = self.marks();
        let bucket = (key % BUCKETS as u64) as usize;
        let at = super::state::advance(&marks.soft[bucket]);
        if hard {
            marks.hard[bucket].fetch_max(at, Ordering::AcqRel);
        }
        Ok(FileTime::from_nanos(at))
    }

    /// Whether the page file `rel` written at `written` was purged since,
    /// and how: by a whole-tree purge or a mark on its keys (hashed as it
    /// goes: a HIT allocates nothing).
    pub fn staleness(&self, rel: &[u8], written: FileTime) -> Option<Staleness> {
        let written = written.as_nanos();
        let marks = self.marks();
        let mut since = 0;
        let mut hard = false;
        let mut note = |soft: u64, hard_at: u64| {
            if soft >= written {
                since = since.max(soft);
            }
            hard |= hard_at != 0 && hard_at >= written;
        };
        note(
            self.epoch().map_or(0, FileTime::as_nanos),
            self.hard_epoch().map_or(0, FileTime::as_nanos),
        );
        let mut note_key = |key: u64| {
            let bucket = (key % BUCKETS as u64) as usize;
            note(
                marks.soft[bucket].load(Ordering::Acquire),
                marks.hard[bucket].load(Ordering::Acquire),
            );
        };
        let mut hash = Fnv(Fnv::OFFSET);
        for &b in rel {
            hash.push(b);
            if b == b'/' {
                note_key(hash.0);
            }
        }
        note_key(hash.0);
        (since != 0).then(|| Staleness {
            since: FileTime::from_nanos(since),
            hard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::Scratch;
    use crate::tree::{now, Tree};

    #[test]
    fn purges_of_a_page_or_a_directory_above_it() {
        let scratch = Scratch::new("marks");
        let tree = Tree::open(&scratch.0).unwrap();
        let state = tree.state();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let written = now();
        let page = b"articles/hello/index.html";
        let other = b"about.html";
        assert_eq!(state.staleness(page, written), None);
        let at = state.mark_purged(path_key(b"articles/"), false).unwrap();
        let stale = state.staleness(page, written).unwrap();
        assert_eq!(
            stale,
            Staleness {
                since: at,
                hard: false
            }
        );
        assert_eq!(state.staleness(other, written), None);
        // a page written after the purge is fresh
        assert_eq!(state.staleness(page, now()), None);
        state.mark_purged(path_key(page), true).unwrap();
        assert!(state.staleness(page, written).unwrap().hard);
        // a later soft purge does not undo the hard one
        state.mark_purged(path_key(b"articles/"), false).unwrap();
        assert!(state.staleness(page, written).unwrap().hard);
        // the directory one level down is another key
        state
            .mark_purged(path_key(b"articles/hello/"), false)
            .unwrap();
        assert!(state.staleness(b"articles/hello/x.html", written).is_some());
        assert_eq!(state.staleness(b"articles/other.html", now()), None);
    }

    #[test]
    fn whole_tree_purges_soft_and_hard() {
        let scratch = Scratch::new("marks-whole");
        let tree = Tree::open(&scratch.0).unwrap();
        let state = tree.state();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let written = now();
        let soft = state.advance_epoch(false).unwrap();
        assert_eq!(
            state.staleness(b"a.html", written),
            Some(Staleness {
                since: soft,
                hard: false
            })
        );
        state.advance_epoch(true).unwrap();
        assert!(state.staleness(b"a.html", written).unwrap().hard);
    }
}
