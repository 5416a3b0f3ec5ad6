//! The `ftpdlib` command: a thin wrapper over [`ftpdlib::cli::main`].

fn main() -> std::process::ExitCode {
    ftpdlib::cli::main()
}
