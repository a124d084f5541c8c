//! Purging a generated tree without making the caller wait for the
//! deletion: every top-level entry of the root is renamed into a fresh trash
//! directory (cheap, and from then on no lookup finds the old pages), and the
//! trash is deleted afterwards on a background thread.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::path::RESERVED_DIR;
use crate::store::{create_dirs, reserved_dir, unique_name, StoreError};

const TRASH_MODE: u32 = 0o700;

/// What a purge did.
#[derive(Debug, PartialEq, Eq)]
pub struct Purged {
    /// Top-level entries moved out of the root.
    pub moved: usize,
    /// The directory they were moved into, still to be deleted.
    pub trash: Option<PathBuf>,
}

/// Moves the whole tree under `root` out of sight. A missing root is an
/// empty tree.
pub fn move_tree_away(root: &Path) -> Result<Purged, StoreError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Purged {
                moved: 0,
                trash: None,
            })
        }
        Err(e) => {
            return Err(StoreError::Io {
                op: "opendir",
                path: root.into(),
                source: e,
            })
        }
    };
    let trash = reserved_dir(root).join("trash").join(unique_name());
    let mut moved = 0;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::Io {
            op: "readdir",
            path: root.into(),
            source: e,
        })?;
        if entry.file_name() == RESERVED_DIR {
            continue;
        }
        if moved == 0 {
            create_dirs(&trash, TRASH_MODE)?;
        }
        let from = entry.path();
        match fs::rename(&from, trash.join(entry.file_name())) {
            Ok(()) => moved += 1,
            // another worker's purge took it first
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io {
                    op: "rename",
                    path: from,
                    source: e,
                })
            }
        }
    }
    Ok(Purged {
        moved,
        trash: (moved > 0).then_some(trash),
    })
}

/// Deletes `dir` on a thread of its own, so that the caller (an nginx event
/// loop) does not wait for a large tree. The thread blocks every signal:
/// signals meant for nginx must reach its own thread.
pub fn remove_in_background(dir: PathBuf) -> io::Result<()> {
    with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("static_gen purge".into())
            .spawn(move || {
                let _ = fs::remove_dir_all(&dir);
            })
            .map(|_| ())
    })
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
        let trash = purged.trash.unwrap();
        assert!(trash.join("articles/hello/index.html").exists());

        remove_in_background(trash.clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while trash.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!trash.exists());
    }

    #[test]
    fn empty_or_missing_root() {
        let root = Scratch::new("purge-empty");
        assert_eq!(
            move_tree_away(&root.0).unwrap(),
            Purged {
                moved: 0,
                trash: None
            }
        );
        let missing = root.0.join("missing");
        assert_eq!(
            move_tree_away(&missing).unwrap(),
            Purged {
                moved: 0,
                trash: None
            }
        );
    }
}
