//! Deleting what purges leave, in the background: pages made stale by a
//! purge once they may no longer be served stale, entries a hard prefix
//! purge moved into the trash, and what a crash left behind. Such pages
//! are never served as fresh, so only the disk space waits; the deletion
//! runs at idle priority and paced, so requests keep their speed meanwhile.
//!
//! The walk goes by directory descriptors and never follows a symbolic link:
//! a link inside the tree is removed, never what it points to.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::fs::{
    flock, openat, statat, unlinkat, AtFlags, Dir, FileType, FlockOperation, Mode, OFlags, Stat,
};

use crate::page::{decode_header, is_page_start, HeaderInfo, MAGIC, MAX_HEADER_LEN};
use crate::path::RESERVED_DIR;
use crate::tree::{now, FileTime, PageKeys, SharedState, Tree, LOCK_FILE};

/// Deletion left for after a purge's reply.
#[derive(Debug)]
pub enum Cleanup {
    None,
    /// A directory (`name` in `parent`) the purged entries were moved into.
    Trash {
        parent: OwnedFd,
        name: OsString,
    },
    /// Pages of the tree under `root` that purges made stale, to delete
    /// `after` (their longest stale time) from now.
    Stale {
        root: PathBuf,
        after: Duration,
    },
}

/// Does the deletion a purge left, on a thread of its own, so that the
/// caller (an nginx event loop) does not wait for a large tree. Returns
/// whether anything was left to do.
pub fn clean_up_in_background(cleanup: Cleanup) -> io::Result<bool> {
    match cleanup {
        Cleanup::None => Ok(false),
        Cleanup::Trash { parent, name } => spawn_quiet("static_gen purge", move || {
            remove_trash(parent.as_fd(), &name)
        })
        .map(|()| true),
        Cleanup::Stale { root, after } => schedule_sweep(root, after).map(|()| true),
    }
}

/// Sweeps planned by this process: (root, when), and the thread that runs
/// them, one for all trees, started with the first.
struct Sweeps {
    due: Mutex<Vec<(PathBuf, Instant)>>,
    wake: Condvar,
}

fn sweeps() -> &'static Sweeps {
    static SWEEPS: OnceLock<Sweeps> = OnceLock::new();
    SWEEPS.get_or_init(|| Sweeps {
        due: Mutex::new(Vec::new()),
        wake: Condvar::new(),
    })
}

/// Plans a sweep of `root` `after` from now. Sweeps due within a second of
/// each other are one.
fn schedule_sweep(root: PathBuf, after: Duration) -> io::Result<()> {
    static THREAD: OnceLock<io::Result<()>> = OnceLock::new();
    let started = THREAD.get_or_init(|| spawn_quiet("static_gen sweep", run_sweeps));
    if let Err(e) = started {
        return Err(io::Error::new(e.kind(), e.to_string()));
    }
    let when = Instant::now() + after;
    let sweeps = sweeps();
    let mut due = sweeps.due.lock().unwrap_or_else(|e| e.into_inner());
    let close = |(r, w): &(PathBuf, Instant)| {
        *r == root
            && w.saturating_duration_since(when) + when.saturating_duration_since(*w)
                < Duration::from_secs(1)
    };
    if !due.iter().any(close) {
        due.push((root, when));
        sweeps.wake.notify_one();
    }
    Ok(())
}

/// The sweeping thread: waits for the next sweep that is due, runs it.
fn run_sweeps() {
    let sweeps = sweeps();
    loop {
        let root = {
            let mut due = sweeps.due.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let next = due.iter().enumerate().min_by_key(|(_, (_, when))| *when);
                match next.map(|(i, (_, when))| (i, *when)) {
                    Some((i, when)) if when <= Instant::now() => break due.swap_remove(i).0,
                    Some((_, when)) => {
                        let wait = when.saturating_duration_since(Instant::now());
                        due = sweeps
                            .wake
                            .wait_timeout(due, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    None => due = sweeps.wake.wait(due).unwrap_or_else(|e| e.into_inner()),
                }
            }
        };
        if let Some(tree) = Tree::open_existing(&root) {
            remove_stale(&tree);
        }
    }
}

/// Deletes the pages of `tree` that purges made stale and that may no
/// longer be served stale, and directories left empty, everywhere but the
/// reserved directory. Files that are not pages of the module (put there by
/// hand) stay.
pub fn remove_stale(tree: &Tree) {
    let state = tree.state();
    let stale = |dir: BorrowedFd, rel: &[u8], stat: &Stat| {
        let written = FileTime::of_stat(stat);
        if past_stale(state, rel, &[], written) {
            return is_page(dir, rel);
        }
        // its tags may cover it, if a tag was purged since it was written
        state.last_tag_purge().is_some_and(|at| at >= written)
            && page_tag_keys(dir, rel).is_some_and(|tags| past_stale(state, rel, &tags, written))
    };
    // directories are removed under the tree lock, which an install holds
    // from creating a page's directory to renaming the page into it
    let lock = open_tree_lock(tree.dir());
    let mut pace = Pace {
        lock: lock.as_ref(),
        ..Pace::default()
    };
    remove_under(tree.dir(), &mut Vec::new(), &stale, true, &mut pace);
}

/// True for a page a purge made stale whose stale time is over (or that a
/// hard purge covered).
fn past_stale(state: &SharedState, rel: &[u8], tags: &[u64], written: FileTime) -> bool {
    let Some(staleness) = state.staleness(&PageKeys::of(rel), tags, written) else {
        return false;
    };
    let window = state.max_stale_ms() * 1_000_000;
    staleness.hard || staleness.since.as_nanos() + window <= now().as_nanos()
}

/// The tree lock file, for the stale-page deletion (no lock file: nothing
/// was ever installed, nothing to wait for).
fn open_tree_lock(root: BorrowedFd) -> Option<OwnedFd> {
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let reserved = open_subdir(root, OsStr::new(RESERVED_DIR)).ok()?;
    openat(&reserved, LOCK_FILE, flags, Mode::empty()).ok()
}

/// True for a file (`rel`'s last name, in `dir`) that starts as the
/// module's pages do.
fn is_page(dir: BorrowedFd, rel: &[u8]) -> bool {
    let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(file) = openat(dir, OsStr::from_bytes(name), flags, Mode::empty()) else {
        return false;
    };
    let mut start = [0u8; MAGIC.len()];
    rustix::io::pread(&file, &mut start, 0).is_ok_and(|n| is_page_start(&start[..n]))
}

/// The tag keys of a page file (`rel`'s last name, in `dir`), or `None`
/// for a file that is not a page.
fn page_tag_keys(dir: BorrowedFd, rel: &[u8]) -> Option<std::rc::Rc<[u64]>> {
    let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = openat(dir, OsStr::from_bytes(name), flags, Mode::empty()).ok()?;
    let mut start = vec![0u8; MAX_HEADER_LEN];
    let len = rustix::io::pread(&file, &mut start, 0).ok()?;
    let header = decode_header(&start[..len]).ok()?;
    Some(HeaderInfo::from(header).tag_keys)
}

/// Deletes the directory `name` in `parent` and everything in it.
fn remove_trash(parent: BorrowedFd, name: &OsStr) {
    if let Ok(dir) = open_subdir(parent, name) {
        let all = |_: BorrowedFd, _: &[u8], _: &Stat| true;
        remove_under(
            dir.as_fd(),
            &mut Vec::new(),
            &all,
            false,
            &mut Pace::default(),
        );
    }
    let _ = unlinkat(parent, name, AtFlags::REMOVEDIR);
}

fn open_subdir(parent: BorrowedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(openat(parent, name, flags, Mode::empty())?)
}

/// The names in `dir` but `.` and `..`, with their types where known.
fn entries(dir: BorrowedFd) -> Vec<(OsString, FileType)> {
    let Ok(listing) = Dir::read_from(dir) else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
        .map(|e| {
            let name = OsStr::from_bytes(e.file_name().to_bytes()).to_owned();
            (name, e.file_type())
        })
        .collect()
}

/// Selects the files to delete: their directory, path from where the
/// walk started, and status.
type Doomed<'a> = dyn Fn(BorrowedFd, &[u8], &Stat) -> bool + 'a;

/// What a walk of a tree does with what it finds.
pub(crate) trait Visit {
    /// A file that is not a directory (`rel`: its path from where the walk
    /// started; `name`: its name in `dir`).
    fn file(&mut self, dir: BorrowedFd, rel: &[u8], name: &OsStr);
    /// A directory (`name` in `dir`) whose contents were all visited.
    fn left(&mut self, _dir: BorrowedFd, _name: &OsStr) {}
}

/// Visits what is under `dir` (at `rel` from where the walk started),
/// depth first, never through a symbolic link, skipping the reserved
/// directory when `dir` is a root.
pub(crate) fn walk(dir: BorrowedFd, rel: &mut Vec<u8>, is_root: bool, visit: &mut dyn Visit) {
    for (name, kind) in entries(dir) {
        if is_root && name == RESERVED_DIR {
            continue;
        }
        let kind = match kind {
            FileType::Unknown => match statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => FileType::from_raw_mode(stat.st_mode),
                Err(_) => continue,
            },
            kind => kind,
        };
        let len = rel.len();
        rel.extend_from_slice(name.as_bytes());
        if kind == FileType::Directory {
            rel.push(b'/');
            if let Ok(child) = open_subdir(dir, &name) {
                walk(child.as_fd(), rel, false, visit);
            }
            visit.left(dir, &name);
        } else {
            visit.file(dir, rel, &name);
        }
        rel.truncate(len);
    }
}

/// Deletes the files under `dir` (at `rel` from where the walk started)
/// that `doomed` selects, and the directories left empty (skipping the
/// reserved directory when `dir` is a root).
fn remove_under(
    dir: BorrowedFd,
    rel: &mut Vec<u8>,
    doomed: &Doomed<'_>,
    is_root: bool,
    pace: &mut Pace,
) {
    walk(dir, rel, is_root, &mut Remover { doomed, pace });
}

struct Remover<'a, 'b, 'c> {
    doomed: &'a Doomed<'b>,
    pace: &'a mut Pace<'c>,
}

impl Visit for Remover<'_, '_, '_> {
    fn file(&mut self, dir: BorrowedFd, rel: &[u8], name: &OsStr) {
        // checked and removed under the tree lock: an install renames a
        // new page over this name under it
        let removed = self.pace.locked(|| {
            let doomed = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| (self.doomed)(dir, rel, &s));
            doomed && unlinkat(dir, name, AtFlags::empty()).is_ok()
        });
        if removed {
            self.pace.step();
        }
    }

    fn left(&mut self, dir: BorrowedFd, name: &OsStr) {
        // fails, as it should, when new pages arrived meanwhile
        self.pace.remove_dir(dir, name);
        self.pace.step();
    }
}

/// The speed of a background deletion. An idle-priority thread still runs
/// in every gap a busy worker leaves and its unlinks contend with the
/// workers' file system calls (HITs fell to 0.64 x while 100,000 pages were
/// deleted flat out); short pauses bound its share.
#[derive(Default)]
struct Pace<'a> {
    removed: u32,
    /// The tree lock, taken exclusively to remove a page or a directory.
    lock: Option<&'a OwnedFd>,
}

impl Pace<'_> {
    const BATCH: u32 = 20;
    const PAUSE: Duration = Duration::from_millis(1);

    fn remove_dir(&self, dir: BorrowedFd, name: &OsStr) {
        self.locked(|| unlinkat(dir, name, AtFlags::REMOVEDIR).is_ok());
    }

    /// Runs `f` holding the tree lock exclusively, when there is one.
    fn locked<T>(&self, f: impl FnOnce() -> T) -> T {
        let locked = self
            .lock
            .is_some_and(|lock| flock(lock, FlockOperation::LockExclusive).is_ok());
        let result = f();
        if locked {
            let _ = self.lock.map(|lock| flock(lock, FlockOperation::Unlock));
        }
        result
    }

    fn step(&mut self) {
        self.removed += 1;
        if self.removed % Self::BATCH == 0 {
            std::thread::sleep(Self::PAUSE);
        }
    }
}

/// Deletes what a crash may have left under `root`: purged entries not yet
/// deleted, stale pages, and temporary files of processes that no longer
/// run. A root that does not exist is left alone.
pub fn clean_leftovers(root: &Path) {
    let Some(tree) = Tree::open_existing(root) else {
        return;
    };
    remove_stale(&tree);
    if let Some(trash) = tree.trash_dir() {
        for (name, _) in entries(trash.as_fd()) {
            remove_trash(trash.as_fd(), &name);
        }
    }
    remove_dead_temp_files(&tree);
}

/// Deletes the temporary files of processes that no longer run (a worker
/// killed while it stored a page).
pub fn remove_dead_temp_files(tree: &Tree) {
    let Some(temp) = tree.existing_temp_dir() else {
        return;
    };
    for (name, _) in entries(temp.as_fd()) {
        let pid = name
            .to_str()
            .and_then(|n| n.split('.').next()?.parse::<i32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = unlinkat(&temp, &name, AtFlags::empty());
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Cleans the leftovers of a crash under each root on a thread of its own:
/// everything when `all`, else only dead processes' temporary files (what
/// a worker started again after a crash does).
pub fn clean_in_background(roots: Vec<PathBuf>, all: bool) -> io::Result<()> {
    spawn_quiet("static_gen clean", move || {
        for root in &roots {
            if all {
                clean_leftovers(root);
            } else if let Some(tree) = Tree::open_existing(root) {
                remove_dead_temp_files(&tree);
            }
        }
    })
}

/// How much CPU a background thread may take from the requests.
#[derive(Debug, Clone, Copy)]
pub enum Priority {
    /// Only what nobody else wants (and idle I/O).
    Idle,
    /// A nice value above the worker's.
    Nice(i32),
}

/// Spawns a detached thread at `priority` that blocks every signal:
/// signals meant for nginx must reach its own thread.
pub fn spawn_background(
    name: &str,
    priority: Priority,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    with_signals_blocked(|| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                match priority {
                    Priority::Idle => run_when_idle(),
                    Priority::Nice(nice) => run_nicer(nice),
                }
                f()
            })
            .map(|_| ())
    })
}

fn spawn_quiet(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    spawn_background(name, Priority::Idle, f)
}

/// Lowers the calling thread's priority by `nice`.
fn run_nicer(nice: i32) {
    // SAFETY: changes only the calling thread's nice value (Linux applies
    // PRIO_PROCESS with a thread id to that thread); a failure leaves it.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// Lets the calling thread use only CPU and disk time nobody else wants.
fn run_when_idle() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: both calls change only the calling thread's scheduling; a
    // failure leaves it as it was.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
    }
}

/// Runs `f` with all signals blocked in the calling thread, so that a thread
/// spawned by `f` inherits the blocked mask.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t values are initialised by sigfillset/pthread_sigmask
    // before use; the previous mask is restored before returning.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tree::tests::Scratch;
    use std::fs;
    use std::path::Path;
    use std::time::Instant;

    pub fn tree_files(root: &Path, files: &[&str]) {
        for file in files {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"x").unwrap();
        }
    }

    #[test]
    fn background_deletion_pauses_between_batches() {
        let root = Scratch::new("paced");
        let files: Vec<String> = (0..200).map(|i| format!("trash/{i}.html")).collect();
        tree_files(
            &root.0,
            &files.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let dir = open_subdir(
            rustix::fs::open(&root.0, OFlags::RDONLY, Mode::empty())
                .unwrap()
                .as_fd(),
            OsStr::new("."),
        )
        .unwrap();
        let started = Instant::now();
        remove_trash(dir.as_fd(), OsStr::new("trash"));
        assert!(!root.0.join("trash").exists());
        // 201 removals: at least 10 pauses, however fast the disk
        assert!(
            started.elapsed() >= Pace::PAUSE * 10,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn deletion_never_follows_a_symlink() {
        let root = Scratch::new("sweep-link");
        let outside = Scratch::new("sweep-outside");
        tree_files(&outside.0, &["keep/index.html"]);
        tree_files(&root.0, &["trash/a/index.html"]);
        std::os::unix::fs::symlink(outside.0.join("keep"), root.0.join("trash/a/link")).unwrap();
        let dir = rustix::fs::open(&root.0, OFlags::RDONLY, Mode::empty()).unwrap();
        remove_trash(dir.as_fd(), OsStr::new("trash"));
        assert!(!root.0.join("trash").exists());
        assert!(outside.0.join("keep/index.html").exists());
    }

    #[test]
    fn files_put_there_by_hand_are_not_stale_pages() {
        let root = Scratch::new("sweep-foreign");
        let tree = Tree::open(&root.0).unwrap();
        tree_files(&root.0, &["hand/index.html"]);
        fs::write(
            root.0.join("page.html"),
            b"static_gen 1\ncontent-type: x\nuri: /page\n\n",
        )
        .unwrap();
        tree.state().advance_epoch(false).unwrap();
        remove_stale(&tree);
        assert!(root.0.join("hand/index.html").exists());
        assert!(!root.0.join("page.html").exists());
    }

    #[test]
    fn leftovers_of_a_crash_are_cleaned() {
        let root = Scratch::new("leftovers");
        let tree = Tree::open(&root.0).unwrap();
        let reserved = root.0.join(RESERVED_DIR);
        tree_files(
            &reserved,
            &["trash/123.4/0/a/index.html", "tmp/999999999.1", "tmp/x"],
        );
        fs::create_dir_all(root.0.join("stale")).unwrap();
        fs::write(root.0.join("stale/index.html"), crate::page::MAGIC).unwrap();
        tree.state().advance_epoch(false).unwrap();
        let mine = reserved.join(format!("tmp/{}.7", std::process::id()));
        fs::write(&mine, b"in progress").unwrap();
        clean_leftovers(&root.0);
        assert_eq!(fs::read_dir(reserved.join("trash")).unwrap().count(), 0);
        assert!(
            !reserved.join("tmp/999999999.1").exists(),
            "a dead process's temp file"
        );
        assert!(mine.exists(), "a live process's temp file stays");
        assert!(reserved.join("tmp/x").exists(), "not a temp file of ours");
        assert!(
            !root.0.join("stale/index.html").exists(),
            "a page from before a purge"
        );
    }
}
