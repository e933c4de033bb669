//! The model catalogue (`data/catalogue.json`, a data file, not code): the default models'
//! files with their checksums, a short list of better chat models to download, and embedding
//! models for other languages. Also the installer of the default models into the user's model
//! folder (`doppel models install-defaults`), for a build from source that has no package.
//!
//! Installing never writes outside the user's model folder, never replaces a file with one that
//! failed its checksum, and resumes what an interrupted download left (the download code's
//! `.part` files).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Deserialize;

use crate::download::{DownloadProgress, DownloadRequest, copy_checked, download, file_sha256};
use crate::error::{Error, Result};
use crate::models::ModelSearch;

/// The catalogue that comes with this build.
const BUILT_IN: &str = include_str!("../data/catalogue.json");
/// The catalogue format this build reads.
const FORMAT: u32 = 1;

/// The model catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Catalogue {
    /// The default models' files, installed with the app.
    pub defaults: Vec<DefaultFile>,
    /// Chat models to download, smallest first.
    pub chat: Vec<CatalogueModel>,
    /// Embedding models, the built-in one first.
    pub embedding: Vec<EmbeddingModel>,
}

/// One file of the default models.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DefaultFile {
    /// Its path inside a model folder, such as `minilm-int8/model.onnx`.
    pub file: String,
    /// What it is.
    pub name: String,
    /// Its licence.
    pub licence: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// Where it can be downloaded from on its own, when such a place is known.
    pub url: Option<String>,
}

/// A chat model of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CatalogueModel {
    /// Its short name, for `doppel models get NAME`.
    pub name: String,
    /// Its full name.
    pub title: String,
    /// Its number of parameters, as people say it ("1.5B").
    pub parameters: String,
    /// The quantisation of the file ("Q4_K_M").
    pub quantisation: String,
    /// The download's size in bytes.
    pub size: u64,
    /// Memory needed to run it, in bytes (roughly).
    pub memory: u64,
    /// Its licence.
    pub licence: String,
    /// The GGUF file's URL.
    pub url: String,
    /// Its SHA-256, when known.
    pub sha256: Option<String>,
    /// One line on what it is good for.
    pub good_for: String,
    /// A tiny model that only shows that things work.
    pub demo: bool,
}

/// An embedding model the catalogue recommends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EmbeddingModel {
    /// Its short name.
    pub name: String,
    /// What runs it: `built in` or `ollama`.
    pub server: String,
    /// The model's name for that server.
    pub model: String,
    /// The languages it reads.
    pub languages: String,
    /// One line on what it is good for, and how to use it.
    pub good_for: String,
}

#[derive(Deserialize)]
struct Versioned {
    format: u32,
}

impl Catalogue {
    /// The catalogue that comes with this build.
    pub fn built_in() -> Catalogue {
        // The file is part of the build and checked by a test, so it always parses; a broken
        // edit fails `built_in_catalogue_is_complete` rather than a user.
        Catalogue::parse(BUILT_IN).unwrap_or(Catalogue {
            defaults: Vec::new(),
            chat: Vec::new(),
            embedding: Vec::new(),
        })
    }

    /// Reads a catalogue file (another catalogue can be given, for a mirror).
    pub fn load(path: &Path) -> Result<Catalogue> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Catalogue::parse(&text).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))
    }

    /// Parses a catalogue's text.
    pub fn parse(text: &str) -> Result<Catalogue> {
        let bad = |e: serde_json::Error| Error::InvalidInput(format!("not a model catalogue: {e}"));
        let Versioned { format } = serde_json::from_str(text).map_err(bad)?;
        if format != FORMAT {
            return Err(Error::InvalidInput(format!(
                "a model catalogue of format {format}; this Doppel reads format {FORMAT}"
            )));
        }
        serde_json::from_str(text).map_err(bad)
    }

    /// The chat model called `name`.
    pub fn chat_model(&self, name: &str) -> Result<&CatalogueModel> {
        self.chat.iter().find(|m| m.name.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
            let names: Vec<&str> = self.chat.iter().map(|m| m.name.as_str()).collect();
            Error::NotFound {
                what: "catalogue model",
                id: format!("{name} (one of: {})", names.join(", ")),
            }
        })
    }
}

/// Where `install-defaults` takes the files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultsSource {
    /// Each file's own URL in the catalogue.
    Catalogue,
    /// A folder laid out as a model folder (as `scripts/models` fills one).
    Dir(PathBuf),
    /// A server that serves each file under its path (`<base>/minilm-int8/model.onnx`).
    BaseUrl(String),
}

impl DefaultsSource {
    /// `--from`: an http(s) URL, or a folder.
    pub fn parse(from: Option<&str>) -> Result<DefaultsSource> {
        let Some(from) = from.map(str::trim).filter(|f| !f.is_empty()) else {
            return Ok(DefaultsSource::Catalogue);
        };
        if from.starts_with("http://") || from.starts_with("https://") {
            let url = crate::fetch::check_url(from)?;
            return Ok(DefaultsSource::BaseUrl(url.trim_end_matches('/').to_string()));
        }
        let dir = PathBuf::from(from);
        if !dir.is_dir() {
            return Err(Error::InvalidInput(format!(
                "{from}: neither an http(s) URL nor a folder"
            )));
        }
        Ok(DefaultsSource::Dir(dir))
    }
}

/// Progress of `install-defaults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallProgress {
    /// The file being installed (1-based) and how many there are.
    pub index: usize,
    /// How many files there are.
    pub count: usize,
    /// The file, as in the catalogue.
    pub file: String,
    /// Bytes so far of this file.
    pub transfer: DownloadProgress,
}

/// What `install-defaults` did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledFile {
    /// The file, as in the catalogue.
    pub file: String,
    /// Where it is now.
    pub path: PathBuf,
    /// Whether it was already there (checked by its SHA-256), so that nothing was fetched.
    pub already_there: bool,
}

/// Installs the default models' files into the user's model folder, each checked by SHA-256.
/// A file already found (anywhere in the lookup order) with the right checksum is left alone.
/// Stops at the first file that cannot be had, with its reason; the files before it stay.
pub fn install_defaults(
    catalogue: &Catalogue,
    search: &ModelSearch,
    source: &DefaultsSource,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&InstallProgress),
) -> Result<Vec<InstalledFile>> {
    let count = catalogue.defaults.len();
    let mut done = Vec::with_capacity(count);
    for (i, entry) in catalogue.defaults.iter().enumerate() {
        let mut report = |transfer: &DownloadProgress| {
            progress(&InstallProgress {
                index: i + 1,
                count,
                file: entry.file.clone(),
                transfer: *transfer,
            })
        };
        if let Some(found) = search.find(&entry.file)
            && file_sha256(&found)? == entry.sha256
        {
            report(&DownloadProgress {
                done: entry.size,
                total: Some(entry.size),
                resumed_from: 0,
            });
            done.push(InstalledFile { file: entry.file.clone(), path: found, already_there: true });
            continue;
        }
        let dest = search.user_dir().join(&entry.file);
        let path = match source {
            DefaultsSource::Dir(dir) => {
                copy_checked(&dir.join(&entry.file), &dest, &entry.sha256, cancel, &mut report)?
            }
            DefaultsSource::BaseUrl(base) => {
                fetch_to(&format!("{base}/{}", entry.file), entry, &dest, cancel, &mut report)?
            }
            DefaultsSource::Catalogue => {
                let url = entry.url.as_deref().ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "no download address is known for {} ({}): install the package, or \
                         pass --from with a folder or server that has it",
                        entry.name, entry.file
                    ))
                })?;
                fetch_to(url, entry, &dest, cancel, &mut report)?
            }
        };
        tracing::info!(file = %entry.file, "default model file installed");
        done.push(InstalledFile { file: entry.file.clone(), path, already_there: false });
    }
    Ok(done)
}

fn fetch_to(
    url: &str,
    entry: &DefaultFile,
    dest: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<PathBuf> {
    let request = DownloadRequest {
        url: url.to_string(),
        sha256: Some(entry.sha256.clone()),
        dest: dest.to_path_buf(),
    };
    download(&request, Default::default(), cancel, progress)
}

/// The file name a catalogue model is stored under: the last part of its URL's path.
pub fn file_name_of(model: &CatalogueModel) -> Result<String> {
    let name = crate::download::gguf_name_of_url(&model.url).ok_or_else(|| {
        Error::InvalidInput(format!("{}: its URL does not end in a .gguf file name", model.name))
    })?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_catalogue_is_complete() {
        let catalogue = Catalogue::parse(BUILT_IN).unwrap();
        let files: Vec<&str> = catalogue.defaults.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(
            files,
            [
                crate::models::EMBED_MODEL_FILE,
                crate::models::EMBED_TOKENIZER_FILE,
                crate::models::RUNTIME_FILE,
                crate::models::DEFAULT_CHAT_MODEL
            ]
        );
        for d in &catalogue.defaults {
            assert_eq!(d.sha256.len(), 64, "{}", d.file);
        }
        // The default chat model is in the list, marked as a demo; the others are not.
        let demo: Vec<&str> =
            catalogue.chat.iter().filter(|m| m.demo).map(|m| m.name.as_str()).collect();
        assert_eq!(demo, ["smollm2-135m"]);
        assert!(catalogue.chat.len() >= 5);
        for m in &catalogue.chat {
            assert!(file_name_of(m).is_ok(), "{}", m.name);
            assert!(m.url.starts_with("https://"), "{}", m.name);
            assert!(m.size > 0 && m.memory > m.size / 2, "{}", m.name);
            assert!(!m.good_for.is_empty() && !m.licence.is_empty(), "{}", m.name);
        }
        // The built-in embedding model says it reads English only; others are recommended.
        assert_eq!(catalogue.embedding[0].languages, "English only");
        assert!(catalogue.embedding.iter().any(|e| e.model == "bge-m3"));
        assert_eq!(catalogue.chat_model("QWEN2.5-1.5b").unwrap().parameters, "1.5B");
        assert!(catalogue.chat_model("gpt-9").unwrap_err().to_string().contains("qwen2.5-3b"));
    }

    #[test]
    fn another_format_is_refused_by_name() {
        let e = Catalogue::parse(r#"{"format": 2, "defaults": [], "chat": [], "embedding": []}"#)
            .unwrap_err();
        assert!(e.to_string().contains("format 2"), "{e}");
        assert!(Catalogue::parse("[1, 2]").unwrap_err().to_string().contains("not a model"));
    }
}
