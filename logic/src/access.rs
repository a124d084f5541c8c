//! `static_gen_access`: the permissions of generated pages, written as
//! nginx's `proxy_store_access` (`user:rw group:r all:r`). Pages are never
//! executable; directories get search permission wherever they are readable.

/// Default: pages readable by everyone, writable by the worker's user.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// An access specification that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessError(pub String);

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid value \"{}\" (expected user:rw, group:r, all:r ...)",
            self.0
        )
    }
}

impl std::error::Error for AccessError {}

/// Parses `who:perm` words into a file mode. `user` always keeps `rw`:
/// the module must be able to replace its own pages.
pub fn parse_access<S: AsRef<str>>(words: &[S]) -> Result<u32, AccessError> {
    let mut mode = 0o600;
    for word in words {
        let word = word.as_ref();
        let err = || AccessError(word.to_owned());
        let (who, perms) = word.split_once(':').ok_or_else(err)?;
        let shift = match who {
            "user" => 6,
            "group" => 3,
            "all" => 0,
            _ => return Err(err()),
        };
        let bits = match perms {
            "r" => 0o4,
            "rw" => 0o6,
            _ => return Err(err()),
        };
        mode |= bits << shift;
    }
    Ok(mode)
}

/// The mode of directories holding pages of `file_mode`.
pub fn dir_mode(file_mode: u32) -> u32 {
    let readable = file_mode & 0o444;
    file_mode | (readable >> 2) | 0o700
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_store_access_syntax() {
        assert_eq!(parse_access(&["user:rw", "group:r", "all:r"]), Ok(0o644));
        assert_eq!(parse_access(&["user:rw"]), Ok(0o600));
        assert_eq!(parse_access(&["group:rw", "all:r"]), Ok(0o664));
        assert_eq!(parse_access::<&str>(&[]), Ok(0o600));
    }

    #[test]
    fn never_executable() {
        for bad in ["user:rwx", "all:x", "other:r", "all", "group:", ":r"] {
            assert!(parse_access(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn directories_are_searchable_where_readable() {
        assert_eq!(dir_mode(0o644), 0o755);
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o640), 0o750);
        assert_eq!(dir_mode(DEFAULT_FILE_MODE), 0o755);
    }
}
