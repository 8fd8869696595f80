//! Whose file is this? A database is orgwarden's when its SQLite `application_id` says so
//! (or it is an orgwarden database from before the id existed); anything else is refused
//! before a single byte of it is written. Also: the canonical path the writer locks are
//! keyed on, and the file modes orgwarden insists on.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;
use crate::report::shell_quote;

/// orgwarden's SQLite `application_id`: the ASCII bytes `OWDB` (0x4F574442), stored at
/// offset 68 of the file header, so `file(1)` and orgwarden itself can tell its databases
/// from everyone else's.
pub const APPLICATION_ID: i32 = 0x4F57_4442;

/// The tables migration 0001 creates: an unmarked database holding all of them is an
/// orgwarden database from before [`APPLICATION_ID`].
const OUR_TABLES: [&str; 5] = ["snapshot", "snapshot_scope", "blob", "object", "version"];

/// What an existing file turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No file, an empty file, or a SQLite database with nothing in it: free to claim.
    Blank,
    /// Marked with our application id.
    Ours,
    /// An orgwarden database from before the application id: ours, to be marked.
    Unmarked,
}

/// Classifies the file at `path` without writing to it (a read-only connection, which
/// never changes the file), or refuses it with [`StoreError::NotOurs`].
pub(super) fn inspect(path: &Path) -> Result<Found, StoreError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(Found::Blank);
    };
    let refuse = |reason: String| StoreError::NotOurs {
        path: path.to_owned(),
        reason,
    };
    // SQLite says only "unable to open database file" of a folder.
    if meta.is_dir() {
        return Err(refuse("it is a folder; name a file in it".to_owned()));
    }
    if meta.len() == 0 && !sibling(path, "-wal").exists() {
        return Ok(Found::Blank);
    }
    let conn = super::open_reader(path)?;
    // A writer mid-checkpoint is waited for, as every other connection of the store does.
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    // The first read is where SQLite finds out the file is not a database.
    let id: i32 = match conn.pragma_query_value(None, "application_id", |row| row.get(0)) {
        Ok(id) => id,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Err(refuse("it is not a SQLite database at all".to_owned()));
        }
        // Even reading a WAL database needs its -shm file beside it.
        Err(e) => return Err(super::folder_read_only(path, e)),
    };
    if id == APPLICATION_ID {
        return Ok(Found::Ours);
    }
    if id != 0 {
        return Err(refuse(format!(
            "another application's SQLite database, application_id {id:#010x}"
        )));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master")?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<BTreeSet<String>, _>>()?;
    if names.is_empty() && version == 0 {
        return Ok(Found::Blank);
    }
    if version >= 1 && OUR_TABLES.iter().all(|t| names.contains(*t)) {
        return Ok(Found::Unmarked);
    }
    Err(refuse(
        "a SQLite database with tables orgwarden did not create".to_owned(),
    ))
}

/// Refuses, without writing anything, a file at `path` that is not orgwarden's (another
/// application's SQLite database, or not SQLite at all); no file is fine.
pub fn check_ownership(path: &Path) -> Result<(), StoreError> {
    inspect(path).map(drop)
}

/// `path` with `suffix` appended to its file name (`-wal`, `.lock`).
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The path a lock on `db` is keyed on: symlinks resolved, so every alias of one database
/// takes the same lock. A file that does not exist yet is its canonical folder plus its
/// name (a dangling symlink is followed to where SQLite would create the file).
pub fn canonical_db_path(db: &Path) -> std::io::Result<PathBuf> {
    let mut path = db.to_owned();
    // Bounded like the kernel's own symlink resolution (ELOOP at 40).
    for _ in 0..40 {
        if path.exists() {
            return std::fs::canonicalize(&path);
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if let Ok(target) = std::fs::read_link(&path) {
            path = parent.join(target);
            continue;
        }
        let Some(name) = path.file_name() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} names no file", db.display()),
            ));
        };
        // SQLite creates the file, not its folder: say which is missing, since "No such
        // file or directory" beside a database that is meant to be created misleads.
        return match std::fs::canonicalize(&parent) {
            Ok(dir) => Ok(dir.join(name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "its folder {} does not exist (create it, or choose another --db or [storage] path)",
                    parent.display()
                ),
            )),
            Err(e) => Err(e),
        };
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{}: too many levels of symbolic links", db.display()),
    ))
}

/// Makes an existing database (and its `-wal` and `-shm` files) readable by its owner only,
/// with one warning; when that fails (the file is someone else's), warns with the fix.
pub(super) fn tighten(path: &Path) {
    let mut loosened = None;
    for file in [
        path.to_owned(),
        sibling(path, "-wal"),
        sibling(path, "-shm"),
    ] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        if let Err(error) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(
                "database file {} is readable by others (mode {mode:04o}) and could not be \
                 made private ({error}); fix it with: chmod 600 {}",
                file.display(),
                shell_quote(&file)
            );
            return;
        }
        loosened.get_or_insert(mode);
    }
    if let Some(mode) = loosened {
        tracing::warn!(
            "database {} was readable by others (mode {mode:04o}); orgwarden made it and its \
             -wal/-shm files private (0600)",
            path.display()
        );
    }
}

/// Warns, once per process and file, that a secret's file (the admin key) can be read by
/// every user of the machine, with the `chmod` that fixes it. It is still used: refusing
/// would turn a hygiene problem into an outage. A file its group may read is left alone:
/// that is how a secret is shared on purpose (a Kubernetes secret mounted 0440 for the
/// pod's `fsGroup`), and there the advice could not be followed.
pub fn warn_if_shared(what: &str, path: &Path) {
    static WARNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    // A device or pipe has no mode worth fixing (and is refused as a key anyway).
    if !meta.is_file() || mode & 0o007 == 0 {
        return;
    }
    // A poisoned set only means another thread panicked mid-insert; the set is still usable.
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.insert(path.to_owned()) {
        tracing::warn!(
            "{what} {} is readable by others (mode {mode:04o}); fix it with: chmod 600 {} \
             (or 640, for a group that must read it)",
            path.display(),
            shell_quote(path)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_keyed_on_its_canonical_folder() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("alias")).unwrap();
        let through_alias = canonical_db_path(&dir.path().join("alias/new.db")).unwrap();
        assert_eq!(
            through_alias,
            canonical_db_path(&real.join("new.db")).unwrap()
        );
        assert!(!through_alias.to_string_lossy().contains("alias"));
    }

    #[test]
    fn a_dangling_symlink_is_keyed_on_its_target() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("target.db", dir.path().join("link.db")).unwrap();
        assert_eq!(
            canonical_db_path(&dir.path().join("link.db")).unwrap(),
            canonical_db_path(&dir.path().join("target.db")).unwrap()
        );
    }
}
