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

use super::hash::Fnv;
use super::{FileTime, SharedState};

/// Buckets for soft purges, as many for hard ones, and for installs.
pub const BUCKETS: usize = 16384;

#[repr(C)]
pub struct PurgeMarks {
    soft: [AtomicU64; BUCKETS],
    hard: [AtomicU64; BUCKETS],
    /// Bumped whenever a page of the bucket is installed or replaced: a
    /// worker that keeps a page open knows without a system call that
    /// another file took its place.
    installs: [AtomicU64; BUCKETS],
}

/// The keys of a page: those of the directories above it, then, for an
/// argument page, that of the page of its path, then its own; on the stack
/// (a HIT allocates nothing).
#[derive(Debug, Clone, Copy)]
pub struct PageKeys {
    keys: [u64; crate::path::MAX_DEPTH + 2],
    len: usize,
}

impl PageKeys {
    /// The keys of the page file `rel` (at most `MAX_DEPTH` directories
    /// deep, as `page_file` maps them; deeper ones share the last keys).
    /// An argument page (`a/index.html?page=2`) has the key of its path's
    /// page (`a/index.html`) too, so purging that page covers it.
    pub fn of(rel: &[u8]) -> PageKeys {
        let mut keys = PageKeys {
            keys: [0; crate::path::MAX_DEPTH + 2],
            len: 0,
        };
        let mut hash = Fnv::new();
        let mut in_args = false;
        for &b in rel {
            if b == b'?' && !in_args {
                in_args = true;
                keys.push(hash.0);
            }
            hash.push(b);
            if b == b'/' && !in_args {
                keys.push(hash.0);
            }
        }
        keys.push(hash.0);
        keys
    }

    fn push(&mut self, key: u64) {
        let at = self.len.min(self.keys.len() - 1);
        self.keys[at] = key;
        self.len = (self.len + 1).min(self.keys.len());
    }

    /// The page's own key.
    pub fn page(&self) -> u64 {
        self.keys[self.len - 1]
    }

    fn all(&self) -> &[u64] {
        &self.keys[..self.len]
    }
}

fn bucket(key: u64) -> usize {
    (key % BUCKETS as u64) as usize
}

/// The key of a page file or directory: `rel` as in the tree (`a/b.html`;
/// a directory with its trailing `/`: `a/b/`).
pub fn path_key(rel: &[u8]) -> u64 {
    let mut hash = Fnv(Fnv::OFFSET);
    rel.iter().for_each(|&b| hash.push(b));
    hash.0
}

/// The key of a tag (`tags`): hashed as paths are, after a prefix no path
/// holds (a NUL), so a tag never shares a key with a path but by a hash
/// collision (one needless regeneration).
pub fn tag_key(tag: &[u8]) -> u64 {
    let mut hash = Fnv::new();
    b"\0tag\0".iter().chain(tag).for_each(|&b| hash.push(b));
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

    /// Marks the tag `key` (from [`tag_key`]) purged now, and notes when a
    /// tag was last purged (the sweep reads pages' tags only if one was
    /// since they were written).
    pub fn mark_tag_purged(&self, key: u64, hard: bool) -> std::io::Result<FileTime> {
        let at = self.mark_purged(key, hard)?;
        self.note_tag_purge(at);
        Ok(at)
    }

    /// Whether a page (`keys`, and `tags` its tags' keys) written at
    /// `written` was purged since, and how: by a whole-tree purge or a mark
    /// on one of its keys.
    pub fn staleness(&self, keys: &PageKeys, tags: &[u64], written: FileTime) -> Option<Staleness> {
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
        for &key in keys.all().iter().chain(tags) {
            let bucket = bucket(key);
            note(
                marks.soft[bucket].load(Ordering::Acquire),
                marks.hard[bucket].load(Ordering::Acquire),
            );
        }
        (since != 0).then(|| Staleness {
            since: FileTime::from_nanos(since),
            hard,
        })
    }

    /// The install generation of the page `key`'s bucket; read before
    /// opening the page, it tells later whether another file took its
    /// place.
    pub fn install_generation(&self, key: u64) -> u64 {
        self.marks().installs[bucket(key)].load(Ordering::Acquire)
    }

    /// Notes that the page `key` was installed or replaced (after the
    /// rename).
    pub fn note_install(&self, key: u64) {
        if self.writable() {
            self.marks().installs[bucket(key)].fetch_add(1, Ordering::AcqRel);
        }
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
        let page = &PageKeys::of(b"articles/hello/index.html");
        let other = &PageKeys::of(b"about.html");
        assert_eq!(state.staleness(page, &[], written), None);
        let at = state.mark_purged(path_key(b"articles/"), false).unwrap();
        let stale = state.staleness(page, &[], written).unwrap();
        assert_eq!(
            stale,
            Staleness {
                since: at,
                hard: false
            }
        );
        assert_eq!(state.staleness(other, &[], written), None);
        // a page written after the purge is fresh
        assert_eq!(state.staleness(page, &[], now()), None);
        state.mark_purged(page.page(), true).unwrap();
        assert!(state.staleness(page, &[], written).unwrap().hard);
        // a later soft purge does not undo the hard one
        state.mark_purged(path_key(b"articles/"), false).unwrap();
        assert!(state.staleness(page, &[], written).unwrap().hard);
        // the directory one level down is another key
        state
            .mark_purged(path_key(b"articles/hello/"), false)
            .unwrap();
        let below = PageKeys::of(b"articles/hello/x.html");
        assert!(state.staleness(&below, &[], written).is_some());
        assert_eq!(
            state.staleness(&PageKeys::of(b"articles/other.html"), &[], now()),
            None
        );
    }

    #[test]
    fn tag_purges_cover_the_pages_carrying_the_tag() {
        let scratch = Scratch::new("marks-tags");
        let tree = Tree::open(&scratch.0).unwrap();
        let state = tree.state();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let written = now();
        let page = &PageKeys::of(b"a.html");
        let tags = [tag_key(b"article-1"), tag_key(b"home")];
        assert_eq!(state.last_tag_purge(), None);
        state.mark_tag_purged(tag_key(b"article-2"), false).unwrap();
        assert_eq!(state.staleness(page, &tags, written), None);
        let at = state.mark_tag_purged(tag_key(b"home"), true).unwrap();
        assert_eq!(
            state.staleness(page, &tags, written),
            Some(Staleness {
                since: at,
                hard: true
            })
        );
        assert_eq!(state.staleness(page, &[], written), None, "untagged");
        assert_eq!(state.last_tag_purge(), Some(at));
        // a tag that spells a path is another key
        assert_ne!(tag_key(b"a.html"), path_key(b"a.html"));
    }

    #[test]
    fn keys_of_a_page_and_its_directories() {
        let keys = PageKeys::of(b"articles/hello/index.html");
        assert_eq!(
            keys.all(),
            [
                path_key(b"articles/"),
                path_key(b"articles/hello/"),
                path_key(b"articles/hello/index.html")
            ]
        );
        assert_eq!(keys.page(), path_key(b"articles/hello/index.html"));
        assert_eq!(PageKeys::of(b"a.html").all(), [path_key(b"a.html")]);
    }

    #[test]
    fn an_argument_page_has_the_key_of_its_path_page() {
        let keys = PageKeys::of(b"articles/index.html?page=2");
        assert_eq!(
            keys.all(),
            [
                path_key(b"articles/"),
                path_key(b"articles/index.html"),
                path_key(b"articles/index.html?page=2")
            ]
        );
        // the deepest pages keep their path page's key too
        let deep = "d/".repeat(crate::path::MAX_DEPTH - 1) + "index.html";
        let keys = PageKeys::of(format!("{deep}?a=1").as_bytes());
        let all = keys.all();
        assert_eq!(all[all.len() - 2], path_key(deep.as_bytes()));
    }

    #[test]
    fn installs_are_counted_by_bucket() {
        let scratch = Scratch::new("marks-installs");
        let tree = Tree::open(&scratch.0).unwrap();
        let key = path_key(b"a.html");
        let before = tree.state().install_generation(key);
        tree.state().note_install(key);
        assert_ne!(tree.state().install_generation(key), before);
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
            state.staleness(&PageKeys::of(b"a.html"), &[], written),
            Some(Staleness {
                since: soft,
                hard: false
            })
        );
        state.advance_epoch(true).unwrap();
        assert!(
            state
                .staleness(&PageKeys::of(b"a.html"), &[], written)
                .unwrap()
                .hard
        );
    }
}
