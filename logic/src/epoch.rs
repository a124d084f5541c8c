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

/// The clock file times are taken from: the kernel's coarse clock, up to a
/// tick behind [`now`]. A file written after this returned has a time no
/// earlier than it.
pub fn coarse_now() -> FileTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec passed to it.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    FileTime {
        sec: ts.tv_sec,
        nsec: ts.tv_nsec,
    }
}

/// The time just after `time`.
pub fn just_after(time: FileTime) -> FileTime {
    if time.nsec + 1 < NANOS {
        FileTime {
            sec: time.sec,
            nsec: time.nsec + 1,
        }
    } else {
        FileTime {
            sec: time.sec + 1,
            nsec: 0,
        }
    }
}

/// The current time, precise: a purge's epoch.
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
    fn file_times_trail_the_precise_clock() {
        let before = coarse_now();
        let root = Scratch::new("epoch-coarse");
        let page = root.0.join("page.html");
        std::fs::write(&page, b"new").unwrap();
        let written = FileTime::of(&std::fs::metadata(&page).unwrap());
        assert!(before <= written, "{before:?} > {written:?}");
        assert!(coarse_now() <= now());
    }

    #[test]
    fn just_after_carries_into_seconds() {
        let last = FileTime {
            sec: 7,
            nsec: NANOS - 1,
        };
        assert_eq!(just_after(last), FileTime { sec: 8, nsec: 0 });
        assert_eq!(
            just_after(FileTime { sec: 7, nsec: 5 }),
            FileTime { sec: 7, nsec: 6 }
        );
    }
}
