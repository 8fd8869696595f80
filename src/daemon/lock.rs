//! One daemon per database, and no other writer beside it: for its whole life the daemon
//! holds `<db>.daemon.lock` (which records its process id, so a second daemon can say who
//! is running) and the store's writer lock `<db>.lock` (`Store::lock_writer`), which keeps
//! `orgwarden snapshot` / `audit` from writing the same database meanwhile.
//!
//! Both are the operating system's advisory file locks (`flock` on Unix), so they disappear
//! with the process however it ends, `kill -9` included: no stale lock to clean up. Because
//! the daemon already holds the writer lock, the job it runs must not take it again (a
//! second `flock` on a new descriptor in the same process would be refused).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Why the daemon lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another orgwarden daemon{} is already running on {db}; it holds {lock}. Stop it first \
         (only one daemon may write a database)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        /// The database.
        db: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's process id, when it could be read.
        pid: Option<u32>,
    },
    /// The store's writer lock is held by another process (a snapshot or audit in progress),
    /// or could not be taken.
    #[error("{0}; stop it or wait for it to finish before starting the daemon")]
    Writer(#[from] crate::store::StoreError),
    /// The database is not orgwarden's; nothing was written beside it.
    #[error(transparent)]
    NotOurs(crate::store::StoreError),
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct DaemonLock {
    file: File,
    path: PathBuf,
    _writer: crate::store::WriterLock,
}

/// The lock file that guards the database whose canonical path is `db` (see
/// [`crate::store::canonical_db_path`]).
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".daemon.lock");
    PathBuf::from(name)
}

impl DaemonLock {
    /// Takes the lock for `db`, or says who holds it. The lock sits beside the database's
    /// canonical path, so a second daemon started through a symlink alias is refused too.
    pub fn acquire(db: &Path) -> Result<DaemonLock, LockError> {
        let canonical = crate::store::canonical_db_path(db).map_err(|source| LockError::Io {
            path: db.to_owned(),
            source,
        })?;
        crate::store::check_ownership(&canonical).map_err(LockError::NotOurs)?;
        let path = lock_path(&canonical);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // A lock file left by an older version may be world-readable; it names our pid only,
        // but nothing of ours is for others.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        // std's `File::try_lock` is newer than the crate's declared rust-version; the
        // toolchain this project builds with has it.
        #[allow(clippy::incompatible_msrv)]
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(LockError::Held {
                    db: db.to_owned(),
                    lock: path,
                    pid,
                });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        let writer = crate::store::Store::lock_writer(db)?;
        Ok(DaemonLock {
            file,
            path,
            _writer: writer,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes the release
        // explicit. The file stays: removing it would race with a daemon starting.
        #[allow(clippy::incompatible_msrv)]
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("o.db");
        std::fs::write(lock_path(&db), "").unwrap();
        std::fs::set_permissions(lock_path(&db), std::fs::Permissions::from_mode(0o644)).unwrap();
        let _lock = DaemonLock::acquire(&db).unwrap();
        let mode = std::fs::metadata(lock_path(&db))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn second_lock_on_the_same_database_is_refused_with_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orgwarden.db");
        let first = DaemonLock::acquire(&db).unwrap();
        let canonical_dir = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(first.path(), canonical_dir.join("orgwarden.db.daemon.lock"));
        let err = DaemonLock::acquire(&db).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        assert!(message.contains("already running on"), "{message}");
        drop(first);
        DaemonLock::acquire(&db).unwrap();
    }

    #[test]
    fn the_daemon_holds_the_store_writer_lock_for_its_life() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orgwarden.db");
        let daemon = DaemonLock::acquire(&db).unwrap();
        let err = crate::store::Store::lock_writer(&db).unwrap_err();
        assert!(err.to_string().contains("is locked"), "{err}");
        drop(daemon);
        crate::store::Store::lock_writer(&db).unwrap();
    }

    #[test]
    fn a_writer_in_progress_keeps_the_daemon_from_starting() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orgwarden.db");
        let snapshot = crate::store::Store::lock_writer(&db).unwrap();
        let err = DaemonLock::acquire(&db).unwrap_err();
        assert!(
            err.to_string().contains("before starting the daemon"),
            "{err}"
        );
        drop(snapshot);
        // The failed attempt did not leave the daemon lock held.
        DaemonLock::acquire(&db).unwrap();
    }

    #[test]
    fn a_second_daemon_through_a_symlink_alias_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orgwarden.db");
        std::fs::write(&db, "").unwrap();
        let alias = dir.path().join("alias.db");
        std::os::unix::fs::symlink(&db, &alias).unwrap();
        let _first = DaemonLock::acquire(&db).unwrap();
        let err = DaemonLock::acquire(&alias).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        let err = crate::store::Store::lock_writer(&alias).unwrap_err();
        assert!(err.to_string().contains("is locked"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_ours_gets_no_lock_file_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("notes.txt");
        std::fs::write(
            &db,
            "someone's notes, long enough to have a SQLite header's size\n".repeat(4),
        )
        .unwrap();
        let err = DaemonLock::acquire(&db).unwrap_err();
        assert!(matches!(err, LockError::NotOurs(_)), "{err}");
        assert!(
            err.to_string().contains("not an orgwarden database"),
            "{err}"
        );
        assert!(!lock_path(&db).exists());
        assert!(!dir.path().join("notes.txt.lock").exists());
    }

    #[test]
    fn different_databases_do_not_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let _a = DaemonLock::acquire(&dir.path().join("a.db")).unwrap();
        let _b = DaemonLock::acquire(&dir.path().join("b.db")).unwrap();
    }
}
