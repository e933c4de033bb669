//! The sandboxed parser as a program of its own, for embedders and the core's tests. The shells
//! run their own binary in parser mode instead (`doppel __doppel-parse ...`).

fn main() -> std::process::ExitCode {
    doppel_core::run_parser_child()
}
