//! The file system as the tool uses it: files created readable by their owner only (every
//! file it writes holds signers' personal data or names files that do), small files replaced
//! atomically through a temporary file of their own, and whether two paths name one file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Options that create files readable by their owner only.
pub(crate) fn private_options() -> OpenOptions {
    // Elsewhere (Windows) a new file inherits its folder's access control list.
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Replaces `path` with `bytes` at once: written to a uniquely named temporary file in the
/// same folder (never a fixed name two runs could share), synced, then renamed over `path`,
/// so a reader or a crash never sees half a file. Devices and pipes are written directly.
pub(crate) fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if is_special(path) {
        let mut f = OpenOptions::new().write(true).open(path)?;
        return f.write_all(bytes).and_then(|()| f.flush());
    }
    replace_private_with(path, |f| f.write_all(bytes))
}

/// Like [`replace_private`] for a regular file, the content written by `write` into the
/// temporary file (which it may seek in) rather than held in memory first.
pub(crate) fn replace_private_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile creates the file with mode 0600 and a random name.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Replaces the file at `path` (following a symbolic link to the file it names) with `bytes`
/// at once, keeping its permissions: for a secret that the tool itself renews.
pub(crate) fn replace_keeping_mode(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (target, mut tmp) = temp_beside_target(path)?;
    let permissions = std::fs::metadata(&target)?.permissions();
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(permissions)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// Whether [`replace_keeping_mode`] could replace `path` now: the file it names exists and its
/// folder takes a new file (an empty one is created and removed).
pub(crate) fn can_replace_keeping_mode(path: &Path) -> io::Result<()> {
    temp_beside_target(path)?.1.close()
}

/// The file `path` names (a symbolic link followed) and a new temporary file beside it.
fn temp_beside_target(path: &Path) -> io::Result<(PathBuf, tempfile::NamedTempFile)> {
    let target = std::fs::canonicalize(path)?;
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".mca-attest.")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    Ok((target, tmp))
}

/// Whether `path` exists and is not a regular file or folder (a device such as /dev/null, a
/// FIFO, a socket): written as a stream, never locked, synced or given a manifest.
pub(crate) fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The identity of a path for comparing outputs: the canonical path of an existing file,
/// else its canonical folder joined with its name (so `./r.csv` and `r.csv` are one file
/// before either exists).
pub(crate) fn identity(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether two paths name the same file (hard links included, on Unix).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    identity(a) == identity(b)
}

/// `/dev/null` takes any number of writers: two outputs sent there do not collide.
pub(crate) fn is_null_device(path: &Path) -> bool {
    is_special(path) && identity(path) == Path::new("/dev/null")
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn print_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_names_of_a_new_file_are_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("r.csv");
        let b = dir.path().join(".").join("r.csv");
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &dir.path().join("s.csv")));
    }

    #[cfg(unix)]
    #[test]
    fn hard_links_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "x").unwrap();
        let b = dir.path().join("b");
        std::fs::hard_link(&a, &b).unwrap();
        assert!(same_file(&a, &b));
    }

    #[test]
    fn replacing_leaves_no_temporary_file_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        replace_private(&p, b"one").unwrap();
        replace_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn replacing_a_secret_keeps_its_mode_and_follows_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("token");
        std::fs::write(&real, "old\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_keeping_mode(&link, b"new\n").unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), b"new\n");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let mode = std::fs::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[cfg(unix)]
    #[test]
    fn dev_null_is_special() {
        assert!(is_special(Path::new("/dev/null")));
        assert!(is_null_device(Path::new("/dev/null")));
        assert!(!is_special(Path::new("/")));
    }
}
