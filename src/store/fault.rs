//! What a failed SQLite call says about the storage under a database: a full file system,
//! another process's lock held past the busy timeout, a damaged file, an I/O error. SQLite's
//! own words ("database or disk is full", "disk I/O error", "database is locked") name
//! neither the file nor what to do; these name both, and are added at the edge (the
//! command line, the daemon's run record), where the database's path is known.

use std::path::Path;

use rusqlite::ErrorCode;

/// Free space below this, with an I/O error, is taken for a full file system: SQLite
/// reports `ENOSPC` while it grows its shared-memory file (`-shm`, 32 KiB at a time) as a
/// plain "disk I/O error", not as "database or disk is full".
const NEARLY_FULL: u64 = 1024 * 1024;

/// What went wrong with the storage under a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The file system holding it is full (`SQLITE_FULL`, or an I/O error on a file system
    /// with (nearly) no space left).
    NoSpace,
    /// Another connection held a lock on it for longer than the busy timeout.
    Busy,
    /// The file, or the write-ahead log beside it, is not a valid database.
    Damaged,
    /// An I/O error that is not a full file system.
    Io,
}

impl Fault {
    /// The fault `error` shows for the database at `db`, if it is one of storage; `None` for
    /// any other SQLite error (a constraint, a bad query, …).
    pub fn of(error: &rusqlite::Error, db: &Path) -> Option<Fault> {
        Fault::from_code(error.sqlite_error_code()?, || free_space(db))
    }

    /// The fault of an error code, asking `free` (bytes free for this process on the
    /// database's file system) only for an I/O error.
    fn from_code(code: ErrorCode, free: impl FnOnce() -> Option<u64>) -> Option<Fault> {
        match code {
            ErrorCode::DiskFull => Some(Fault::NoSpace),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some(Fault::Busy),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Some(Fault::Damaged),
            ErrorCode::SystemIoFailure => Some(match free() {
                Some(bytes) if bytes < NEARLY_FULL => Fault::NoSpace,
                _ => Fault::Io,
            }),
            _ => None,
        }
    }

    /// What to tell a person, naming the database.
    pub fn describe(self, db: &Path) -> String {
        let db = db.display();
        match self {
            Fault::NoSpace => format!(
                "no space left on the file system holding the database {db}: free some and \
                 run again (what was not committed was rolled back)"
            ),
            Fault::Busy => format!(
                "the database {db} is busy: another process (a sqlite3 shell, a backup) held \
                 a lock on it for more than {}s",
                super::BUSY_TIMEOUT.as_secs()
            ),
            Fault::Damaged => format!(
                "the database {db} or its -wal file is damaged; restore it from a backup \
                 (`sqlite3 {db} 'PRAGMA integrity_check'` says what is wrong)"
            ),
            Fault::Io => format!("I/O error on the database {db} or its -wal or -shm file"),
        }
    }
}

/// Bytes free for this process on the file system holding `db` (the folder when the file
/// is not there); `None` when that cannot be asked.
#[cfg(unix)]
fn free_space(db: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let target = if db.exists() {
        db.to_owned()
    } else {
        super::folder_of(db)
    };
    let c_path = std::ffi::CString::new(target.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `stat` is a valid,
    // writable `statvfs`.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    // root may write into the blocks reserved for it; others only into the available ones.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let blocks = if unsafe { libc::geteuid() } == 0 {
        stat.f_bfree
    } else {
        stat.f_bavail
    };
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    Some(u64::from(blocks).saturating_mul(u64::from(stat.f_frsize)))
}

#[cfg(not(unix))]
fn free_space(_db: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_full_is_no_space_whatever_the_free_space() {
        assert_eq!(
            Fault::from_code(ErrorCode::DiskFull, || Some(u64::MAX)),
            Some(Fault::NoSpace)
        );
    }

    #[test]
    fn an_io_error_on_a_full_file_system_is_no_space_and_elsewhere_an_io_error() {
        assert_eq!(
            Fault::from_code(ErrorCode::SystemIoFailure, || Some(4096)),
            Some(Fault::NoSpace)
        );
        assert_eq!(
            Fault::from_code(ErrorCode::SystemIoFailure, || Some(10 << 30)),
            Some(Fault::Io)
        );
        assert_eq!(
            Fault::from_code(ErrorCode::SystemIoFailure, || None),
            Some(Fault::Io)
        );
    }

    #[test]
    fn locks_and_damage_are_told_apart_and_other_errors_are_not_storage_faults() {
        assert_eq!(
            Fault::from_code(ErrorCode::DatabaseBusy, || None),
            Some(Fault::Busy)
        );
        assert_eq!(
            Fault::from_code(ErrorCode::NotADatabase, || None),
            Some(Fault::Damaged)
        );
        assert_eq!(
            Fault::from_code(ErrorCode::ConstraintViolation, || None),
            None
        );
    }

    #[test]
    fn each_description_names_the_database() {
        let db = Path::new("/var/lib/orgwarden/orgwarden.db");
        for fault in [Fault::NoSpace, Fault::Busy, Fault::Damaged, Fault::Io] {
            assert!(
                fault
                    .describe(db)
                    .contains("/var/lib/orgwarden/orgwarden.db"),
                "{fault:?}"
            );
        }
        assert!(Fault::NoSpace.describe(db).contains("no space left"));
    }
}
