//! Tauri's build step: the configuration, the capabilities and the front end's files are
//! compiled into the binary (in this build script, so that a rebuilt `ui/dist` is picked up).

use std::path::Path;

/// Shown when the front end was not built: the shell still compiles, and says what to do.
const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Doppel</title>
<!-- doppel-placeholder: written by src-tauri/build.rs because ui/dist was missing.
     `npm ci && npm run build` in ui/ (or scripts/start) replaces it with the real front end. -->
<body style="font: 16px system-ui, sans-serif; margin: 3em">
<h1>Doppel</h1>
<p>The front end is not built yet: run <code>npm ci &amp;&amp; npm run build</code> in
<code>ui/</code>, then build the desktop shell again.</p>
</body>
</html>
"#;

fn main() {
    // `tauri.conf.json` embeds ../ui/dist, and the build fails if it is missing. The front end
    // is built separately (npm), so a checkout where it was not built yet gets a page that
    // says so; `npm run build` replaces it.
    let dist = Path::new("../ui/dist");
    if !dist.join("index.html").exists()
        && let Err(e) = std::fs::create_dir_all(dist)
            .and_then(|()| std::fs::write(dist.join("index.html"), PLACEHOLDER))
    {
        println!("cargo::warning=could not write a placeholder front end in ui/dist: {e}");
    }
    println!("cargo::rerun-if-changed=../ui/dist");
    let attributes = tauri_build::Attributes::new().codegen(tauri_build::CodegenContext::new());
    if let Err(e) = tauri_build::try_build(attributes) {
        println!("cargo::error=tauri-build failed: {e:#}");
    }
}
