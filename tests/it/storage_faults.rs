//! Storage that misbehaves under the database: a full file system, another process's lock,
//! a damaged file. Each run refuses or fails with the database's path and what is wrong in
//! plain words, leaves what was stored as it was, and the next run, once the fault is gone,
//! carries on.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn demo(dir: &Path, db: &Path, outbox: &Path) -> Output {
    crate::support::orgwarden()
        .arg("--db")
        .arg(db)
        .args(["-q", "demo", "--format", "json", "--outbox"])
        .arg(outbox)
        .current_dir(dir)
        .output()
        .expect("runs")
}

/// A 16 MiB tmpfs mounted on a fresh folder, unmounted when dropped; `None` where this
/// process may not mount (not root, or in a container without CAP_SYS_ADMIN): a full
/// file system cannot be made without one.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount() -> Option<SmallFs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|out| out.status.success());
        mounted.then_some(SmallFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `filler` until the file system refuses: it is then full.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0_u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // Whatever is smaller than a chunk.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}

fn snapshots_and_open_findings(db: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).expect("open");
    let snapshots = conn
        .query_row("SELECT count(*) FROM snapshot", [], |row| row.get(0))
        .expect("snapshots");
    let open = conn
        .query_row(
            "SELECT count(*) FROM finding WHERE status = 'open'",
            [],
            |row| row.get(0),
        )
        .expect("findings");
    (snapshots, open)
}

#[test]
fn a_full_disk_fails_the_run_naming_the_database_and_the_next_run_carries_on() {
    let Some(fs) = SmallFs::mount() else {
        eprintln!("skipped: this process cannot mount a tmpfs to fill");
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let db = fs.path().join("orgwarden.db");
    let outbox = fs.path().join("outbox");
    let first = demo(work.path(), &db, &outbox);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let before = snapshots_and_open_findings(&db);

    let filler = fs.fill();
    let full = demo(work.path(), &db, &outbox);
    let stderr = text(&full.stderr);
    assert_eq!(full.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no space left on the file system holding the database {}",
            db.display()
        )),
        "{stderr}"
    );

    std::fs::remove_file(filler).expect("free the space");
    assert_eq!(integrity(&db), "ok");
    assert_eq!(snapshots_and_open_findings(&db), before, "nothing changed");
    let again = demo(work.path(), &db, &outbox);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(snapshots_and_open_findings(&db).0, before.0 + 1);
}

#[test]
fn a_database_missing_a_table_is_refused_by_name_before_anything_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("orgwarden.db");
    let outbox = dir.path().join("outbox");
    let first = demo(dir.path(), &db, &outbox);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    rusqlite::Connection::open(&db)
        .expect("open")
        .execute_batch("PRAGMA foreign_keys = OFF; DROP TABLE finding;")
        .expect("drop");
    let expected = format!(
        "the database {} is damaged: it has schema version",
        db.display()
    );
    let again = demo(dir.path(), &db, &outbox);
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("no table finding"), "{stderr}");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let snapshots: i64 = conn
        .query_row("SELECT count(*) FROM snapshot", [], |row| row.get(0))
        .expect("snapshots");
    assert_eq!(snapshots, 1, "no snapshot stored into a damaged database");
    for command in [&["findings"][..], &["snapshots"], &["query", "SELECT 1"]] {
        let out = crate::support::orgwarden()
            .arg("--db")
            .arg(&db)
            .args(command)
            .current_dir(dir.path())
            .output()
            .expect("runs");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains(&expected), "{command:?}: {stderr}");
    }
}

#[test]
fn a_damaged_file_and_a_lock_held_too_long_are_named_in_plain_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("orgwarden.db");
    let outbox = dir.path().join("outbox");
    let first = demo(dir.path(), &db, &outbox);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    // Another process's write transaction, held past the busy timeout (10 s).
    let holder = rusqlite::Connection::open(&db).expect("open");
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let busy = demo(dir.path(), &db, &outbox);
    let stderr = text(&busy.stderr);
    assert_eq!(busy.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the database {} is busy", db.display())),
        "{stderr}"
    );
    holder.execute_batch("ROLLBACK").expect("unlock");
    drop(holder);

    // A file cut short: its pages past the cut are gone.
    let bytes = std::fs::read(&db).expect("read");
    let cut = dir.path().join("cut.db");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let out = crate::support::orgwarden()
        .arg("--db")
        .arg(&cut)
        .arg("snapshots")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the database {} or its -wal file is damaged",
            cut.display()
        )),
        "{stderr}"
    );
}

/// `demo` into `db` with its default logging (warnings shown): the run's output.
fn demo_logged(dir: &Path, db: &Path, outbox: &Path) -> Output {
    crate::support::orgwarden()
        .arg("--db")
        .arg(db)
        .args(["demo", "--format", "json", "--outbox"])
        .arg(outbox)
        .current_dir(dir)
        .output()
        .expect("runs")
}

#[test]
fn a_read_transaction_left_open_that_holds_back_the_log_is_named_and_the_run_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("orgwarden.db");
    let outbox = dir.path().join("outbox");
    let first = demo_logged(dir.path(), &db, &outbox);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    // A sqlite3 shell left inside BEGIN after one query: SQLite cannot copy anything written
    // after it into the database, so the write-ahead log only grows.
    let reader = rusqlite::Connection::open(&db).expect("open");
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM snapshot;")
        .expect("read");
    // Many runs' writes, at once: 40 MiB into the log, then gone from the database.
    let writer = rusqlite::Connection::open(&db).expect("open");
    writer
        .execute_batch(
            "CREATE TABLE scratch(b);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
             INSERT INTO scratch SELECT randomblob(1024 * 1024) FROM n;
             DROP TABLE scratch;",
        )
        .expect("write");
    drop(writer);

    let held = demo_logged(dir.path(), &db, &outbox);
    let stderr = text(&held.stderr);
    assert_eq!(held.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot be copied into {}", db.display()))
            && stderr.contains("another connection keeps a read transaction open"),
        "{stderr}"
    );

    // Once the transaction ends, the next run checkpoints the log and says nothing, and the
    // file shrinks although the shell's connection stays open (the log is not deleted).
    reader.execute_batch("COMMIT").expect("commit");
    let after = demo_logged(dir.path(), &db, &outbox);
    let stderr = text(&after.stderr);
    assert_eq!(after.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("write-ahead log"), "{stderr}");
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let size = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
    assert!(size <= 16 * 1024 * 1024, "the log is still {size} bytes");
    drop(reader);
}

/// `orgwarden --db DB ARGS…` in `dir`.
fn run(dir: &Path, db: &Path, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .arg("--db")
        .arg(db)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs")
}

#[test]
fn a_database_copied_onto_a_read_only_file_system_is_read_and_never_written() {
    let Some(fs) = SmallFs::mount() else {
        eprintln!("skipped: this process cannot mount a tmpfs to make read-only");
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let live = work.path().join("orgwarden.db");
    let first = demo(work.path(), &live, &work.path().join("outbox"));
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    // The file alone, as a backup or an archived copy is: no -wal or -shm beside it, and
    // SQLite cannot create the -shm a reader of a WAL database needs.
    let db = fs.path().join("orgwarden.db");
    std::fs::copy(&live, &db).expect("copy");
    let remounted = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(fs.path())
        .status()
        .is_ok_and(|status| status.success());
    assert!(remounted, "remount read-only");

    let readers: [&[&str]; 5] = [
        &["findings", "--format", "json"],
        &["snapshots"],
        &["history", "key_pay_jo_batch"],
        &["events", "--limit", "1"],
        &["query", "SELECT count(*) FROM projects"],
    ];
    for args in readers {
        let out = run(work.path(), &db, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let findings: serde_json::Value =
        serde_json::from_slice(&run(work.path(), &db, &["findings", "--format", "json"]).stdout)
            .expect("json");
    assert!(!findings.as_array().expect("array").is_empty());

    let out = run(work.path(), &db, &["audit", "--offline"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("read-only file system"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(fs.path()).expect("list").count(),
        1,
        "nothing beside the database"
    );

    // A read-only bind mount of the live, writable folder (a container's `:ro` volume): the
    // daemon may write it through the other mount, so it is not read without locks.
    let view = tempfile::tempdir().expect("tempdir");
    let bound = Command::new("mount")
        .arg("--bind")
        .arg(work.path())
        .arg(view.path())
        .status()
        .is_ok_and(|status| status.success());
    assert!(bound, "bind mount");
    let _unmount = Unmount(view.path().to_owned());
    let read_only = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(view.path())
        .status()
        .is_ok_and(|status| status.success());
    assert!(read_only, "remount the bind mount read-only");
    let out = run(
        work.path(),
        &view.path().join("orgwarden.db"),
        &["snapshots"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("orgwarden.db-shm") && stderr.contains("(read-only file system)"),
        "{stderr}"
    );
    assert!(stderr.contains("through a writable mount"), "{stderr}");

    // While the database is open through the writable mount (a run, a dashboard), its -shm
    // file exists, and a reader on the read-only mount shares it.
    let open = rusqlite::Connection::open(&live).expect("open the live database");
    let _: i64 = open
        .query_row("SELECT count(*) FROM snapshots", [], |row| row.get(0))
        .expect("read");
    let out = run(
        work.path(),
        &view.path().join("orgwarden.db"),
        &["snapshots"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    drop(open);
}

/// Unmounts its folder when dropped, so a failed assertion leaves no mount behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
