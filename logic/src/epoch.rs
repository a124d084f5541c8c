//! The epoch of a tree: when its last whole-tree purge happened. Pages last
//! written no later than the epoch are stale and never served.
//!
//! Every lookup needs it, so it lives in an 8-byte file that each process
//! maps: a purge stores the new epoch into the shared page, and every worker
//! (of this nginx or the next) sees it at once without a system call.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::journal::FileTime;
use crate::store::{open_reserved_file, StoreError};

const EPOCH: &str = "epoch";
const NANOS: i64 = 1_000_000_000;

/// A tree's epoch file, mapped.
#[derive(Debug)]
pub struct SharedEpoch {
    value: *mut AtomicU64,
}

impl SharedEpoch {
    /// Maps the epoch file of `root`, creating it (no purge yet) if needed.
    pub fn open(root: &Path) -> Result<SharedEpoch, StoreError> {
        let (file, path) = open_reserved_file(root, EPOCH)?;
        let io_error = |op, e| StoreError::Io {
            op,
            path: path.clone(),
            source: e,
        };
        let len = std::mem::size_of::<u64>();
        // growing to 8 bytes is idempotent: a value already there stays
        if file.metadata().map_err(|e| io_error("stat", e))?.len() < len as u64 {
            file.set_len(len as u64)
                .map_err(|e| io_error("truncate", e))?;
        }
        // SAFETY: a shared mapping of the file's first 8 bytes, which exist;
        // the descriptor may be closed once mapped.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io_error("mmap", io::Error::last_os_error()));
        }
        Ok(SharedEpoch { value: map.cast() })
    }

    /// The last whole-tree purge, if any.
    pub fn load(&self) -> Option<FileTime> {
        // SAFETY: a live, page-aligned mapping of 8 bytes.
        let nanos = unsafe { (*self.value).load(Ordering::Acquire) } as i64;
        (nanos != 0).then_some(FileTime {
            sec: nanos / NANOS,
            nsec: nanos % NANOS,
        })
    }

    /// Records a whole-tree purge at `time`.
    pub fn store(&self, time: FileTime) {
        let nanos = (time.sec * NANOS + time.nsec) as u64;
        // SAFETY: as in `load`.
        unsafe { (*self.value).store(nanos, Ordering::Release) }
    }
}

impl Drop for SharedEpoch {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once.
        unsafe { libc::munmap(self.value.cast(), std::mem::size_of::<u64>()) };
    }
}

/// Returns once file times (the kernel's coarse clock, up to a tick behind
/// the precise one) have passed `epoch`, so that every page written after a
/// purge returns is newer than its epoch and not taken for stale. Waits a
/// clock tick at most (bounded at 50 ms).
pub fn wait_until_file_times_pass(epoch: FileTime) {
    for _ in 0..50 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec passed to it.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        if (FileTime {
            sec: ts.tv_sec,
            nsec: ts.tv_nsec,
        }) > epoch
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The current time, on the clock file times are taken from.
pub fn now() -> FileTime {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    FileTime {
        sec: since.as_secs() as i64,
        nsec: since.subsec_nanos() as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::Scratch;

    #[test]
    fn a_purge_is_seen_through_every_mapping() {
        let root = Scratch::new("epoch");
        let worker_a = SharedEpoch::open(&root.0).unwrap();
        let worker_b = SharedEpoch::open(&root.0).unwrap();
        assert_eq!(worker_a.load(), None);
        let at = now();
        worker_a.store(at);
        assert_eq!(worker_b.load(), Some(at));
        drop(worker_b);
        assert_eq!(
            SharedEpoch::open(&root.0).unwrap().load(),
            Some(at),
            "kept in the file"
        );
    }

    #[test]
    fn a_page_written_right_after_a_purge_is_not_stale() {
        let root = Scratch::new("epoch-after");
        let at = now();
        wait_until_file_times_pass(at);
        let page = root.0.join("page.html");
        std::fs::write(&page, b"new").unwrap();
        let written = FileTime::of(&std::fs::metadata(&page).unwrap());
        assert!(
            !crate::journal::is_stale(written, Some(at)),
            "{written:?} <= {at:?}"
        );
    }
}
