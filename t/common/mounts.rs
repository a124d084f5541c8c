//! File systems mounted for one test: a small tmpfs, and an ext4 image on a
//! loop device (a real journaled file system: inode reuse, block
//! allocation and a full disk behave there as on a server, not as on
//! tmpfs). Both need root; a test that cannot mount says so and skips.
//! Dropping one unmounts it lazily (also when the test panics).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A mounted file system, unmounted on drop.
pub struct Mount {
    path: PathBuf,
    /// The image file of a loop mount, removed after unmounting.
    image: Option<PathBuf>,
}

impl Mount {
    /// A tmpfs of `size` (`"256k"`) at `path`, or `None` (said why).
    pub fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(path).unwrap();
        let options = format!("size={size},mode=0755");
        run_mount(&["-t", "tmpfs", "-o", &options, "tmpfs"], path).then(|| Mount {
            path: path.to_owned(),
            image: None,
        })
    }

    /// An ext4 file system of `size_mb` MiB at `path`, from an image file
    /// next to it, or `None` (said why).
    pub fn ext4(path: &Path, size_mb: u64) -> Option<Mount> {
        fs::create_dir_all(path).unwrap();
        let image = path.with_extension("ext4.img");
        let made = fs::File::create(&image)
            .and_then(|f| f.set_len(size_mb << 20))
            .is_ok()
            && quiet(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        if !made {
            eprintln!("skipped: cannot make an ext4 image (mkfs.ext4 missing?)");
            let _ = fs::remove_file(&image);
            return None;
        }
        let image_arg = image.to_string_lossy().into_owned();
        if !run_mount(&["-o", "loop", &image_arg], path) {
            let _ = fs::remove_file(&image);
            return None;
        }
        Some(Mount {
            path: path.to_owned(),
            image: Some(image),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the file system with one file until no block is left.
    pub fn fill(&self) {
        let filler = self.path.join("filler");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .args(["bs=64k", "status=none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // and the blocks a small file still gets
        for n in 0..64 {
            if fs::write(self.path.join(format!("filler{n}")), [0u8; 1024]).is_err() {
                break;
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = quiet(Command::new("umount").arg("-l").arg(&self.path));
        if !ok {
            eprintln!("could not unmount {}", self.path.display());
        }
        if let Some(image) = &self.image {
            let _ = fs::remove_file(image);
        }
    }
}

fn run_mount(args: &[&str], path: &Path) -> bool {
    let out = Command::new("mount")
        .args(args)
        .arg(path)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount at {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: cannot run mount: {e}");
            false
        }
    }
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
