//! One listing of an application's `blobs/` directory, made once at the
//! start of its load and shared by the read-ahead and the orphan check.
//!
//! Why: with a cold page cache, a load of many small applications is bound
//! by kernel work per file and per directory.
//! Listing each directory once instead of twice, and keeping the
//! directories open so that files are opened relative to them (one path
//! component to look up instead of the whole path), takes a share of it
//! away.
//!
//! Directories are opened with `O_DIRECTORY | O_NOFOLLOW`, so a `blobs` or
//! algorithm directory that is a symbolic link is never listed here. At
//! most [`MAX_KEPT`] entries are kept per directory. Whenever the listing is
//! not whole (no `blobs/`, a symbolic link, an unreadable directory, too
//! many entries), it says so ([`Listing::is_complete`]) and the orphan
//! check lists the directories itself, as it always did.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;

use crate::digest::Algorithm;

/// Entries kept per directory at most: enough for any real application,
/// few enough that the listings of all applications being loaded at once
/// stay small.
pub const MAX_KEPT: usize = 4096;

/// Buffer for `getdents64`: a directory of a few dozen blobs is read in
/// one call.
const DIRENT_BUFFER: usize = 32 << 10;

/// An application's directory and its `blobs/` directory, listed.
#[derive(Debug, Default)]
pub struct Listing {
    /// The application's directory, open (`None` if it could not be
    /// opened as a real directory).
    app: Option<OwnedFd>,
    /// False when the directories below were not all listed whole.
    complete: bool,
    /// Names of the entries of `blobs/` that are not a directory named
    /// after a known algorithm.
    strays: Vec<CString>,
    /// The algorithm directories in `blobs/`.
    algorithms: Vec<AlgorithmDir>,
}

/// A directory `blobs/<algorithm>/`, open, and its entries.
#[derive(Debug)]
pub struct AlgorithmDir {
    /// Which algorithm it is named after.
    pub algorithm: Algorithm,
    fd: OwnedFd,
    /// Its entries (not `.` and `..`), in directory order.
    pub entries: Vec<Entry>,
}

/// One entry of an algorithm directory.
#[derive(Debug)]
pub struct Entry {
    /// The file name.
    pub name: CString,
    /// Its inode number, from the directory entry.
    pub ino: u64,
    /// The entry says it is a regular file, or does not say (a file system
    /// that records no types): worth opening to read.
    pub maybe_regular: bool,
}

impl Entry {
    /// The file name as an `OsStr`.
    pub fn os_name(&self) -> &OsStr {
        OsStr::from_bytes(self.name.as_bytes())
    }
}

impl Listing {
    /// Opens the application at `dir` and lists its `blobs/` directory and
    /// the algorithm directories in it. Never fails: what could not be
    /// listed makes the listing incomplete.
    pub fn of(dir: &Path) -> Listing {
        let mut listing = Listing::default();
        let Ok(app) = open_dir(rustix::fs::CWD, dir) else {
            return listing;
        };
        listing.complete = listing.list_blobs(&app).is_some();
        listing.app = Some(app);
        listing
    }

    fn list_blobs(&mut self, app: &OwnedFd) -> Option<()> {
        let blobs = open_dir(app, "blobs").ok()?;
        let mut buf = Vec::with_capacity(DIRENT_BUFFER);
        let mut names = Vec::new();
        let mut whole = true;
        for_each_entry(&blobs, &mut buf, |name, _, _| {
            if names.len() == MAX_KEPT {
                whole = false;
                return false;
            }
            names.push(name.to_owned());
            true
        })
        .ok()?;
        for name in names {
            let algorithm = Algorithm::ALL
                .into_iter()
                .find(|a| a.as_str().as_bytes() == name.as_bytes());
            let Some(algorithm) = algorithm else {
                self.strays.push(name);
                continue;
            };
            let fd = match open_dir(&blobs, name.as_c_str()) {
                Ok(fd) => fd,
                // A file or a symbolic link by that name is not an
                // algorithm directory.
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    self.strays.push(name);
                    continue;
                }
                Err(_) => return None,
            };
            let mut entries = Vec::new();
            for_each_entry(&fd, &mut buf, |name, ino, file_type| {
                if entries.len() == MAX_KEPT {
                    whole = false;
                    return false;
                }
                entries.push(Entry {
                    name: name.to_owned(),
                    ino,
                    maybe_regular: matches!(file_type, FileType::RegularFile | FileType::Unknown),
                });
                true
            })
            .ok()?;
            self.algorithms.push(AlgorithmDir {
                algorithm,
                fd,
                entries,
            });
        }
        whole.then_some(())
    }

    /// True when `blobs/` and every algorithm directory in it were listed
    /// whole.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The application's directory, if it could be opened.
    pub fn app_dir(&self) -> Option<BorrowedFd<'_>> {
        self.app.as_ref().map(|fd| fd.as_fd())
    }

    /// Names in `blobs/` that are not an algorithm directory.
    pub fn strays(&self) -> impl Iterator<Item = &OsStr> {
        self.strays.iter().map(|n| OsStr::from_bytes(n.as_bytes()))
    }

    /// The algorithm directories, as listed.
    pub fn algorithms(&self) -> &[AlgorithmDir] {
        &self.algorithms
    }
}

impl AlgorithmDir {
    /// The open directory, for opening its files relative to it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens a directory without following a final symbolic link.
fn open_dir<P: rustix::path::Arg>(at: impl AsFd, path: P) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Calls `each` with the first `limit` entries of the directory at `path`
/// (following a symbolic link, as `read_dir` does), but `.` and `..`.
/// Entries seen before an error are passed on.
pub(crate) fn list_dir(
    path: &Path,
    limit: usize,
    mut each: impl FnMut(&CStr, u64, FileType),
) -> Result<(), Errno> {
    let dir = rustix::fs::openat(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut buf = Vec::with_capacity(DIRENT_BUFFER);
    let mut seen = 0;
    for_each_entry(&dir, &mut buf, |name, ino, file_type| {
        if seen == limit {
            return false;
        }
        seen += 1;
        each(name, ino, file_type);
        true
    })
}

/// Calls `each` with every entry of `dir` but `.` and `..`, until it
/// returns false.
fn for_each_entry(
    dir: &OwnedFd,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&CStr, u64, FileType) -> bool,
) -> Result<(), Errno> {
    let mut entries = RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if !each(name, entry.ino(), entry.file_type()) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(listing: &Listing) -> Vec<String> {
        let mut out: Vec<String> = listing
            .strays()
            .map(|n| format!("stray {}", n.to_string_lossy()))
            .collect();
        for alg in listing.algorithms() {
            for e in &alg.entries {
                out.push(format!(
                    "{}/{} {}",
                    alg.algorithm,
                    e.os_name().to_string_lossy(),
                    e.maybe_regular
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn lists_algorithm_directories_and_names_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(blobs.join("sha256/sub")).unwrap();
        std::fs::write(blobs.join("sha256/aa"), b"x").unwrap();
        std::fs::write(blobs.join("sha512"), b"a file, not a directory").unwrap();
        std::fs::create_dir(blobs.join("md5")).unwrap();
        let listing = Listing::of(dir.path());
        assert!(listing.is_complete());
        assert!(listing.app_dir().is_some());
        assert_eq!(
            names(&listing),
            [
                "sha256/aa true",
                "sha256/sub false",
                "stray md5",
                "stray sha512"
            ]
        );
    }

    #[test]
    fn symbolic_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(elsewhere.path().join("sha256")).unwrap();
        std::fs::write(elsewhere.path().join("sha256/secret"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        // An algorithm directory that is a link is a stray, not listed.
        std::os::unix::fs::symlink(
            elsewhere.path().join("sha256"),
            dir.path().join("blobs/sha256"),
        )
        .unwrap();
        let listing = Listing::of(dir.path());
        assert!(listing.is_complete());
        assert_eq!(names(&listing), ["stray sha256"]);
        // `blobs` itself a link: nothing listed, and the listing says so.
        std::fs::remove_dir_all(dir.path().join("blobs")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("blobs")).unwrap();
        let listing = Listing::of(dir.path());
        assert!(!listing.is_complete());
        assert!(names(&listing).is_empty());
    }

    #[test]
    fn missing_or_oversized_directories_make_the_listing_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Listing::of(dir.path()).is_complete(), "no blobs/");
        assert!(Listing::of(&dir.path().join("missing")).app_dir().is_none());
        let sha = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        for i in 0..=MAX_KEPT {
            std::fs::write(sha.join(format!("{i:x}")), b"").unwrap();
        }
        let listing = Listing::of(dir.path());
        assert!(!listing.is_complete());
        assert_eq!(listing.algorithms()[0].entries.len(), MAX_KEPT);
    }
}
