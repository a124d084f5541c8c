//! The generated tree on disk: a root directory of page files and, under
//! it, the module's reserved directory `.static_gen/` with the tree's shared
//! state, purge journal, lock, temporary files and purged entries waiting to
//! be deleted.
//!
//! Everything else reaches the tree through a [`Tree`]: descriptors of the
//! root and the reserved directory, and the mapped state. Paths below the
//! root are resolved from those descriptors without following symbolic
//! links, so nothing outside the root is ever read or written.

pub mod fs;
pub mod hash;
mod locks;
mod marks;
mod state;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{flock, mkdirat, openat, stat, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

pub use locks::{lock_slot, Holder, Holding, Lock};
pub use marks::{path_key, tag_key, PageKeys, Staleness};
pub use state::{SharedState, STATE_FILE, STATE_SIZE};

use crate::path::RESERVED_DIR;
use fs::{open_beneath, open_dir_beneath, split_parent};

/// Mode of the reserved directory, which every worker reads.
pub const RESERVED_MODE: u32 = 0o755;
/// Mode of the module's own files.
const FILE_MODE: u32 = 0o644;
const TEMP_DIR: &str = "tmp";
const TRASH_DIR: &str = "trash";
/// The tree lock's file in the reserved directory.
pub const LOCK_FILE: &str = "lock";

/// A failed step on the tree, with the path it concerned.
#[derive(Debug)]
pub enum TreeError {
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The body ended with another length than the response announced.
    Incomplete { expected: u64, written: u64 },
    /// The body is longer than `static_gen_max_size`.
    TooLarge { max: u64 },
}

impl TreeError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        TreeError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// The OS error number, for nginx's log line.
    pub fn errno(&self) -> i32 {
        match self {
            TreeError::Io { source, .. } => source.raw_os_error().unwrap_or(0),
            _ => 0,
        }
    }

    /// The failed operation, or `None` when the response itself was at fault.
    pub fn io_op(&self) -> Option<&'static str> {
        match self {
            TreeError::Io { op, .. } => Some(op),
            _ => None,
        }
    }
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TreeError::Io { op, path, .. } => write!(f, "{op} \"{}\" failed", path.display()),
            TreeError::Incomplete { expected, written } => {
                write!(f, "body has {written} bytes, {expected} announced")
            }
            TreeError::TooLarge { max } => write!(f, "body is larger than {max} bytes"),
        }
    }
}

impl std::error::Error for TreeError {}

/// A file's modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileTime {
    pub sec: i64,
    pub nsec: i64,
}

impl FileTime {
    pub fn of(meta: &std::fs::Metadata) -> FileTime {
        use std::os::unix::fs::MetadataExt;
        FileTime {
            sec: meta.mtime(),
            nsec: meta.mtime_nsec(),
        }
    }

    pub fn of_stat(stat: &rustix::fs::Stat) -> FileTime {
        FileTime {
            sec: stat.st_mtime,
            nsec: stat.st_mtime_nsec as i64,
        }
    }

    /// The time just after this one.
    pub fn just_after(self) -> FileTime {
        FileTime::from_nanos(self.as_nanos() + 1)
    }
}

/// True for a page written no later than the last whole-tree purge.
pub fn is_stale(page: FileTime, epoch: Option<FileTime>) -> bool {
    epoch.is_some_and(|epoch| page <= epoch)
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

/// The clock file times are taken from: the kernel's coarse clock, up to a
/// tick behind [`now`]. A file written after this returned has a time no
/// earlier than it.
pub fn coarse_now() -> FileTime {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    FileTime {
        sec: ts.tv_sec,
        nsec: ts.tv_nsec,
    }
}

/// A name no other writer in any process uses: pid, then a per-process
/// sequence.
pub fn unique_name() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{}.{n}", std::process::id())
}

/// An open generated tree.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    dir: OwnedFd,
    reserved: OwnedFd,
    state: SharedState,
}

impl Tree {
    /// Opens the tree under `root`, creating the root, its reserved
    /// directory and its state file where missing (symbolic links in the
    /// root's own path are followed: that is the configuration's choice).
    pub fn open(root: &Path) -> Result<Tree, TreeError> {
        let dir = match open_root(root) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                create_root(root)?;
                open_root(root)
            }
            other => other,
        }
        .map_err(|e| TreeError::io("open", root, e))?;
        let reserved_path = root.join(RESERVED_DIR);
        let reserved = open_dir_beneath(dir.as_fd(), RESERVED_DIR.as_bytes(), Some(RESERVED_MODE))
            .map_err(|e| TreeError::io("open", &reserved_path, e))?;
        let state = SharedState::open(reserved.as_fd())
            .map_err(|e| TreeError::io("open", reserved_path.join(STATE_FILE), e))?;
        Ok(Tree {
            root: root.to_owned(),
            dir,
            reserved,
            state,
        })
    }

    /// Opens the tree under `root` only if it exists, creating nothing but
    /// a state file that went missing.
    pub fn open_existing(root: &Path) -> Option<Tree> {
        let dir = open_root(root).ok()?;
        let reserved = open_beneath(
            dir.as_fd(),
            RESERVED_DIR.as_bytes(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            0,
        )
        .ok()?;
        let state = SharedState::open(reserved.as_fd()).ok()?;
        Some(Tree {
            root: root.to_owned(),
            dir,
            reserved,
            state,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// The root directory's descriptor.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The reserved directory's descriptor.
    pub fn reserved(&self) -> BorrowedFd<'_> {
        self.reserved.as_fd()
    }

    /// True when the tree's path still leads to the state file this handle
    /// mapped, and nobody retired it: one `stat`, for the paths that make
    /// system calls anyway (a MISS being installed, a purge).
    pub fn is_current(&self) -> bool {
        if self.state.retired() {
            return false;
        }
        let path = self.root.join(RESERVED_DIR).join(STATE_FILE);
        stat(&path).is_ok_and(|s| (s.st_dev, s.st_ino) == self.state.identity())
    }

    /// Opens a page file for reading (`rel` from [`crate::path::page_file`]).
    pub fn open_page(&self, rel: &[u8]) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK;
        open_beneath(self.dir(), rel, flags, 0).map(File::from)
    }

    /// Opens the directory a page file goes into, creating it with `mode`
    /// when given. The reserved directory is never a page's directory.
    pub fn page_dir(&self, rel_dir: &[u8], create: Option<u32>) -> io::Result<OwnedFd> {
        let first = rel_dir.split(|&b| b == b'/').next().unwrap_or_default();
        if first == RESERVED_DIR.as_bytes() {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        open_dir_beneath(self.dir(), rel_dir, create)
    }

    /// Opens the directory of a page file and gives its name.
    pub fn page_parent<'a>(
        &self,
        rel: &'a [u8],
        create: Option<u32>,
    ) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (dir, name) = split_parent(rel);
        Ok((self.page_dir(dir, create)?, OsStr::from_bytes(name)))
    }

    /// The directory of temporary files, created with `mode` if missing.
    pub fn temp_dir(&self, mode: u32) -> Result<OwnedFd, TreeError> {
        open_dir_beneath(self.reserved(), TEMP_DIR.as_bytes(), Some(mode))
            .map_err(|e| TreeError::io("open", self.reserved_path(TEMP_DIR), e))
    }

    /// The temporary directory if it exists.
    pub fn existing_temp_dir(&self) -> Option<OwnedFd> {
        open_dir_beneath(self.reserved(), TEMP_DIR.as_bytes(), None).ok()
    }

    /// A new, empty directory to move purged entries into, and its name.
    pub fn new_trash(&self) -> Result<(OwnedFd, OsString), TreeError> {
        let name = unique_name();
        let rel = format!("{TRASH_DIR}/{name}");
        let dir = open_dir_beneath(self.reserved(), rel.as_bytes(), Some(0o700))
            .map_err(|e| TreeError::io("mkdir", self.reserved_path(&rel), e))?;
        Ok((dir, name.into()))
    }

    /// The directory that holds trash directories, if any.
    pub fn trash_dir(&self) -> Option<OwnedFd> {
        open_dir_beneath(self.reserved(), TRASH_DIR.as_bytes(), None).ok()
    }

    /// Opens (creating it if needed) one of the module's files in the
    /// reserved directory.
    pub fn reserved_file(&self, name: &str, flags: OFlags) -> Result<File, TreeError> {
        let flags = flags | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        openat(self.reserved(), name, flags, Mode::from(FILE_MODE))
            .map(File::from)
            .map_err(|e| TreeError::io("open", self.reserved_path(name), e))
    }

    /// A path under the reserved directory, for messages.
    pub fn reserved_path(&self, rel: &str) -> PathBuf {
        self.root.join(RESERVED_DIR).join(rel)
    }

    /// A path under the root, for messages.
    pub fn display_path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    /// Creates the reserved directory's `name` subdirectory if missing.
    pub fn ensure_reserved_dir(&self, name: &str, mode: u32) -> Result<(), TreeError> {
        match mkdirat(self.reserved(), name, Mode::from(mode)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(TreeError::io("mkdir", self.reserved_path(name), e)),
        }
    }
}

/// Creates the root and its missing parents; a failure names the directory
/// that could not be created, not only the root.
fn create_root(root: &Path) -> Result<(), TreeError> {
    let Err(err) = std::fs::DirBuilder::new().recursive(true).create(root) else {
        return Ok(());
    };
    let first_missing = root
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty())
        .filter(|dir| std::fs::symlink_metadata(dir).is_err())
        .last()
        .unwrap_or(root);
    Err(TreeError::io("mkdir", first_missing, err))
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The tree lock: shared while installing a page, exclusive while purging.
/// Held for a few system calls at a time.
#[derive(Debug)]
pub struct TreeLock {
    /// Closing the descriptor releases the lock.
    _file: File,
}

impl TreeLock {
    pub fn shared(tree: &Tree) -> Result<TreeLock, TreeError> {
        TreeLock::take(tree, FlockOperation::LockShared)
    }

    pub fn exclusive(tree: &Tree) -> Result<TreeLock, TreeError> {
        TreeLock::take(tree, FlockOperation::LockExclusive)
    }

    fn take(tree: &Tree, operation: FlockOperation) -> Result<TreeLock, TreeError> {
        let file = tree.reserved_file(LOCK_FILE, OFlags::RDWR)?;
        flock(&file, operation)
            .map_err(|e| TreeError::io("flock", tree.reserved_path(LOCK_FILE), e))?;
        Ok(TreeLock { _file: file })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scratch directory removed at drop.
    pub struct Scratch(pub PathBuf);

    impl Scratch {
        pub fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sg-logic-{name}-{}", unique_name()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn opening_creates_root_reserved_dir_and_state() {
        let scratch = Scratch::new("tree-open");
        let root = scratch.0.join("a/b/root");
        let tree = Tree::open(&root).unwrap();
        assert!(root.join(RESERVED_DIR).join(STATE_FILE).is_file());
        assert!(tree.is_current());
        assert!(Tree::open_existing(&scratch.0.join("missing")).is_none());
    }

    #[test]
    fn a_tree_deleted_by_hand_is_noticed() {
        let scratch = Scratch::new("tree-gone");
        let root = scratch.0.join("root");
        let old = Tree::open(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(!old.is_current());
        let new = Tree::open(&root).unwrap();
        assert!(new.is_current());
        assert_ne!(old.state().tree_id(), new.state().tree_id());
        let reserved_gone = Tree::open(&root).unwrap();
        std::fs::remove_dir_all(root.join(RESERVED_DIR)).unwrap();
        assert!(!reserved_gone.is_current());
    }

    #[test]
    fn a_root_that_cannot_be_created_names_the_directory() {
        let scratch = Scratch::new("tree-mkdir");
        std::fs::write(scratch.0.join("file"), b"x").unwrap();
        let err = Tree::open(&scratch.0.join("file/a/b")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("file/a\""), "{message}");
    }

    #[test]
    fn the_reserved_dir_is_no_page_dir() {
        let scratch = Scratch::new("tree-reserved");
        let tree = Tree::open(&scratch.0).unwrap();
        for rel in [&b".static_gen"[..], b".static_gen/tmp"] {
            assert!(tree.page_dir(rel, Some(0o755)).is_err());
        }
        assert!(tree.page_dir(b"x/.static_gen", Some(0o755)).is_ok());
    }

    #[test]
    fn locks_exclude_each_other() {
        let scratch = Scratch::new("tree-lock");
        let tree = Tree::open(&scratch.0).unwrap();
        let shared_a = TreeLock::shared(&tree).unwrap();
        let shared_b = TreeLock::shared(&tree).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = scratch.0.clone();
        let purger = std::thread::spawn(move || {
            let tree = Tree::open(&path).unwrap();
            let _exclusive = TreeLock::exclusive(&tree).unwrap();
            tx.send(()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            rx.try_recv().is_err(),
            "exclusive lock taken while shared ones are held"
        );
        drop((shared_a, shared_b));
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        purger.join().unwrap();
    }

    #[test]
    fn file_times_trail_the_precise_clock() {
        let before = coarse_now();
        let scratch = Scratch::new("tree-coarse");
        let page = scratch.0.join("page.html");
        std::fs::write(&page, b"new").unwrap();
        let written = FileTime::of(&std::fs::metadata(&page).unwrap());
        assert!(before <= written, "{before:?} > {written:?}");
        assert!(coarse_now() <= now());
    }

    #[test]
    fn just_after_carries_into_seconds() {
        let last = FileTime {
            sec: 7,
            nsec: 999_999_999,
        };
        assert_eq!(last.just_after(), FileTime { sec: 8, nsec: 0 });
    }
}
