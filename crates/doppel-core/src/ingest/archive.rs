//! Zip containers (DOCX, ODT, EPUB), opened with limits that stop zip bombs before inflating.
//!
//! Before anything is inflated, the central directory is checked: the number of entries, the
//! total declared uncompressed size, and the compression ratio of large entries. Declared sizes
//! can lie, so every read is also capped at what is left of the size budget. Entry names are
//! only ever keys to look up inside the archive, never paths on disk.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::error::{Error, Result};

/// Limits for opening an archive, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArchiveLimits {
    /// Total uncompressed bytes that may be read from one archive.
    pub max_bytes: u64,
    /// Most entries an archive may have.
    pub max_entries: u64,
    /// Highest compression ratio accepted for an entry larger than [`RATIO_FLOOR`].
    pub max_ratio: u64,
}

/// Entries smaller than this may have any ratio: small runs of repeated bytes compress very well
/// without being a threat.
const RATIO_FLOOR: u64 = 1024 * 1024;

pub(crate) struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    budget: u64,
}

fn refused(reason: String) -> Error {
    Error::ArchiveRefused { reason }
}

impl<'a> Archive<'a> {
    pub(crate) fn open(bytes: &'a [u8], limits: ArchiveLimits, what: &str) -> Result<Archive<'a>> {
        let mut zip = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| Error::Malformed { reason: format!("not a valid {what} (zip: {e})") })?;
        let entries = zip.len() as u64;
        if entries > limits.max_entries {
            return Err(refused(format!("{entries} entries (limit {})", limits.max_entries)));
        }
        let mut total = 0u64;
        for index in 0..zip.len() {
            let entry = zip.by_index_raw(index).map_err(|e| Error::Malformed {
                reason: format!("{what}: broken zip entry: {e}"),
            })?;
            let (size, packed) = (entry.size(), entry.compressed_size().max(1));
            total = total.saturating_add(size);
            if size > RATIO_FLOOR && size / packed > limits.max_ratio {
                return Err(refused(format!(
                    "an entry expands {}:1, beyond the limit of {}:1 (a zip bomb?)",
                    size / packed,
                    limits.max_ratio
                )));
            }
        }
        if total > limits.max_bytes {
            return Err(refused(format!(
                "it would expand to {} MB (limit {} MB)",
                total / (1024 * 1024),
                limits.max_bytes / (1024 * 1024)
            )));
        }
        Ok(Archive { zip, budget: limits.max_bytes })
    }

    /// Reads one entry as bytes; `None` if there is no such entry.
    pub(crate) fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let entry = match self.zip.by_name(name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(Error::Malformed { reason: format!("zip entry {name:?}: {e}") }),
        };
        let declared = entry.size();
        let cap = declared.min(self.budget);
        let mut bytes = Vec::with_capacity(cap.min(16 * 1024 * 1024) as usize);
        entry
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Malformed { reason: format!("zip entry {name:?}: {e}") })?;
        if bytes.len() as u64 > cap {
            return Err(refused(if cap < declared {
                "its entries expand beyond the size limit".to_string()
            } else {
                format!("entry {name:?} expands beyond its declared size (a zip bomb?)")
            }));
        }
        self.budget -= bytes.len() as u64;
        Ok(Some(bytes))
    }

    /// Reads one entry as UTF-8 text (invalid bytes replaced).
    pub(crate) fn read_text(&mut self, name: &str) -> Result<Option<String>> {
        Ok(self.read(name)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) const LIMITS: ArchiveLimits =
        ArchiveLimits { max_bytes: 64 * 1024 * 1024, max_entries: 1000, max_ratio: 100 };

    pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, data) in entries {
            out.start_file(*name, options).unwrap();
            out.write_all(data).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn entries_are_read_by_name() {
        let bytes = zip_of(&[("a/b.xml", b"<x/>"), ("../../evil", b"ignored")]);
        let mut archive = Archive::open(&bytes, LIMITS, "test").unwrap();
        assert_eq!(archive.read_text("a/b.xml").unwrap().as_deref(), Some("<x/>"));
        assert_eq!(archive.read("missing").unwrap(), None);
        // A hostile name is only a key: it can be looked up, and nothing is written anywhere.
        assert_eq!(archive.read_text("../../evil").unwrap().as_deref(), Some("ignored"));
    }

    #[test]
    fn bombs_are_refused_before_inflating() {
        let zeros = vec![0u8; 20 * 1024 * 1024];
        let bytes = zip_of(&[("word/document.xml", &zeros)]);
        let err = Archive::open(&bytes, LIMITS, "test").err().unwrap();
        assert_eq!(err.code(), "archive_refused");
        assert!(err.to_string().contains("beyond the limit of 100:1"), "{err}");
        let small = ArchiveLimits { max_bytes: 1024, ..LIMITS };
        let bytes = zip_of(&[("a", &[b'x'; 2000])]);
        let err = Archive::open(&bytes, small, "test").err().unwrap();
        assert!(err.to_string().contains("would expand to"), "{err}");
        let many: Vec<(String, Vec<u8>)> = (0..1001).map(|i| (format!("f{i}"), vec![])).collect();
        let refs: Vec<(&str, &[u8])> =
            many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let err = Archive::open(&zip_of(&refs), LIMITS, "test").err().unwrap();
        assert!(err.to_string().contains("1001 entries"), "{err}");
        assert_eq!(Archive::open(b"not a zip", LIMITS, "DOCX").err().unwrap().code(), "malformed");
    }
}
