//! Whether nginx's worker user can create and write a tree's root, judged
//! at `nginx -t` from the permission bits (ACLs aside) and the user's uid,
//! gid and supplementary groups: a worker that cannot makes every request
//! a MISS, and only the error log says why.

use std::ffi::CStr;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A user as the kernel checks permissions for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Identity {
    /// The user `name` with primary group `gid` and the groups
    /// `initgroups()` gives it, as nginx's workers have them.
    pub fn of_user(name: &CStr, uid: u32, gid: u32) -> Identity {
        let mut groups = vec![0 as libc::gid_t; 64];
        loop {
            let mut count = groups.len() as libc::c_int;
            // SAFETY: `groups` holds `count` entries; `name` is a C string.
            let rc =
                unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
            if rc >= 0 {
                groups.truncate(count.max(0) as usize);
                break;
            }
            if count as usize <= groups.len() {
                // no larger size asked for: keep the primary group only
                groups.clear();
                break;
            }
            groups.resize(count as usize, 0);
        }
        Identity { uid, gid, groups }
    }

    /// The calling process's effective user.
    pub fn current() -> Identity {
        // SAFETY: plain queries of the process's credentials.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let count = unsafe { libc::getgroups(0, core::ptr::null_mut()) }.max(0);
        let mut groups = vec![0 as libc::gid_t; count as usize];
        // SAFETY: `groups` holds `count` entries.
        let got = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
        groups.truncate(got.max(0) as usize);
        Identity { uid, gid, groups }
    }

    /// The permission bits (`rwx`, low three bits) that apply to this user
    /// on a file owned by `owner`:`group` with `mode`.
    fn bits(&self, owner: u32, group: u32, mode: u32) -> u32 {
        if self.uid == owner {
            (mode >> 6) & 7
        } else if self.gid == group || self.groups.contains(&group) {
            (mode >> 3) & 7
        } else {
            mode & 7
        }
    }
}

const WRITE_SEARCH: u32 = 0o3;
const SEARCH: u32 = 0o1;

/// Why a user cannot use a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A directory on the way has no search permission for the user.
    Search(PathBuf),
    /// The root is missing and its nearest existing ancestor is not
    /// writable: the worker cannot create it.
    Create(PathBuf),
    /// The root (or its reserved directory) exists but is not writable.
    Write(PathBuf),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Search(dir) => write!(
                f,
                "cannot reach it: no search permission on \"{}\"",
                dir.display()
            ),
            Denied::Create(dir) => write!(
                f,
                "cannot create it: no write permission on \"{}\"",
                dir.display()
            ),
            Denied::Write(dir) => write!(
                f,
                "cannot write it: no write permission on \"{}\"",
                dir.display()
            ),
        }
    }
}

/// Checks that `who` can create (when missing) or write `root` and its
/// reserved directory, as a worker would need to. Root (uid 0) always can
/// (short of a read-only file system); a path that cannot be examined is
/// not judged.
pub fn check_writable(root: &Path, who: &Identity) -> Result<(), Denied> {
    if who.uid == 0 {
        return Ok(());
    }
    let Some(existing) = nearest_existing(root) else {
        return Ok(());
    };
    for dir in existing.ancestors().skip(1) {
        if !allows(dir, who, SEARCH) {
            return Err(Denied::Search(dir.to_owned()));
        }
    }
    if existing != root {
        return match allows(&existing, who, WRITE_SEARCH) {
            true => Ok(()),
            false => Err(Denied::Create(existing)),
        };
    }
    let reserved = root.join(".static_gen");
    for dir in [root, reserved.as_path()] {
        if dir.exists() && !allows(dir, who, WRITE_SEARCH) {
            return Err(Denied::Write(dir.to_owned()));
        }
    }
    Ok(())
}

/// `path` or its nearest existing ancestor; `None` when one cannot be
/// examined (another error than "missing").
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    let mut candidate = path;
    loop {
        match fs::metadata(candidate) {
            Ok(_) => return Some(candidate.to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => candidate = candidate.parent()?,
            Err(_) => return None,
        }
    }
}

/// True when `who` has every permission of `wanted` on `dir` (unknown:
/// true).
fn allows(dir: &Path, who: &Identity, wanted: u32) -> bool {
    match fs::metadata(dir) {
        Ok(meta) => who.bits(meta.uid(), meta.gid(), meta.mode()) & wanted == wanted,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::Scratch;
    use std::os::unix::fs::{chown, PermissionsExt};

    const NOBODY: u32 = 65534;

    fn user(uid: u32, gid: u32, groups: &[u32]) -> Identity {
        Identity {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    fn dir(path: &Path, mode: u32, owner: u32, group: u32) {
        fs::create_dir_all(path).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        chown(path, Some(owner), Some(group)).unwrap();
    }

    #[test]
    fn bits_follow_owner_then_group_then_others() {
        let who = user(1000, 100, &[27]);
        assert_eq!(who.bits(1000, 0, 0o750), 7);
        assert_eq!(who.bits(1000, 100, 0o070), 0, "the owner class wins");
        assert_eq!(who.bits(0, 100, 0o750), 5);
        assert_eq!(who.bits(0, 27, 0o770), 7);
        assert_eq!(who.bits(0, 0, 0o755), 5);
    }

    #[test]
    fn roots_a_user_can_or_cannot_use() {
        // runs as root (chown); skipped otherwise
        if Identity::current().uid != 0 {
            return;
        }
        let scratch = Scratch::new("writable");
        let base = scratch.0.clone();
        dir(&base, 0o755, 0, 0);
        let nobody = user(NOBODY, NOBODY, &[]);
        let member = user(NOBODY, NOBODY, &[4242]);

        // missing root under a directory only root may write
        dir(&base.join("srv"), 0o755, 0, 0);
        let missing = base.join("srv/gen/site");
        assert_eq!(
            check_writable(&missing, &nobody),
            Err(Denied::Create(base.join("srv")))
        );
        assert_eq!(check_writable(&missing, &user(0, 0, &[])), Ok(()));
        // the group may write: a member can create it
        dir(&base.join("srv"), 0o775, 0, 4242);
        assert_eq!(check_writable(&missing, &member), Ok(()));

        // an existing root owned by root, 0755
        let owned = base.join("owned");
        dir(&owned, 0o755, 0, 0);
        assert_eq!(
            check_writable(&owned, &nobody),
            Err(Denied::Write(owned.clone()))
        );
        dir(&owned, 0o755, NOBODY, NOBODY);
        assert_eq!(check_writable(&owned, &nobody), Ok(()));
        // its reserved directory left by another user
        dir(&owned.join(".static_gen"), 0o700, 0, 0);
        assert_eq!(
            check_writable(&owned, &nobody),
            Err(Denied::Write(owned.join(".static_gen")))
        );

        // a directory on the way without search permission
        dir(&base.join("closed"), 0o700, 0, 0);
        dir(&base.join("closed/gen"), 0o777, NOBODY, NOBODY);
        assert_eq!(
            check_writable(&base.join("closed/gen"), &nobody),
            Err(Denied::Search(base.join("closed")))
        );
        let message = Denied::Create(PathBuf::from("/srv")).to_string();
        assert_eq!(message, "cannot create it: no write permission on \"/srv\"");
    }

    #[test]
    fn the_current_user_is_known() {
        let me = Identity::current();
        // SAFETY: plain query.
        assert_eq!(me.uid, unsafe { libc::geteuid() });
        let root = Identity::of_user(c"root", 0, 0);
        assert!(root.groups.contains(&0), "{root:?}");
    }
}
