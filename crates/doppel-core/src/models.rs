//! Where model files are found: one lookup order for every model the app runs locally.
//!
//! A model file is looked for, in this order, in
//! 1. the model cache named by `$DOPPEL_MODEL_CACHE`, when it is set (as `scripts/models`
//!    fills it, for development and tests);
//! 2. the user's model folder, `models/` in the data directory, where downloads, imports and
//!    `doppel models install-defaults` put them;
//! 3. the models bundled with the installed app: `models/` in the folder the shell names
//!    (Tauri's resource directory), else found relative to the running binary
//!    (`<bin>/../lib/Doppel/models`, as the `.deb` lays it out).
//!
//! Each file is taken from the first folder that has it whole (the embedding model and its
//! tokenizer from one folder together). This module never hard-codes a build path, and never
//! writes: writing is for the user's folder only, by the catalogue's installer and the
//! download code.

use std::path::{Path, PathBuf};

use crate::embed::ModelFiles;

/// The embedding model inside a model folder.
pub const EMBED_MODEL_FILE: &str = "minilm-int8/model.onnx";
/// Its tokenizer.
pub const EMBED_TOKENIZER_FILE: &str = "minilm-int8/tokenizer.json";
/// ONNX Runtime's shared library, which runs the embedding model.
pub const RUNTIME_FILE: &str = "onnxruntime/libonnxruntime.so";
/// The default chat model (SmolLM2-135M-Instruct, a tiny demo model).
pub const DEFAULT_CHAT_MODEL: &str = "smollm2/model.gguf";
/// The folder of a model folder that holds downloaded and imported chat models.
pub const CHAT_MODELS_DIR: &str = "chat";

/// The folder names an installed app's resources may be under, beside `bin/`: the bundler
/// names it after the product.
const BUNDLE_NAMES: [&str; 2] = ["Doppel", "doppel"];

/// Where a model folder comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOrigin {
    /// `$DOPPEL_MODEL_CACHE`.
    Cache,
    /// The user's own folder in the data directory.
    User,
    /// Installed with the app.
    Bundled,
}

impl ModelOrigin {
    /// A stable name for the shells (`cache`, `user`, `bundled`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelOrigin::Cache => "cache",
            ModelOrigin::User => "user",
            ModelOrigin::Bundled => "bundled",
        }
    }
}

/// One folder of the lookup order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// Where it comes from.
    pub origin: ModelOrigin,
    /// The folder.
    pub path: PathBuf,
}

/// The folders model files are looked for in, first to last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSearch {
    /// The folders, in lookup order; the user's folder is always among them.
    pub dirs: Vec<ModelDir>,
}

impl ModelSearch {
    /// The lookup order for a data directory: `cache` (from `$DOPPEL_MODEL_CACHE`), the data
    /// directory's `models/`, then `bundled`.
    pub fn new(cache: Option<PathBuf>, data_dir: &Path, bundled: Option<PathBuf>) -> ModelSearch {
        let mut dirs = Vec::with_capacity(3);
        if let Some(path) = cache {
            dirs.push(ModelDir { origin: ModelOrigin::Cache, path });
        }
        dirs.push(ModelDir { origin: ModelOrigin::User, path: data_dir.join(crate::MODELS_DIR) });
        if let Some(path) = bundled {
            dirs.push(ModelDir { origin: ModelOrigin::Bundled, path });
        }
        ModelSearch { dirs }
    }

    /// The user's folder: where downloads and imports go.
    pub fn user_dir(&self) -> &Path {
        self.dirs
            .iter()
            .find(|d| d.origin == ModelOrigin::User)
            .map(|d| d.path.as_path())
            .unwrap_or_else(|| Path::new(crate::MODELS_DIR))
    }

    /// The first folder that holds every one of `files` (relative paths), and its origin.
    pub fn find_all(&self, files: &[&str]) -> Option<&ModelDir> {
        self.dirs.iter().find(|d| files.iter().all(|f| d.path.join(f).is_file()))
    }

    /// The first copy of a model file (a relative path such as [`DEFAULT_CHAT_MODEL`]).
    pub fn find(&self, file: &str) -> Option<PathBuf> {
        self.find_all(&[file]).map(|d| d.path.join(file))
    }

    /// The local embedding model's files. Where a file is found nowhere, its path in the
    /// user's folder is given, so that the error on loading names where it belongs.
    pub fn embedder_files(&self) -> ModelFiles {
        let user = self.user_dir();
        let pair = self.find_all(&[EMBED_MODEL_FILE, EMBED_TOKENIZER_FILE]);
        let dir = pair.map_or(user, |d| d.path.as_path());
        ModelFiles {
            model: dir.join(EMBED_MODEL_FILE),
            tokenizer: dir.join(EMBED_TOKENIZER_FILE),
            runtime: self.find(RUNTIME_FILE).unwrap_or_else(|| user.join(RUNTIME_FILE)),
        }
    }

    /// The default chat model's file: the first copy, else where it would be in the user's
    /// folder.
    pub fn default_chat_model(&self) -> PathBuf {
        self.find(DEFAULT_CHAT_MODEL).unwrap_or_else(|| self.user_dir().join(DEFAULT_CHAT_MODEL))
    }

    /// Where downloaded and imported chat models are kept.
    pub fn chat_models_dir(&self) -> PathBuf {
        self.user_dir().join(CHAT_MODELS_DIR)
    }
}

/// Which model a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelPart {
    /// The local embedding model (search by meaning).
    Embedder,
    /// ONNX Runtime's library, which runs the embedding model.
    Runtime,
    /// The chat model (answers in the twin's words).
    Chat,
}

impl ModelPart {
    /// A stable name for the shells (`embedder`, `runtime`, `chat`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelPart::Embedder => "embedder",
            ModelPart::Runtime => "runtime",
            ModelPart::Chat => "chat",
        }
    }
}

/// A model that is chosen but cannot run, what that costs, and the fix in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProblem {
    /// The model concerned.
    pub part: ModelPart,
    /// What is wrong and what the user loses, as a sentence.
    pub problem: String,
    /// How to put it right, in one line.
    pub fix: String,
}

impl std::fmt::Display for ModelProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} Fix: {}", self.problem, self.fix)
    }
}

/// The fix for a missing default model file.
const INSTALL_FIX: &str = "run `doppel models install-defaults` (or reinstall the Doppel package)";

/// The problems of the local embedding model's files (`files` as the lookup found them).
pub(crate) fn embedder_problems(files: &ModelFiles) -> Vec<ModelProblem> {
    let mut problems = Vec::new();
    if !files.model.is_file() || !files.tokenizer.is_file() {
        problems.push(ModelProblem {
            part: ModelPart::Embedder,
            problem: "The embedding model (all-MiniLM-L6-v2) is not installed: search by meaning \
                      is off, and search and answers use keywords only."
                .into(),
            fix: INSTALL_FIX.into(),
        });
    }
    if !files.runtime.is_file() {
        problems.push(ModelProblem {
            part: ModelPart::Runtime,
            problem: "ONNX Runtime's library (libonnxruntime.so) is not installed: the embedding \
                      model cannot run, so search by meaning is off."
                .into(),
            fix: INSTALL_FIX.into(),
        });
    }
    problems
}

/// The problem of a local chat model's file, if it is missing (`default` says whether it is
/// the default model).
pub(crate) fn chat_problem(path: &Path, default: bool) -> Option<ModelProblem> {
    if path.is_file() {
        return None;
    }
    Some(if default {
        ModelProblem {
            part: ModelPart::Chat,
            problem: "The default chat model (SmolLM2-135M) is not installed: answers are made \
                      of the passages' own sentences instead."
                .into(),
            fix: "run `doppel models install-defaults`, or `doppel models get qwen2.5-1.5b` for a \
                  better model"
                .into(),
        }
    } else {
        ModelProblem {
            part: ModelPart::Chat,
            problem: format!(
                "The chosen chat model's file is missing ({}): answers are made of the \
                 passages' own sentences instead.",
                path.display()
            ),
            fix: "run `doppel models local` for the default model, or `doppel models get NAME`"
                .into(),
        }
    })
}

/// The bundled models of an app installed beside `exe`: `<exe>/../lib/Doppel/models` (or
/// `doppel`), when that folder exists.
pub fn bundled_models_near(exe: &Path) -> Option<PathBuf> {
    let prefix = exe.parent()?.parent()?;
    BUNDLE_NAMES
        .iter()
        .map(|name| prefix.join("lib").join(name).join(crate::MODELS_DIR))
        .find(|dir| dir.is_dir())
}

/// The bundled models of the running program, if it was installed with them.
pub fn bundled_models_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // An installed binary may be reached through a symlink (/usr/bin → /usr/lib/…).
    let exe = exe.canonicalize().unwrap_or(exe);
    bundled_models_near(&exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn each_file_comes_from_the_first_folder_that_has_it() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let data = root.path().join("data");
        let bundled = root.path().join("usr/lib/Doppel/models");
        let search = ModelSearch::new(Some(cache.clone()), &data, Some(bundled.clone()));

        // Nothing anywhere: paths in the user's folder, so that errors name where they belong.
        assert_eq!(search.embedder_files().model, data.join("models").join(EMBED_MODEL_FILE));
        assert_eq!(search.default_chat_model(), data.join("models").join(DEFAULT_CHAT_MODEL));

        // Bundled only: found there.
        for f in [EMBED_MODEL_FILE, EMBED_TOKENIZER_FILE, RUNTIME_FILE, DEFAULT_CHAT_MODEL] {
            touch(&bundled.join(f));
        }
        assert_eq!(search.embedder_files().runtime, bundled.join(RUNTIME_FILE));
        assert_eq!(search.default_chat_model(), bundled.join(DEFAULT_CHAT_MODEL));

        // The user's copy wins over the bundled one, and the cache over both.
        touch(&data.join("models").join(DEFAULT_CHAT_MODEL));
        assert_eq!(search.default_chat_model(), data.join("models").join(DEFAULT_CHAT_MODEL));
        touch(&cache.join(DEFAULT_CHAT_MODEL));
        assert_eq!(search.default_chat_model(), cache.join(DEFAULT_CHAT_MODEL));

        // A model without its tokenizer is not taken: the pair comes from one folder.
        touch(&cache.join(EMBED_MODEL_FILE));
        assert_eq!(search.embedder_files().model, bundled.join(EMBED_MODEL_FILE));
        assert_eq!(search.embedder_files().tokenizer, bundled.join(EMBED_TOKENIZER_FILE));

        // Downloads always go to the user's folder.
        assert_eq!(search.chat_models_dir(), data.join("models/chat"));
    }

    #[test]
    fn bundled_models_are_found_beside_the_installed_binary_only() {
        let root = tempfile::tempdir().unwrap();
        let exe = root.path().join("usr/bin/doppel");
        touch(&exe);
        assert_eq!(bundled_models_near(&exe), None);
        std::fs::create_dir_all(root.path().join("usr/lib/Doppel/models")).unwrap();
        assert_eq!(bundled_models_near(&exe), Some(root.path().join("usr/lib/Doppel/models")));
    }
}
