//! `doppel-desktop`: Doppel's desktop window, a thin Tauri shell over doppel-core.
//!
//! It opens the core on the data directory the CLI uses (`$DOPPEL_DATA_DIR`, else the
//! platform's), maps the commands of docs/ipc.md to core calls (`commands`), converts core
//! types by hand (`dto`), rejects with one `{code, message}` shape (`error`) and forwards the
//! core's events to the window (`events`). It holds no logic of its own: anything a command
//! would have to decide belongs in doppel-core.

mod commands;
mod diagnostics;
mod dto;
mod error;
mod events;
mod overview;
mod portable;
mod recognition;
mod rendering;
mod servers;
mod state;

use std::process::ExitCode;

use tauri::{Manager, RunEvent, WindowEvent};

use crate::state::Shell;

/// Lists the commands once, for Tauri's handler and for the test that checks them against
/// docs/ipc.md.
macro_rules! commands {
    ($($name:ident),* $(,)?) => {
        /// Every command the window may invoke, by name.
        #[cfg(test)]
        const COMMANDS: &[&str] = &[$(stringify!($name)),*];

        fn handler() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
            tauri::generate_handler![$(commands::$name),*]
        }
    };
}

commands![
    app_info,
    twins,
    create_twin,
    rename_twin,
    sources,
    source_detail,
    ingest_paths,
    add_text,
    add_url,
    delete_source,
    reingest_source,
    jobs,
    cancel_job,
    search,
    settings,
    set_setting,
    embedder,
    set_embedder,
    set_embedder_key,
    delete_embedder_key,
    chat_model,
    set_chat_model,
    set_chat_key,
    delete_chat_key,
    chat_models,
    ocr_status,
    transcriber,
    set_transcriber,
    set_transcriber_key,
    delete_transcriber_key,
    reranker,
    set_reranker,
    set_reranker_key,
    delete_reranker_key,
    open_source,
    answer_mode,
    set_answer_mode,
    download_chat_model,
    cancel_download,
    import_chat_model,
    model_status,
    catalogue,
    get_catalogue_model,
    conversations,
    messages,
    ask,
    cancel_ask,
    export_conversation,
    conversation_markdown,
    verify_message,
    verified_answers,
    delete_verified,
    persona,
    set_persona,
    watched_folders,
    watch_folder,
    unwatch_folder,
    ping,
    sources_changed,
    source_page,
    coverage,
    why_not_found,
    find,
    queue_progress,
    pause_queue,
    resume_queue,
    notify,
    backup,
    cancel_backup,
    restore,
    export_twin,
    api_status,
    set_api,
    api_tokens,
    create_api_token,
    revoke_api_token,
    stats,
    diagnostic_report,
];

fn main() -> ExitCode {
    // The sandboxed parser for complex formats is this same binary in a hidden mode.
    if std::env::args_os().nth(1).is_some_and(|a| a == doppel_core::PARSER_ARG) {
        return doppel_core::run_parser_child();
    }
    // First of all, while this is the only thread: WebKit reads it from the environment.
    let rendering = rendering::choose_for_this_machine();
    let shell = Shell::default();
    let app = tauri::Builder::default()
        // First: a second launch only focuses the running window (and then exits).
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.set_focus();
            }
        }))
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_opener::init())
        .manage(shell.clone())
        .manage(rendering)
        .setup(|app| {
            app.state::<Shell>().open_in_background(app.handle().clone());
            Ok(())
        })
        .on_window_event(|window, event| {
            // A closed window cannot read an answer any more: stop generating.
            if let WindowEvent::Destroyed = event {
                window.state::<Shell>().cancel_all_asks();
            }
        })
        .invoke_handler(handler())
        .build(tauri::tauri_build_context!());
    match app {
        Ok(app) => {
            app.run(move |_, event| {
                if let RunEvent::Exit = event {
                    shell.close();
                }
            });
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the window could not be opened: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::COMMANDS;

    /// The commands in the table of docs/ipc.md, in order.
    fn documented_commands() -> Vec<String> {
        let doc = include_str!("../../docs/ipc.md");
        let table = doc.split("## Commands").nth(1).unwrap().split("\n## ").next().unwrap();
        table
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_command_of_the_contract_is_registered_and_no_other() {
        let documented = documented_commands();
        assert!(documented.len() > 40, "the table was not read: {documented:?}");
        assert_eq!(COMMANDS, documented.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
