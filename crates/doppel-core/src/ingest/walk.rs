//! Expanding the paths a person drops or names into the files to ingest.
//!
//! Folders are walked recursively in name order, with an explicit stack (no recursion depth
//! limit to hit) and a set of visited folders (no symlink loop can trap it). Inside folders,
//! hidden entries and files whose extension says they are binary are reported as skipped, and so
//! are images while text recognition is off (a folder of documents holds many pictures without
//! text: they are not made to wait); paths named explicitly are always taken. Every problem is
//! reported for its one path; none stops the walk.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Format, binary_kind};
use crate::error::Error;

/// The outcome of a walk.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Files to ingest, absolute and canonical, each once, in walk order.
    pub files: Vec<PathBuf>,
    /// Paths that were not taken, each with its reason.
    pub skipped: Vec<Error>,
}

/// Walks `paths`; `images` says whether images inside folders are taken (text recognition on).
pub(crate) fn walk(paths: &[PathBuf], images: bool) -> Walked {
    let mut walked = Walked::default();
    let mut seen_files = HashSet::new();
    let mut seen_dirs = HashSet::new();
    for path in paths {
        let canonical = match path.canonicalize() {
            Ok(canonical) => canonical,
            Err(e) => {
                walked.skipped.push(link_error(path, e));
                continue;
            }
        };
        match std::fs::metadata(&canonical) {
            Ok(meta) if meta.is_dir() => {
                walk_dir(canonical, images, &mut seen_dirs, &mut seen_files, &mut walked)
            }
            Ok(meta) if meta.is_file() => {
                if seen_files.insert(canonical.clone()) {
                    walked.files.push(canonical);
                }
            }
            Ok(_) => walked.skipped.push(skipped(path, "not a regular file")),
            Err(e) => walked.skipped.push(Error::io(path, e)),
        }
    }
    walked
}

fn walk_dir(
    root: PathBuf,
    images: bool,
    seen_dirs: &mut HashSet<PathBuf>,
    seen_files: &mut HashSet<PathBuf>,
    walked: &mut Walked,
) {
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        if !seen_dirs.insert(dir.clone()) {
            continue;
        }
        let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.map_err(|e| walked.skipped.push(Error::io(&dir, e))).ok())
                .collect(),
            Err(e) => {
                walked.skipped.push(Error::io(&dir, e));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                walked.skipped.push(skipped(&path, "hidden"));
                continue;
            }
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            let target = if is_link {
                match path.canonicalize() {
                    Ok(target) => target,
                    Err(e) => {
                        walked.skipped.push(link_error(&path, e));
                        continue;
                    }
                }
            } else {
                path.clone()
            };
            match std::fs::metadata(&target) {
                Ok(meta) if meta.is_dir() => {
                    if is_link && dir.starts_with(&target) {
                        walked.skipped.push(skipped(&path, "symbolic link loop"));
                    } else if !seen_dirs.contains(&target) {
                        subdirs.push(target);
                    }
                }
                Ok(meta) if meta.is_file() => {
                    let ext = target
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    if let Some(kind) = binary_kind(&ext) {
                        walked.skipped.push(skipped(&path, &format!("unsupported format: {kind}")));
                    } else if !images && is_image(&ext) {
                        walked.skipped.push(skipped(&path, IMAGE_WAITS));
                    } else if seen_files.insert(target.clone()) {
                        walked.files.push(target);
                    }
                }
                Ok(_) => walked.skipped.push(skipped(&path, "not a regular file")),
                Err(e) => walked.skipped.push(Error::io(&path, e)),
            }
        }
        // Reversed so that the stack yields folders in name order.
        stack.extend(subdirs.into_iter().rev());
    }
}

/// Whether a walk of the folder `root` would take `path` below it: no name between `root` and
/// `path` is hidden, and a file's extension does not say it is binary. Used for single paths a
/// watched folder reports, so that they follow the same rules as a walk of the whole folder.
pub(crate) fn folder_takes(root: &Path, path: &Path, is_file: bool, images: bool) -> bool {
    let Ok(below) = path.strip_prefix(root) else { return false };
    if below.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')) {
        return false;
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    !is_file || (binary_kind(&ext).is_none() && (images || !is_image(&ext)))
}

/// Why an image in a folder is passed over while text recognition is off.
const IMAGE_WAITS: &str = "an image: text in images is read only with text recognition on (`doppel settings set ocr true`)";

fn is_image(ext: &str) -> bool {
    matches!(Format::from_path(Path::new(&format!("x.{ext}"))), Ok(Some(Format::Image(_))))
}

fn skipped(path: &Path, reason: &str) -> Error {
    Error::Skipped { path: path.to_path_buf(), reason: reason.to_string() }
}

fn link_error(path: &Path, e: std::io::Error) -> Error {
    let is_link = path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
    match (is_link, e.raw_os_error()) {
        (true, Some(libc::ELOOP)) => skipped(path, "symbolic link loop"),
        (true, _) if e.kind() == std::io::ErrorKind::NotFound => {
            skipped(path, "broken symbolic link")
        }
        _ => Error::io(path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn folders_are_walked_and_problems_reported_per_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/one.txt"), "one").unwrap();
        std::fs::write(root.join("a/b/two.md"), "two").unwrap();
        std::fs::write(root.join("a/.secret"), "hidden").unwrap();
        std::fs::write(root.join("a/photo.png"), "png").unwrap();
        symlink(root.join("a"), root.join("a/b/loop")).unwrap();
        symlink(root.join("a/b/self"), root.join("a/b/self")).unwrap();
        symlink(root.join("missing"), root.join("a/dangling")).unwrap();
        symlink(root.join("a/one.txt"), root.join("a/b/same.txt")).unwrap();

        std::fs::write(root.join("a/icon.xpm"), "xpm").unwrap();
        let paths = [root.join("a"), root.join("a/one.txt"), root.join("nope")];
        let with_images = walk(&paths, true);
        assert!(with_images.files.contains(&root.join("a/photo.png")));
        let walked = walk(&paths, false);
        assert_eq!(walked.files, vec![root.join("a/one.txt"), root.join("a/b/two.md")]);
        let reasons: Vec<String> = walked.skipped.iter().map(|e| e.to_string()).collect();
        let expect = [
            format!("{}: hidden", root.join("a/.secret").display()),
            format!("{}: broken symbolic link", root.join("a/dangling").display()),
            format!("{}: {IMAGE_WAITS}", root.join("a/photo.png").display()),
            format!(
                "{}: unsupported format: this image format is not read (PNG, JPEG, TIFF and WebP are)",
                root.join("a/icon.xpm").display()
            ),
            format!("{}: symbolic link loop", root.join("a/b/loop").display()),
            format!("{}: symbolic link loop", root.join("a/b/self").display()),
        ];
        for line in &expect {
            assert!(reasons.contains(line), "missing {line:?} in {reasons:#?}");
        }
        assert!(
            reasons.iter().any(|r| r.starts_with(&format!("{}:", root.join("nope").display())))
        );
        assert_eq!(reasons.len(), expect.len() + 1);
    }

    #[test]
    fn single_paths_follow_the_folder_rules() {
        let root = Path::new("/w");
        assert!(folder_takes(root, Path::new("/w/notes/a.md"), true, false));
        assert!(folder_takes(root, Path::new("/w/notes"), false, false));
        assert!(!folder_takes(root, Path::new("/w/.git/config"), true, false));
        assert!(!folder_takes(root, Path::new("/w/notes/.a.md.swp"), true, false));
        assert!(!folder_takes(root, Path::new("/w/photo.PNG"), true, false));
        assert!(folder_takes(root, Path::new("/w/photo.PNG"), true, true));
        assert!(!folder_takes(root, Path::new("/w/icon.xpm"), true, true));
        assert!(folder_takes(root, Path::new("/w/memo.mp3"), true, false));
        assert!(!folder_takes(root, Path::new("/elsewhere/a.md"), true, false));
    }
}
