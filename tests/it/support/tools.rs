//! Programs some tests run that are not Rust crates: each is looked up once, and a missing
//! one fails its test with one line that names it and says how to install it.

use std::path::PathBuf;

/// A program from outside Rust that a test needs.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    /// Prometheus's linter, for `/metrics`.
    Promtool,
    /// Headless Chromium, to render the HTML digest.
    Chromium,
    /// `systemd-analyze verify`, for the unit file.
    SystemdAnalyze,
    /// util-linux's `setpriv`, to run the binary as an unprivileged user when tests run as
    /// root (root writes through any permission).
    Setpriv,
    /// GNU time (`/usr/bin/time -v`), for a command's peak memory.
    GnuTime,
    /// util-linux's `script`, to give the binary a terminal for its output.
    Script,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Promtool => "promtool",
            Tool::Chromium => "chromium",
            Tool::SystemdAnalyze => "systemd-analyze",
            Tool::Setpriv => "setpriv",
            Tool::GnuTime => "time",
            Tool::Script => "script",
        }
    }

    fn install(self) -> &'static str {
        match self {
            Tool::Promtool => "apt-get install prometheus",
            Tool::Chromium => "apt-get install chromium",
            Tool::SystemdAnalyze => "apt-get install systemd",
            Tool::Setpriv => "apt-get install util-linux",
            Tool::GnuTime => "apt-get install time",
            Tool::Script => "apt-get install bsdutils",
        }
    }

    /// The program's path; panics with one line naming it and its install command when
    /// it is not on PATH (`scripts/test.sh` installs every tool).
    pub fn require(self) -> PathBuf {
        find_on_path(self.program()).unwrap_or_else(|| {
            panic!(
                "{} is not installed: run `scripts/test.sh`, or `{}`",
                self.program(),
                self.install()
            )
        })
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The Python interpreter that has the test packages (`openai`, `aiosmtpd`): the virtual
/// environment `scripts/test.sh` makes (it exports `ORGWARDEN_TEST_PYTHON`), else
/// `target/test-venv` when present, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ORGWARDEN_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

/// The port a test helper script (`tests/it/python/*.py`) listens on, read from the
/// `listening on PORT` line it prints first; panics naming `script` if it prints anything
/// else.
pub fn listening_port(child: &mut std::process::Child, script: &str) -> u16 {
    use std::io::BufRead as _;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("the helper's stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} did not start: {line:?}"))
}

/// Panics with one line naming the missing Python package and how to install it, unless
/// [`python`] can import `module`.
pub fn require_python_module(module: &str, package: &str) {
    let python = python();
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the Python package {package} is not installed for {}: run `scripts/test.sh`, or \
         `{} -m pip install '{package}'`",
        python.display(),
        python.display()
    );
}
