//! The tree's shared state: a small file under the reserved directory that
//! every process serving the tree maps, so that what a purge changes is seen
//! by every worker (of this nginx or the next) at once, without a system
//! call on the HIT path.
//!
//! It holds the tree's identity (random, so a re-created tree is never taken
//! for the old one, as inode numbers can be), the epoch of the last
//! whole-tree purge, the generation of the purge journal, and a flag that
//! retires a mapping whose file is no longer the tree's.
//!
//! The file is created whole (its blocks allocated and written) under a
//! temporary name and linked into place, so no process ever maps a partial
//! file, and a store through the mapping never needs a block: a full disk
//! gives a clean error when the file is created, never a `SIGBUS` later.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{
    fallocate, fstat, linkat, openat, renameat, unlinkat, AtFlags, FallocateFlags, Mode, OFlags,
};
use rustix::io::{pwrite, Errno};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

use super::locks::{LockSlot, LOCK_SLOTS};
use super::marks::PurgeMarks;
use super::{now, unique_name, FileTime};

/// The file's name in the reserved directory.
pub const STATE_FILE: &str = "state";
/// The file's size: the header page, the lock table and the purge marks.
pub const STATE_SIZE: usize = std::mem::size_of::<StateData>();
const MAGIC: [u8; 16] = *b"static_gen tree2";
const HEADER_SIZE: usize = 4096;

/// The first page of the file.
#[repr(C)]
pub(super) struct Header {
    magic: [u8; 16],
    tree_id: AtomicU64,
    /// Nanoseconds since 1970 of the last whole-tree purge.
    epoch: AtomicU64,
    /// Bumped whenever the journal is emptied.
    journal_generation: AtomicU64,
    /// Non-zero once the file is no longer the tree's.
    retired: AtomicU64,
    /// The last whole-tree purge that allowed no stale serving.
    hard_epoch: AtomicU64,
    /// The longest `static_gen_stale` of the locations serving the tree, in
    /// milliseconds: how long purged pages must stay on disk.
    max_stale_ms: AtomicU64,
    /// Nanoseconds since 1970 of the last purge by tag (0 in files of
    /// versions before tags: none).
    tag_purge: AtomicU64,
    _room: [u8; HEADER_SIZE - 16 - 7 * 8],
}

/// The layout of the mapped file.
#[repr(C)]
pub(super) struct StateData {
    pub(super) header: Header,
    pub(super) locks: [LockSlot; LOCK_SLOTS],
    pub(super) marks: PurgeMarks,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(STATE_SIZE % 4096 == 0);

/// A tree's state file, mapped.
#[derive(Debug)]
pub struct SharedState {
    data: *mut StateData,
    writable: bool,
    dev: u64,
    ino: u64,
}

const NANOS: u64 = 1_000_000_000;

impl SharedState {
    /// Maps the state file in `reserved`, creating it when missing or not a
    /// state file. A new file starts with a new identity and an epoch of
    /// now: pages already in the tree count as purged.
    pub fn open(reserved: BorrowedFd) -> io::Result<SharedState> {
        match SharedState::map_existing(reserved) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create(reserved, false)?;
                SharedState::map_existing(reserved)
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                create(reserved, true)?;
                SharedState::map_existing(reserved)
            }
            other => other,
        }
    }

    /// Maps the state file in `reserved` if it exists; read-only where the
    /// tree cannot be written (a read-only or immutable file system).
    pub fn map_existing(reserved: BorrowedFd) -> io::Result<SharedState> {
        let open = |flags| {
            openat(
                reserved,
                STATE_FILE,
                flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            )
        };
        let (file, writable) = match open(OFlags::RDWR) {
            Ok(file) => (file, true),
            Err(Errno::ROFS | Errno::ACCESS | Errno::PERM) => (open(OFlags::RDONLY)?, false),
            Err(e) => return Err(e.into()),
        };
        let stat = fstat(&file)?;
        if (stat.st_size as u64) < STATE_SIZE as u64 {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
        let state = SharedState::map(&file, writable, stat.st_dev, stat.st_ino)?;
        if state.header().magic != MAGIC {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
        Ok(state)
    }

    fn map(file: &OwnedFd, writable: bool, dev: u64, ino: u64) -> io::Result<SharedState> {
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a new shared mapping of the file's first page, which
        // exists (checked by the caller) and whose blocks were allocated and
        // written when it was created; the descriptor may close once mapped.
        let data = unsafe {
            mmap(
                std::ptr::null_mut(),
                STATE_SIZE,
                prot,
                MapFlags::SHARED,
                file.as_fd(),
                0,
            )?
        };
        Ok(SharedState {
            data: data.cast(),
            writable,
            dev,
            ino,
        })
    }

    pub(super) fn data(&self) -> &StateData {
        // SAFETY: a live, page-aligned mapping of STATE_SIZE bytes; every
        // field that changes is atomic.
        unsafe { &*self.data }
    }

    fn header(&self) -> &Header {
        &self.data().header
    }

    /// The file's (device, inode), to tell whether the path still names it.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The tree's identity, fixed when the file was created.
    pub fn tree_id(&self) -> u64 {
        self.header().tree_id.load(Ordering::Relaxed)
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The last whole-tree purge, if any.
    pub fn epoch(&self) -> Option<FileTime> {
        let nanos = self.header().epoch.load(Ordering::Acquire);
        (nanos != 0).then(|| FileTime::from_nanos(nanos))
    }

    /// Records a whole-tree purge now. The epoch only ever grows, even if
    /// the clock steps back, so it names one purge. A hard purge also
    /// forbids serving any page from before it stale.
    pub fn advance_epoch(&self, hard: bool) -> io::Result<FileTime> {
        self.check_writable()?;
        let epoch = advance(&self.header().epoch);
        if hard {
            self.header().hard_epoch.fetch_max(epoch, Ordering::AcqRel);
        }
        Ok(FileTime::from_nanos(epoch))
    }

    /// The last whole-tree purge that forbade stale serving, if any.
    pub fn hard_epoch(&self) -> Option<FileTime> {
        let nanos = self.header().hard_epoch.load(Ordering::Acquire);
        (nanos != 0).then(|| FileTime::from_nanos(nanos))
    }

    /// Notes that a location serves this tree stale for up to `ms`
    /// milliseconds after a purge: purged pages stay on disk that long.
    pub fn note_stale_ms(&self, ms: u64) {
        if self.writable {
            self.header().max_stale_ms.fetch_max(ms, Ordering::AcqRel);
        }
    }

    /// How long purged pages must stay on disk, in milliseconds.
    pub fn max_stale_ms(&self) -> u64 {
        self.header().max_stale_ms.load(Ordering::Acquire)
    }

    /// Notes a purge by tag at `at`.
    pub(super) fn note_tag_purge(&self, at: FileTime) {
        let at = at.as_nanos();
        self.header().tag_purge.fetch_max(at, Ordering::AcqRel);
    }

    /// The last purge by tag, if any: pages written since are not covered
    /// by any tag purge.
    pub fn last_tag_purge(&self) -> Option<FileTime> {
        let nanos = self.header().tag_purge.load(Ordering::Acquire);
        (nanos != 0).then(|| FileTime::from_nanos(nanos))
    }

    pub fn journal_generation(&self) -> u64 {
        self.header().journal_generation.load(Ordering::Acquire)
    }

    /// Marks every note of the journal taken before now as outdated.
    pub fn bump_journal_generation(&self) -> io::Result<()> {
        self.check_writable()?;
        self.header()
            .journal_generation
            .fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// True once some process found that this file is no longer the tree's.
    pub fn retired(&self) -> bool {
        self.header().retired.load(Ordering::Acquire) != 0
    }

    /// Tells every process that maps this file to look for the tree's new
    /// one.
    pub fn retire(&self) {
        if self.writable {
            self.header().retired.store(1, Ordering::Release);
        }
    }

    /// Fails where this process may only read the state.
    pub fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::ReadOnlyFilesystem))
        }
    }
}

/// Moves a time in nanoseconds to now, or just after its value if the
/// clock is behind it; returns the new value.
pub(super) fn advance(time: &AtomicU64) -> u64 {
    let mut old = time.load(Ordering::Acquire);
    loop {
        let new = now().as_nanos().max(old + 1);
        match time.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return new,
            Err(current) => old = current,
        }
    }
}

impl Drop for SharedState {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        let _ = unsafe { munmap(self.data.cast(), STATE_SIZE) };
    }
}

/// Writes a new state file under a temporary name, then links it into
/// place (or, `replace`, renames it over a file that is not a state file).
/// Another process creating it at the same time wins by linking first.
fn create(reserved: BorrowedFd, replace: bool) -> io::Result<()> {
    let temp = format!("{STATE_FILE}.{}", unique_name());
    let file = openat(
        reserved,
        temp.as_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from(0o644),
    )?;
    let written = write_initial(&file);
    let installed = written.and_then(|()| {
        let linked = if replace {
            renameat(reserved, temp.as_str(), reserved, STATE_FILE)
        } else {
            linkat(
                reserved,
                temp.as_str(),
                reserved,
                STATE_FILE,
                AtFlags::empty(),
            )
        };
        match linked {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    });
    if !(replace && installed.is_ok()) {
        let _ = unlinkat(reserved, temp.as_str(), AtFlags::empty());
    }
    installed
}

/// Allocates and writes the whole file: its blocks then exist, so stores
/// through a mapping cannot fault on a full disk.
fn write_initial(file: &OwnedFd) -> io::Result<()> {
    match fallocate(file, FallocateFlags::empty(), 0, STATE_SIZE as u64) {
        Ok(()) | Err(Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    // locks free, no purge marks: zeros
    let mut page = vec![0u8; STATE_SIZE];
    page[..16].copy_from_slice(&MAGIC);
    let mut id = [0u8; 8];
    rustix::rand::getrandom(&mut id, rustix::rand::GetRandomFlags::empty())?;
    // never 0, so a note taken without a tree never matches one
    let id = u64::from_ne_bytes(id) | 1;
    page[16..24].copy_from_slice(&id.to_ne_bytes());
    page[24..32].copy_from_slice(&now().as_nanos().to_ne_bytes());
    page[32..40].copy_from_slice(&1u64.to_ne_bytes());
    let mut done = 0;
    while done < page.len() {
        done += pwrite(file, &page[done..], done as u64)?;
    }
    Ok(())
}

impl FileTime {
    pub fn as_nanos(self) -> u64 {
        (self.sec as u64) * NANOS + self.nsec as u64
    }

    pub fn from_nanos(nanos: u64) -> FileTime {
        FileTime {
            sec: (nanos / NANOS) as i64,
            nsec: (nanos % NANOS) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::Scratch;

    fn reserved(scratch: &Scratch) -> OwnedFd {
        rustix::fs::open(
            &scratch.0,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn a_purge_is_seen_through_every_mapping() {
        let scratch = Scratch::new("state");
        let dir = reserved(&scratch);
        let worker_a = SharedState::open(dir.as_fd()).unwrap();
        let worker_b = SharedState::open(dir.as_fd()).unwrap();
        assert_eq!(worker_a.tree_id(), worker_b.tree_id());
        let at = worker_a.advance_epoch(false).unwrap();
        assert_eq!(worker_b.epoch(), Some(at));
        drop(worker_b);
        let again = SharedState::open(dir.as_fd()).unwrap();
        assert_eq!(again.epoch(), Some(at), "kept in the file");
    }

    #[test]
    fn epochs_only_grow() {
        let scratch = Scratch::new("state-grow");
        let state = SharedState::open(reserved(&scratch).as_fd()).unwrap();
        let far = now().as_nanos() + 3600 * NANOS;
        state.header().epoch.store(far, Ordering::Release);
        let next = state.advance_epoch(false).unwrap();
        assert_eq!(
            next.as_nanos(),
            far + 1,
            "the clock is behind the last epoch"
        );
    }

    #[test]
    fn a_new_file_is_a_new_tree_whose_old_pages_are_stale() {
        let scratch = Scratch::new("state-new");
        let dir = reserved(&scratch);
        let before = now();
        let first = SharedState::open(dir.as_fd()).unwrap();
        assert!(first.epoch().unwrap() >= before);
        std::fs::remove_file(scratch.0.join(STATE_FILE)).unwrap();
        let second = SharedState::open(dir.as_fd()).unwrap();
        assert_ne!(first.tree_id(), second.tree_id());
        assert_ne!(first.identity(), second.identity());
    }

    #[test]
    fn a_file_that_is_not_a_state_file_is_replaced() {
        let scratch = Scratch::new("state-bad");
        std::fs::write(scratch.0.join(STATE_FILE), b"garbage").unwrap();
        let state = SharedState::open(reserved(&scratch).as_fd()).unwrap();
        assert!(state.epoch().is_some());
        let names: Vec<_> = std::fs::read_dir(&scratch.0).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn retiring_is_seen_by_every_mapping() {
        let scratch = Scratch::new("state-retire");
        let dir = reserved(&scratch);
        let a = SharedState::open(dir.as_fd()).unwrap();
        let b = SharedState::open(dir.as_fd()).unwrap();
        assert!(!b.retired());
        a.retire();
        assert!(b.retired());
    }
}
