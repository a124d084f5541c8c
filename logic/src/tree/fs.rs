//! File system primitives on directory descriptors that never follow a
//! symbolic link below the directory they start from: a link planted inside
//! a generated tree (`root/articles -> /etc`) must not let a HIT read, or a
//! MISS write, anything outside it.
//!
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` does this in one
//! call where the kernel has it (Linux 5.6); elsewhere the path is walked
//! one component at a time with `O_NOFOLLOW`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{mkdirat, openat, openat2, statat, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Flags every descriptor of the module is opened with.
const BASE: OFlags = OFlags::CLOEXEC.union(OFlags::NOFOLLOW);

/// False once `openat2` answered `ENOSYS` (an older kernel, or a sandbox
/// that filters it): the walk is used from then on.
static HAVE_OPENAT2: AtomicBool = AtomicBool::new(true);

/// Opens `rel` (a relative path of plain names, no `.` or `..`) under
/// `dir`, refusing symbolic links in every component (`ELOOP`).
pub fn open_beneath(dir: BorrowedFd, rel: &[u8], flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    let flags = flags | BASE;
    if HAVE_OPENAT2.load(Ordering::Relaxed) {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        match openat2(
            dir,
            OsStr::from_bytes(rel),
            flags,
            Mode::from(mode),
            resolve,
        ) {
            Err(Errno::NOSYS) => HAVE_OPENAT2.store(false, Ordering::Relaxed),
            other => return other.map_err(io::Error::from),
        }
    }
    walk(dir, rel, flags, mode)
}

/// The component-by-component walk: every directory opened `O_NOFOLLOW`.
fn walk(dir: BorrowedFd, rel: &[u8], flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    let mut components = rel.split(|&b| b == b'/').peekable();
    let mut current: Option<OwnedFd> = None;
    while let Some(name) = components.next() {
        check_name(name)?;
        let at = current.as_ref().map_or(dir, |fd| fd.as_fd());
        let last = components.peek().is_none();
        let step_flags = if last {
            flags
        } else {
            OFlags::PATH | OFlags::DIRECTORY | BASE
        };
        let name = OsStr::from_bytes(name);
        current = Some(match openat(at, name, step_flags, Mode::from(mode)) {
            // a link where a directory should be: say so, as openat2 does
            Err(Errno::NOTDIR) if is_symlink(at, name) => return Err(Errno::LOOP.into()),
            other => other?,
        });
    }
    current.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

fn is_symlink(dir: BorrowedFd, name: &OsStr) -> bool {
    statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink)
}

/// Opens the directory `rel` under `dir` (`""` is `dir` itself), creating
/// missing components with `mode` when `create` is set.
pub fn open_dir_beneath(dir: BorrowedFd, rel: &[u8], create: Option<u32>) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    if rel.is_empty() {
        return Ok(openat(dir, ".", flags | BASE, Mode::empty())?);
    }
    match (open_beneath(dir, rel, flags, 0), create) {
        (Err(e), Some(mode)) if e.kind() == io::ErrorKind::NotFound => {
            create_dirs_beneath(dir, rel, mode)
        }
        (result, _) => result,
    }
}

/// Creates each missing directory of `rel` under `dir` and opens the last.
fn create_dirs_beneath(dir: BorrowedFd, rel: &[u8], mode: u32) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | BASE;
    let mut current: Option<OwnedFd> = None;
    for name in rel.split(|&b| b == b'/') {
        check_name(name)?;
        let at = current.as_ref().map_or(dir, |fd| fd.as_fd());
        let name = OsStr::from_bytes(name);
        match mkdirat(at, name, Mode::from(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        current = Some(openat(at, name, flags, Mode::empty())?);
    }
    current.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Refuses names that would leave the directory or that no page has.
fn check_name(name: &[u8]) -> io::Result<()> {
    match name {
        b"" | b"." | b".." => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        _ if name.contains(&0) => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        _ => Ok(()),
    }
}

/// Splits a relative page path into its directory (maybe empty) and name.
pub fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&rel[..slash], &rel[slash + 1..]),
        None => (&[][..], rel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::Scratch;
    use std::os::unix::fs::symlink;

    fn root_fd(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    fn both_ways(test: impl Fn()) {
        test();
        HAVE_OPENAT2.store(false, Ordering::Relaxed);
        test();
        HAVE_OPENAT2.store(true, Ordering::Relaxed);
    }

    #[test]
    fn symlinks_are_never_followed() {
        let scratch = Scratch::new("fs-links");
        let root = scratch.0.join("root");
        let outside = scratch.0.join("outside");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.html"), b"secret").unwrap();
        std::fs::write(root.join("real/page.html"), b"page").unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink(root.join("real/page.html"), root.join("real/alias.html")).unwrap();
        let dir = root_fd(&root);
        both_ways(|| {
            let read = OFlags::RDONLY;
            assert!(open_beneath(dir.as_fd(), b"real/page.html", read, 0).is_ok());
            for bad in [&b"link/secret.html"[..], b"real/alias.html"] {
                let err = open_beneath(dir.as_fd(), bad, read, 0).unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{bad:?}");
            }
            let err = open_dir_beneath(dir.as_fd(), b"link/sub", Some(0o755)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
            assert!(!outside.join("sub").exists(), "created outside the root");
        });
    }

    #[test]
    fn directories_are_created_on_demand() {
        let scratch = Scratch::new("fs-mkdir");
        let dir = root_fd(&scratch.0);
        both_ways(|| {
            let _ = std::fs::remove_dir_all(scratch.0.join("a"));
            assert!(open_dir_beneath(dir.as_fd(), b"a/b/c", None).is_err());
            open_dir_beneath(dir.as_fd(), b"a/b/c", Some(0o755)).unwrap();
            assert!(scratch.0.join("a/b/c").is_dir());
        });
    }

    #[test]
    fn dot_segments_are_refused() {
        let scratch = Scratch::new("fs-dots");
        let dir = root_fd(&scratch.0);
        both_ways(|| {
            for bad in [&b"../x"[..], b"a/../../x", b"/etc/passwd", b"a//b"] {
                assert!(
                    open_beneath(dir.as_fd(), bad, OFlags::RDONLY, 0).is_err(),
                    "{bad:?}"
                );
            }
        });
    }

    #[test]
    fn parents() {
        assert_eq!(
            split_parent(b"a/b/index.html"),
            (&b"a/b"[..], &b"index.html"[..])
        );
        assert_eq!(split_parent(b"about.html"), (&b""[..], &b"about.html"[..]));
    }
}
