//! Purging without making the caller wait for the deletion: the pages in
//! scope are renamed into a fresh trash directory (a few renames, and from
//! then on no lookup finds them), and the trash is deleted afterwards on a
//! background thread. A purge is recorded in the journal under the exclusive
//! tree lock first, so no response fetched before it is installed after it.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::journal::{self, is_stale, FileTime, TreeLock};
use crate::path::{page_file, RESERVED_DIR};
use crate::scope::Scope;
use crate::store::{create_dirs, reserved_dir, unique_name, StoreError};

const TRASH_MODE: u32 = 0o700;
const INDEX_NAME: &str = "index.html";
const PAGE_SUFFIX: &str = ".html";

/// What a purge did.
#[derive(Debug, PartialEq, Eq)]
pub struct Purged {
    /// Entries moved out of the tree (directories and pages), or pages
    /// removed, for one URI; none for the whole tree.
    pub moved: usize,
    /// What remains to be deleted.
    pub cleanup: Cleanup,
}

/// Deletion left for after the reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Cleanup {
    None,
    /// A directory the purged entries were moved into.
    Trash(PathBuf),
    /// Every page last written no later than this epoch.
    Stale(FileTime),
}

/// Purges `scope` from the tree under `root`: records it, then removes or
/// moves away its pages. A missing root is an empty tree.
pub fn purge(root: &Path, scope: &Scope) -> Result<Purged, StoreError> {
    let _lock = TreeLock::exclusive(root)?;
    journal::record(root, scope)?;
    match scope {
        Scope::All => {
            let cleanup = journal::epoch(root)?.map_or(Cleanup::None, Cleanup::Stale);
            Ok(Purged { moved: 0, cleanup })
        }
        Scope::Uri(uri) => remove_page(root, uri),
        Scope::Prefix(prefix) => move_prefix_away(root, prefix),
    }
}

/// Does the deletion a purge left, on a thread of its own, so that the
/// caller (an nginx event loop) does not wait for a large tree. Returns
/// whether anything was left to do.
pub fn clean_up_in_background(root: &Path, cleanup: Cleanup) -> io::Result<bool> {
    let root = root.to_owned();
    match cleanup {
        Cleanup::None => Ok(false),
        Cleanup::Trash(dir) => {
            spawn_quiet("static_gen purge", move || remove_trash(&dir)).map(|()| true)
        }
        Cleanup::Stale(epoch) => {
            spawn_quiet("static_gen purge", move || remove_stale(&root, epoch)).map(|()| true)
        }
    }
}

/// Deletes the pages written no later than `epoch`, and directories left
/// empty, everywhere but the reserved directory.
pub fn remove_stale(root: &Path, epoch: FileTime) {
    let stale = |entry: &fs::DirEntry| {
        entry
            .metadata()
            .is_ok_and(|meta| is_stale(FileTime::of(&meta), Some(epoch)))
    };
    remove_under(root, &stale, true, &mut Pace::default());
}

/// Deletes a trash directory and everything in it.
fn remove_trash(dir: &Path) {
    remove_under(dir, &|_| true, false, &mut Pace::default());
    let _ = fs::remove_dir(dir);
}

/// Deletes the files under `dir` that `doomed` selects, and the directories
/// left empty (skipping the reserved directory when `dir` is a root).
fn remove_under(
    dir: &Path,
    doomed: &dyn Fn(&fs::DirEntry) -> bool,
    is_root: bool,
    pace: &mut Pace,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if is_root && entry.file_name() == RESERVED_DIR {
            continue;
        }
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_under(&path, doomed, false, pace);
            // fails, as it should, when new pages arrived meanwhile
            let _ = fs::remove_dir(&path);
            pace.step();
        } else if doomed(&entry) {
            let _ = fs::remove_file(&path);
            pace.step();
        }
    }
}

/// The speed of a background deletion. An idle-priority thread still runs
/// in every gap a busy worker leaves and its unlinks contend with the
/// workers' file system calls (HITs fell to 0.64 x while 100,000 pages were
/// deleted flat out); short pauses bound its share. Stale pages are never
/// served, so only the disk space waits.
#[derive(Default)]
struct Pace {
    removed: u32,
}

impl Pace {
    const BATCH: u32 = 20;
    const PAUSE: Duration = Duration::from_millis(1);

    fn step(&mut self) {
        self.removed += 1;
        if self.removed % Self::BATCH == 0 {
            std::thread::sleep(Self::PAUSE);
        }
    }
}

/// The purge reply: one line of JSON.
pub fn reply(scope: &Scope, moved: usize, removal: &str) -> String {
    let mut json = format!("{{\"status\":\"ok\",\"scope\":\"{}\"", scope.kind());
    if let Some(path) = scope.path() {
        json.push_str(&format!(",\"{}\":{}", scope.kind(), json_string(path)));
    }
    match scope {
        Scope::Uri(_) => json.push_str(&format!(",\"removed\":{moved}}}")),
        Scope::Prefix(_) => {
            json.push_str(&format!(",\"moved\":{moved},\"removal\":\"{removal}\"}}"))
        }
        Scope::All => json.push_str(&format!(",\"removal\":\"{removal}\"}}")),
    }
    json
}

fn json_string(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Moves every top-level entry but the reserved directory.
pub fn move_tree_away(root: &Path) -> Result<Purged, StoreError> {
    let entries = list_dir(root)?
        .into_iter()
        .filter(|name| name != RESERVED_DIR);
    move_entries(root, root, entries)
}

/// Moves the pages of every URI starting with `prefix`: the directory a
/// prefix ending in `/` names, or the entries of the last directory whose
/// URI segment starts with the rest.
fn move_prefix_away(root: &Path, prefix: &[u8]) -> Result<Purged, StoreError> {
    let cut = prefix.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let dir = root.join(OsStr::from_bytes(prefix.get(1..cut).unwrap_or_default()));
    let stem = &prefix[cut + 1..];
    if stem.is_empty() {
        if cut == 0 {
            return move_tree_away(root);
        }
        let name = dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let parent = dir.parent().unwrap_or(root).to_owned();
        return move_entries(root, &parent, [name].into_iter());
    }
    let at_top = cut == 0;
    let matching = list_dir(&dir)?.into_iter().filter(|name| {
        let name = name.as_bytes();
        if at_top && name == RESERVED_DIR.as_bytes() {
            return false;
        }
        // a page file stands for the URI segment before `.html`; the
        // directory's own page (`index.html`) is not under the prefix
        let segment = match name.strip_suffix(PAGE_SUFFIX.as_bytes()) {
            Some(_) if name == INDEX_NAME.as_bytes() => return false,
            Some(page) if !dir.join(OsStr::from_bytes(name)).is_dir() => page,
            _ => name,
        };
        segment.starts_with(stem)
    });
    move_entries(root, &dir, matching)
}

/// Removes the page of one URI.
fn remove_page(root: &Path, uri: &[u8]) -> Result<Purged, StoreError> {
    let relative = page_file(uri).map_err(|e| {
        io_error(
            "map",
            root,
            io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        )
    })?;
    let file = root.join(OsStr::from_bytes(&relative));
    match fs::remove_file(&file) {
        Ok(()) => Ok(Purged {
            moved: 1,
            cleanup: Cleanup::None,
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(Purged {
                moved: 0,
                cleanup: Cleanup::None,
            })
        }
        Err(e) => Err(io_error("unlink", &file, e)),
    }
}

/// Names in `dir`; a missing directory is empty.
fn list_dir(dir: &Path) -> Result<Vec<std::ffi::OsString>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(io_error("opendir", dir, e)),
    };
    entries
        .map(|entry| {
            entry
                .map(|e| e.file_name())
                .map_err(|e| io_error("readdir", dir, e))
        })
        .collect()
}

/// Renames the named entries of `dir` into a new trash directory (one per
/// purge, so names cannot clash).
fn move_entries(
    root: &Path,
    dir: &Path,
    names: impl Iterator<Item = std::ffi::OsString>,
) -> Result<Purged, StoreError> {
    let trash = reserved_dir(root).join("trash").join(unique_name());
    let mut moved = 0;
    for name in names {
        if moved == 0 {
            create_dirs(&trash, TRASH_MODE)?;
        }
        let from = dir.join(&name);
        match fs::rename(&from, trash.join(&name)) {
            Ok(()) => moved += 1,
            // another worker's purge took it first
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("rename", &from, e)),
        }
    }
    let cleanup = if moved > 0 {
        Cleanup::Trash(trash)
    } else {
        Cleanup::None
    };
    Ok(Purged { moved, cleanup })
}

/// Deletes what a crash may have left under `root`: purged trees not yet
/// deleted, stale pages, and temporary files of processes that no longer
/// run.
pub fn clean_leftovers(root: &Path) {
    if let Ok(Some(epoch)) = journal::epoch(root) {
        remove_stale(root, epoch);
    }
    let reserved = reserved_dir(root);
    if let Ok(trash) = fs::read_dir(reserved.join("trash")) {
        for entry in trash.flatten() {
            remove_trash(&entry.path());
        }
    }
    if let Ok(temps) = fs::read_dir(reserved.join("tmp")) {
        for entry in temps.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('.').next()?.parse::<i32>().ok());
            if pid.is_some_and(|pid| !process_alive(pid)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Cleans the leftovers of a crash under each root on a thread of its own.
pub fn clean_in_background(roots: Vec<PathBuf>) -> io::Result<()> {
    spawn_quiet("static_gen clean", move || {
        roots.iter().for_each(|root| clean_leftovers(root))
    })
}

/// Spawns a detached thread that blocks every signal: signals meant for
/// nginx must reach its own thread.
fn spawn_quiet(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    with_signals_blocked(|| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                run_when_idle();
                f()
            })
            .map(|_| ())
    })
}

/// Lets the calling thread use only CPU and disk time nobody else wants:
/// deleting a purged tree must not slow down the requests being served
/// (stale pages are never served, so the deletion can wait).
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
mod tests {
    use super::*;
    use crate::store::tests::Scratch;
    use std::time::{Duration, Instant};

    #[test]
    fn moves_everything_but_the_reserved_dir() {
        let root = Scratch::new("purge");
        fs::create_dir_all(root.0.join("articles/hello")).unwrap();
        fs::write(root.0.join("articles/hello/index.html"), b"x").unwrap();
        fs::write(root.0.join("index.html"), b"x").unwrap();
        fs::create_dir_all(reserved_dir(&root.0).join("tmp")).unwrap();
        let purged = move_tree_away(&root.0).unwrap();
        assert_eq!(purged.moved, 2);
        let names: Vec<_> = fs::read_dir(&root.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RESERVED_DIR]);
        let Cleanup::Trash(trash) = purged.cleanup else {
            panic!("nothing to delete: {:?}", purged.cleanup);
        };
        assert!(trash.join("articles/hello/index.html").exists());

        assert!(clean_up_in_background(&root.0, Cleanup::Trash(trash.clone())).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while trash.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!trash.exists());
    }

    fn tree(root: &Path, files: &[&str]) {
        for file in files {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"x").unwrap();
        }
    }

    fn remaining(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_name() == RESERVED_DIR {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(
                        path.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    const SITE: &[&str] = &[
        "index.html",
        "about.html",
        "articles/index.html",
        "articles/hello/index.html",
        "articles/hello.html",
        "articles/help.html.html",
        "articles/world/index.html",
        "articlesx/index.html",
    ];

    #[test]
    fn whole_tree_purge_is_instant_and_stale_pages_are_removed_later() {
        let root = Scratch::new("whole");
        tree(&root.0, SITE);
        let purged = purge(&root.0, &Scope::All).unwrap();
        assert_eq!(purged.moved, 0);
        let Cleanup::Stale(epoch) = purged.cleanup else {
            panic!("{:?}", purged.cleanup);
        };
        assert_eq!(remaining(&root.0).len(), SITE.len(), "nothing deleted yet");
        std::thread::sleep(Duration::from_millis(20));
        tree(&root.0, &["articles/new/index.html"]);
        remove_stale(&root.0, epoch);
        assert_eq!(remaining(&root.0), ["articles/new/index.html"]);
        assert!(!root.0.join("about").exists());
        assert!(
            !root.0.join("articles/hello").exists(),
            "emptied directories go too"
        );
        assert!(
            reserved_dir(&root.0).join("purges").exists(),
            "the reserved directory stays"
        );
    }

    #[test]
    fn background_deletion_pauses_between_batches() {
        let root = Scratch::new("paced");
        let trash = root.0.join("trash");
        let files: Vec<String> = (0..200).map(|i| format!("trash/{i}.html")).collect();
        tree(
            &root.0,
            &files.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let started = Instant::now();
        remove_trash(&trash);
        assert!(!trash.exists());
        // 201 removals: at least 10 pauses, however fast the disk
        assert!(
            started.elapsed() >= Pace::PAUSE * 10,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn prefix_purges() {
        let cases: &[(&str, &[&str])] = &[
            (
                "/articles/",
                &["about.html", "articlesx/index.html", "index.html"],
            ),
            (
                "/articles/hel",
                &[
                    "about.html",
                    "articles/index.html",
                    "articles/world/index.html",
                    "articlesx/index.html",
                    "index.html",
                ],
            ),
            ("/articles", &["about.html", "index.html"]),
            ("/articles/ind", SITE),
        ];
        for (prefix, left) in cases {
            let root = Scratch::new("prefix");
            tree(&root.0, SITE);
            let scope = Scope::Prefix(prefix.as_bytes().to_vec());
            purge(&root.0, &scope).unwrap();
            let mut expected: Vec<String> = left.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(remaining(&root.0), expected, "{prefix}");
        }
    }

    #[test]
    fn uri_purge_removes_one_page() {
        let root = Scratch::new("uri");
        tree(&root.0, SITE);
        let purged = purge(&root.0, &Scope::Uri(b"/articles/hello/".to_vec())).unwrap();
        assert_eq!(
            purged,
            Purged {
                moved: 1,
                cleanup: Cleanup::None
            }
        );
        assert!(!root.0.join("articles/hello/index.html").exists());
        assert!(root.0.join("articles/hello.html").exists());
        let again = purge(&root.0, &Scope::Uri(b"/articles/hello/".to_vec())).unwrap();
        assert_eq!(again.moved, 0);
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply(&Scope::All, 0, "background"),
            r#"{"status":"ok","scope":"all","removal":"background"}"#
        );
        assert_eq!(
            reply(&Scope::Prefix(b"/a\"b/".to_vec()), 3, "background"),
            r#"{"status":"ok","scope":"prefix","prefix":"/a\"b/","moved":3,"removal":"background"}"#
        );
        assert_eq!(
            reply(&Scope::Uri(b"/x/".to_vec()), 1, "none"),
            r#"{"status":"ok","scope":"uri","uri":"/x/","removed":1}"#
        );
    }

    #[test]
    fn leftovers_of_a_crash_are_cleaned() {
        let root = Scratch::new("leftovers");
        let reserved = reserved_dir(&root.0);
        tree(
            &reserved,
            &["trash/123.4/0/a/index.html", "tmp/999999999.1", "tmp/x"],
        );
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

    #[test]
    fn empty_or_missing_root() {
        let root = Scratch::new("purge-empty");
        assert_eq!(
            move_tree_away(&root.0).unwrap(),
            Purged {
                moved: 0,
                cleanup: Cleanup::None
            }
        );
        let missing = root.0.join("missing");
        assert_eq!(
            move_tree_away(&missing).unwrap(),
            Purged {
                moved: 0,
                cleanup: Cleanup::None
            }
        );
    }
}
