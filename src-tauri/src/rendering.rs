//! How the window draws: with WebKit's accelerated compositing where a GPU can do it, without
//! it where none can. Decided once, first thing in `main`, because WebKitGTK reads the choice
//! from its environment when it starts the page's process.
//!
//! With no GPU, Mesa composites on the CPU (llvmpipe), which costs both: on two cores with
//! 50,000 sources the list scrolled at 32 frames a second and the page's process held 208 MB
//! before a single source was shown; drawn without compositing, 75 frames a second and 115 MB
//! (BENCHMARKS.md, "Desktop responsiveness", 50,000 sources). A GPU is taken to be there when
//! the kernel offers a DRM render node. A user's own `WEBKIT_DISABLE_COMPOSITING_MODE` is left
//! as it is, either way.

use std::ffi::OsStr;
use std::path::Path;

/// WebKitGTK's switch: set to anything but "0", the page is drawn without compositing.
const SWITCH: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// How the window draws, as the About card says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// WebKit composites on the GPU.
    Composited,
    /// No GPU: drawn without compositing.
    WithoutGpu,
    /// The user's environment set WebKit's switch; left as set.
    AsSet,
}

impl Rendering {
    /// What the About card shows.
    pub fn describe(self) -> &'static str {
        match self {
            Rendering::Composited => "composited on the GPU",
            Rendering::WithoutGpu => "without compositing (no GPU found)",
            Rendering::AsSet => "as WEBKIT_DISABLE_COMPOSITING_MODE says",
        }
    }
}

/// The choice for a machine where WebKit's switch is `set` (or not), Mesa is told to render in
/// software or not, and a GPU render node exists or not.
fn choose(set: Option<&OsStr>, software_gl: bool, render_node: bool) -> Rendering {
    if set.is_some() {
        Rendering::AsSet
    } else if software_gl || !render_node {
        Rendering::WithoutGpu
    } else {
        Rendering::Composited
    }
}

/// Whether `dir` (normally /dev/dri) holds a DRM render node.
fn has_render_node(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}

/// Chooses how the window draws and tells WebKit. Must run before any other thread starts.
pub fn choose_for_this_machine() -> Rendering {
    if !cfg!(target_os = "linux") {
        return Rendering::Composited;
    }
    let software_gl = std::env::var("LIBGL_ALWAYS_SOFTWARE")
        .is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    let chosen = choose(
        std::env::var_os(SWITCH).as_deref(),
        software_gl,
        has_render_node(Path::new("/dev/dri")),
    );
    if chosen == Rendering::WithoutGpu {
        // SAFETY: changing the environment races only with another thread reading or writing
        // it; this runs first in `main`, before Tauri, GTK or the core has started any thread.
        unsafe { std::env::set_var(SWITCH, "1") };
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_a_gpu_draws_without_compositing_and_one_with_a_gpu_composites() {
        assert_eq!(choose(None, false, false), Rendering::WithoutGpu);
        assert_eq!(
            choose(None, true, true),
            Rendering::WithoutGpu,
            "Mesa told to render in software"
        );
        assert_eq!(choose(None, false, true), Rendering::Composited);
    }

    #[test]
    fn the_users_own_switch_is_left_as_set() {
        for value in ["0", "1"] {
            assert_eq!(choose(Some(OsStr::new(value)), false, false), Rendering::AsSet);
            assert_eq!(choose(Some(OsStr::new(value)), false, true), Rendering::AsSet);
        }
    }

    #[test]
    fn a_render_node_is_found_among_the_drm_devices() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_render_node(dir.path()));
        assert!(!has_render_node(&dir.path().join("missing")));
        std::fs::write(dir.path().join("card0"), "").unwrap();
        assert!(!has_render_node(dir.path()), "a display card alone is not a render node");
        std::fs::write(dir.path().join("renderD128"), "").unwrap();
        assert!(has_render_node(dir.path()));
    }
}
