//! The database is orgwarden's or untouched, its lock cannot be dodged through a symlink,
//! and files others can read are made private (the database) or warned about (the key file).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orgwarden::sim::{SimHandle, SimOptions, start_background};
use orgwarden::store::{APPLICATION_ID, Store};

/// A simulator and a temporary folder to run the binary in.
struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let org = crate::support::orgs::load(
            crate::support::orgs::THREE_PROJECTS,
            chrono::Utc::now().timestamp(),
        );
        Env {
            sim: start_background(org, SimOptions::default()).expect("simulator"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `orgwarden --db DB --base-url SIM ARGS` in the temp folder, no key set.
    fn command(&self, db: &Path, args: &[&str]) -> Command {
        let mut cmd = crate::support::orgwarden();
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--db")
            .arg(db)
            .arg("--base-url")
            .arg(self.sim.base_url())
            .args(args);
        cmd
    }

    /// `orgwarden snapshot` into `db` with the key in the environment.
    fn snapshot(&self, db: &Path) -> Output {
        self.command(db, &["snapshot"])
            .env("OPENAI_ADMIN_KEY", "sk-admin-test")
            .output()
            .expect("run orgwarden")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn application_id(path: &Path) -> i32 {
    rusqlite::Connection::open(path)
        .expect("open")
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .expect("application_id")
}

#[test]
fn another_applications_database_is_refused_and_left_byte_for_byte_untouched() {
    let env = Env::new();
    let unmarked = env.path("other.db");
    let conn = rusqlite::Connection::open(&unmarked).expect("create");
    conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('mine');")
        .expect("fill");
    drop(conn);
    let marked = env.path("fossil.db");
    let conn = rusqlite::Connection::open(&marked).expect("create");
    conn.execute_batch("PRAGMA application_id = 252006673; CREATE TABLE blob (rid INTEGER);")
        .expect("fill");
    drop(conn);
    let text = env.path("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, but someone's notes\n".repeat(50),
    )
    .expect("write");

    for (file, reason) in [
        (&unmarked, "tables orgwarden did not create"),
        (&marked, "application_id 0x0f055111"),
        (&text, "not a SQLite database"),
    ] {
        let before = std::fs::read(file).expect("read");
        let out = env.snapshot(file);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", file.display());
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("not an orgwarden database"), "{err}");
        assert!(err.contains(reason), "{err}");
        // Short: one line, not a migration script.
        assert!(err.lines().count() <= 2, "{err}");
        let query = env
            .command(file, &["query", "SELECT 1"])
            .output()
            .expect("query");
        assert_eq!(query.status.code(), Some(2), "{}", stderr(&query));
        assert_eq!(
            std::fs::read(file).expect("read"),
            before,
            "{} changed",
            file.display()
        );
        for suffix in ["-wal", "-shm", ".lock"] {
            assert!(!PathBuf::from(format!("{}{suffix}", file.display())).exists());
        }
    }
}

#[test]
fn an_orgwarden_database_from_before_the_application_id_is_adopted() {
    let env = Env::new();
    let db = env.path("old.db");
    drop(Store::open(&db).expect("create"));
    assert_eq!(application_id(&db), APPLICATION_ID);
    // As an orgwarden from before this change left it.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.pragma_update(None, "application_id", 0)
        .expect("unmark");
    drop(conn);
    assert_eq!(application_id(&db), 0);

    let read = env
        .command(&db, &["query", "SELECT count(*) FROM snapshots"])
        .output()
        .expect("query");
    assert_eq!(read.status.code(), Some(0), "{}", stderr(&read));
    let out = env.snapshot(&db);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(application_id(&db), APPLICATION_ID);
}

#[test]
fn a_second_writer_through_a_symlink_is_refused() {
    let env = Env::new();
    let db = env.path("orgwarden.db");
    let alias = env.path("alias.db");
    drop(Store::open(&db).expect("create"));
    std::os::unix::fs::symlink(&db, &alias).expect("symlink");
    let held = Store::lock_writer(&db).expect("first writer");
    let out = env.snapshot(&alias);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is locked"), "{err}");
    // A folder alias and a database not created yet: still the one lock.
    std::os::unix::fs::symlink(env.dir.path(), env.path("folder")).expect("symlink");
    let fresh = env.path("fresh.db");
    let _fresh = Store::lock_writer(&fresh).expect("writer");
    let err = Store::lock_writer(&env.path("folder/fresh.db")).expect_err("alias");
    assert!(err.to_string().contains("is locked"), "{err}");
    drop(held);
    let out = env.snapshot(&alias);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_new_database_and_its_companions_are_private() {
    let env = Env::new();
    let db = env.path("orgwarden.db");
    let out = env.snapshot(&db);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("readable by others"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm", ".lock"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
}

#[test]
fn a_database_readable_by_others_is_made_private_with_one_warning() {
    let env = Env::new();
    let db = env.path("orgwarden.db");
    drop(Store::open(&db).expect("create"));
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = env.snapshot(&db);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("readable by others").count(), 1, "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    assert_eq!(mode(&db), 0o600);
    let again = env.snapshot(&db);
    assert!(
        !stderr(&again).contains("readable by others"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn an_admin_key_file_readable_by_others_is_used_and_warned_about_once_with_the_fix() {
    let env = Env::new();
    let key = env.path("admin key");
    std::fs::write(&key, "sk-admin-from-file\n").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = env.path("orgwarden.toml");
    std::fs::write(&config, "[openai]\nadmin_key_file = \"admin key\"\n").expect("config");
    let run = || {
        env.command(&env.path("o.db"), &["snapshot"])
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run orgwarden")
    };
    let out = run();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("readable by others").count(), 1, "{err}");
    assert!(
        err.contains(&format!("chmod 600 '{}'", key.display())),
        "{err}"
    );
    // Not changed behind the operator's back: only the database is tightened by itself.
    assert_eq!(mode(&key), 0o644);

    // Private, or shared with its group on purpose (a Kubernetes secret mounted 0440 for
    // the pod's group): nothing to say.
    for private in [0o600, 0o440, 0o640] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(private)).expect("chmod");
        let out = run();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains("readable by others"),
            "{private:o}: {}",
            stderr(&out)
        );
    }
}
