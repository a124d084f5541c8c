//! The purge journal makes purges race-free across workers: a page whose
//! upstream request started before a purge that covers it is never installed
//! after that purge.
//!
//! A MISS notes the journal's identity and length when it starts. A purge,
//! holding the tree lock exclusively, appends its scope to the journal (a
//! whole-tree purge replaces the journal instead, which any earlier note then
//! no longer matches) and moves the pages away. A page is installed while
//! holding the lock shared, and only if no journal entry written since its
//! note covers its URI. Everything lives in files under the root's reserved
//! directory, so it holds across workers, reloads and restarts.
//!
//! A whole-tree purge also renews the epoch file: any page last written no
//! later than the epoch is stale and never served, so the purge takes effect
//! at once whatever the size of the tree, and stale pages are deleted in the
//! background.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::epoch::SharedEpoch;
use crate::scope::Scope;
use crate::store::{
    create_dirs, open_reserved_file, reserved_dir, unique_name, StoreError, RESERVED_MODE,
};

const JOURNAL: &str = "purges";
const LOCK: &str = "lock";

/// The journal as a MISS found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    ino: u64,
    len: u64,
}

fn journal_path(root: &Path) -> PathBuf {
    reserved_dir(root).join(JOURNAL)
}

fn io_error(op: &'static str, path: PathBuf, source: io::Error) -> StoreError {
    StoreError::Io { op, path, source }
}

/// A file's modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileTime {
    pub sec: i64,
    pub nsec: i64,
}

impl FileTime {
    pub fn of(meta: &fs::Metadata) -> FileTime {
        FileTime {
            sec: meta.mtime(),
            nsec: meta.mtime_nsec(),
        }
    }
}

/// When the last whole-tree purge happened, if ever.
pub fn epoch(root: &Path) -> Result<Option<FileTime>, StoreError> {
    Ok(SharedEpoch::open(root)?.load())
}

/// True for a page written no later than the last whole-tree purge. File
/// times are coarse (a clock tick behind the clock the epoch is read from),
/// so a page installed just after a purge is given a later time (see
/// `PageWriter::commit_unless_purged`).
pub fn is_stale(page: FileTime, epoch: Option<FileTime>) -> bool {
    epoch.is_some_and(|epoch| page <= epoch)
}

/// Notes the journal's state (creating it the first time).
pub fn mark(root: &Path) -> Result<Mark, StoreError> {
    let path = journal_path(root);
    let meta = match fs::metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dirs(&reserved_dir(root), RESERVED_MODE)?;
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(&path)
                .and_then(|f| f.metadata())
        }
        other => other,
    }
    .map_err(|e| io_error("stat", path, e))?;
    Ok(Mark {
        ino: meta.ino(),
        len: meta.len(),
    })
}

/// True when a purge recorded after `mark` covers `uri`. A journal that
/// was replaced or removed means a whole-tree purge.
pub fn purged_since(root: &Path, mark: Mark, uri: &[u8]) -> Result<bool, StoreError> {
    let path = journal_path(root);
    // the usual case, nothing purged meanwhile, takes one system call
    match fs::metadata(&path) {
        Ok(meta) if meta.ino() == mark.ino && meta.len() == mark.len => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        _ => {}
    }
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(io_error("open", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error("stat", path.clone(), e))?;
    if meta.ino() != mark.ino || meta.len() < mark.len {
        return Ok(true);
    }
    let mut added = vec![0u8; (meta.len() - mark.len) as usize];
    file.read_exact_at(&mut added, mark.len)
        .map_err(|e| io_error("read", path, e))?;
    Ok(added
        .split(|&b| b == b'\n')
        .filter_map(parse_entry)
        .any(|scope| scope.covers(uri)))
}

/// Records a purge; the caller holds the tree lock exclusively.
pub fn record(root: &Path, scope: &Scope) -> Result<(), StoreError> {
    let path = journal_path(root);
    create_dirs(&reserved_dir(root), RESERVED_MODE)?;
    let Some(scope_path) = scope.path() else {
        // a new epoch, then a fresh journal: every earlier page and mark is
        // now stale
        SharedEpoch::open(root)?.store(crate::epoch::now());
        return replace_with_empty(root, JOURNAL);
    };
    let mut line = Vec::with_capacity(scope_path.len() + 8);
    line.extend_from_slice(scope.kind().as_bytes());
    line.push(b' ');
    line.extend_from_slice(scope_path);
    line.push(b'\n');
    let mut journal = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| io_error("open", path.clone(), e))?;
    journal
        .write_all(&line)
        .map_err(|e| io_error("write", path, e))
}

fn replace_with_empty(root: &Path, name: &str) -> Result<(), StoreError> {
    let path = reserved_dir(root).join(name);
    let fresh = reserved_dir(root).join(format!("{name}.{}", unique_name()));
    File::create(&fresh).map_err(|e| io_error("create", fresh.clone(), e))?;
    fs::rename(&fresh, &path).map_err(|e| io_error("rename to", path, e))
}

fn parse_entry(line: &[u8]) -> Option<Scope> {
    let space = line.iter().position(|&b| b == b' ')?;
    let path = line[space + 1..].to_vec();
    match &line[..space] {
        b"uri" => Some(Scope::Uri(path)),
        b"prefix" => Some(Scope::Prefix(path)),
        _ => None,
    }
}

/// The tree lock: shared while installing a page, exclusive while purging.
/// Held for a few system calls at a time.
#[derive(Debug)]
pub struct TreeLock {
    /// Closing the descriptor releases the lock.
    _file: File,
}

impl TreeLock {
    pub fn shared(root: &Path) -> Result<TreeLock, StoreError> {
        TreeLock::take(root, libc::LOCK_SH)
    }

    pub fn exclusive(root: &Path) -> Result<TreeLock, StoreError> {
        TreeLock::take(root, libc::LOCK_EX)
    }

    fn take(root: &Path, operation: i32) -> Result<TreeLock, StoreError> {
        let (file, path) = open_reserved_file(root, LOCK)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
            return Err(io_error("flock", path, io::Error::last_os_error()));
        }
        Ok(TreeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::Scratch;

    #[test]
    fn nothing_purged_since_mark() {
        let root = Scratch::new("journal-none");
        let mark = mark(&root.0).unwrap();
        assert!(!purged_since(&root.0, mark, b"/a/").unwrap());
    }

    #[test]
    fn partial_purges_cover_their_uris_only() {
        let root = Scratch::new("journal-partial");
        let before = mark(&root.0).unwrap();
        record(&root.0, &Scope::Uri(b"/a/".to_vec())).unwrap();
        record(&root.0, &Scope::Prefix(b"/blog/".to_vec())).unwrap();
        assert!(purged_since(&root.0, before, b"/a/").unwrap());
        assert!(purged_since(&root.0, before, b"/blog/post/").unwrap());
        assert!(!purged_since(&root.0, before, b"/a").unwrap());
        assert!(!purged_since(&root.0, before, b"/other/").unwrap());
        let after = mark(&root.0).unwrap();
        assert!(
            !purged_since(&root.0, after, b"/a/").unwrap(),
            "older entries do not count"
        );
    }

    #[test]
    fn whole_tree_purge_invalidates_every_mark() {
        let root = Scratch::new("journal-all");
        let before = mark(&root.0).unwrap();
        record(&root.0, &Scope::All).unwrap();
        assert!(purged_since(&root.0, before, b"/anything").unwrap());
        let after = mark(&root.0).unwrap();
        assert!(!purged_since(&root.0, after, b"/anything").unwrap());
    }

    #[test]
    fn whole_tree_purge_makes_older_pages_stale() {
        let root = Scratch::new("journal-epoch");
        assert_eq!(epoch(&root.0).unwrap(), None);
        let page = root.0.join("page.html");
        fs::write(&page, b"old").unwrap();
        let old = FileTime::of(&fs::metadata(&page).unwrap());
        assert!(!is_stale(old, None));
        record(&root.0, &Scope::All).unwrap();
        let purged_at = epoch(&root.0).unwrap();
        assert!(is_stale(old, purged_at));
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&page, b"new").unwrap();
        let new = FileTime::of(&fs::metadata(&page).unwrap());
        assert!(!is_stale(new, purged_at));
        record(&root.0, &Scope::Uri(b"/x".to_vec())).unwrap();
        assert_eq!(
            epoch(&root.0).unwrap(),
            purged_at,
            "partial purges keep the epoch"
        );
    }

    #[test]
    fn locks_exclude_each_other() {
        let root = Scratch::new("journal-lock");
        let shared_a = TreeLock::shared(&root.0).unwrap();
        let shared_b = TreeLock::shared(&root.0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = root.0.clone();
        let purger = std::thread::spawn(move || {
            let _exclusive = TreeLock::exclusive(&path).unwrap();
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
}
