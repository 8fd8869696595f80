//! The `orgwarden` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    orgwarden::cli::main()
}
