//! SQLite plumbing shared by the state DB (`store`) and the embedded CRM (`crm::sqlite`):
//! creating the file with mode 0600, the pragmas every connection needs, the runner for
//! append-only numbered migrations embedded in the binary, and the one place where SQLite's
//! "busy"/"locked" answers are recognised ([`Busy`]), so no caller ever shows them raw.
//!
//! The schema version is SQLite's `user_version`; a database newer than the binary is refused,
//! so an old binary never writes to a schema it does not understand. A database opened with
//! [`OpenMode::Existing`] must already exist and carry a schema (version ≥ 1): a missing file
//! is never silently created.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// One embedded migration: its file name (for messages) and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// How long a connection waits for another connection's write transaction before SQLite
/// answers "busy" (unless the caller chooses otherwise).
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether opening may create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file (mode 0600) and the schema if missing; migrate an existing one.
    CreateOrOpen,
    /// The file must exist and hold a schema; it is migrated, never created.
    Existing,
}

/// Options of [`open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    pub mode: OpenMode,
    pub busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            mode: OpenMode::CreateOrOpen,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// SQLite said "busy" or "locked": another connection (another process, or a tool such as
/// `sqlite3`) held a conflicting transaction for longer than the busy timeout. It is a
/// condition of the moment, not corruption: retrying later works.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "another connection held a write transaction for longer than the busy timeout \
     (SQLite {code}); is another crmsync, or a tool such as sqlite3, writing to it? \
     Try again when it has finished"
)]
pub struct Busy {
    /// `SQLITE_BUSY` or `SQLITE_LOCKED`.
    pub code: &'static str,
}

impl Busy {
    /// The busy condition inside a rusqlite error, if that is what it is.
    pub fn from_sqlite(error: &rusqlite::Error) -> Option<Busy> {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => Some(Busy {
                code: "SQLITE_BUSY",
            }),
            Some(rusqlite::ErrorCode::DatabaseLocked) => Some(Busy {
                code: "SQLITE_LOCKED",
            }),
            _ => None,
        }
    }
}

/// Problems opening or migrating a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create database file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path} is busy")]
    Busy {
        path: String,
        #[source]
        source: Busy,
    },
    #[error("no database at {path}")]
    Missing { path: String },
    #[error("{path} exists but holds no crmsync schema (it is empty or another program's file)")]
    NotInitialised { path: String },
    #[error(
        "database {path} has schema version {found}, newer than this binary knows ({known}); \
         use a newer crmsync or restore a backup"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("migration {name} failed on {path}: {source}")]
    Migration {
        path: String,
        name: &'static str,
        source: rusqlite::Error,
    },
}

impl DbError {
    /// A SQLite error while opening `path`: busy/locked become [`DbError::Busy`].
    pub fn sqlite(path: &str, source: rusqlite::Error) -> Self {
        match Busy::from_sqlite(&source) {
            Some(busy) => DbError::Busy {
                path: path.to_owned(),
                source: busy,
            },
            None => DbError::Sqlite {
                path: path.to_owned(),
                source,
            },
        }
    }
}

/// Opens (creating with mode 0600 if needed) a database file and applies `migrations`.
/// `":memory:"` opens a private in-memory database.
pub fn open(path: &Path, migrations: &[Migration]) -> Result<Connection, DbError> {
    open_with(path, migrations, &OpenOptions::default())
}

/// Opens a database file as `options` say and applies `migrations`.
pub fn open_with(
    path: &Path,
    migrations: &[Migration],
    options: &OpenOptions,
) -> Result<Connection, DbError> {
    let shown = path.display().to_string();
    let in_memory = path.as_os_str() == ":memory:";
    let existed = in_memory || path.exists();
    if !in_memory && !path.exists() {
        if options.mode == OpenMode::Existing {
            return Err(DbError::Missing { path: shown });
        }
        create_private_file(path).map_err(|source| DbError::Create {
            path: shown.clone(),
            source,
        })?;
    }
    let conn = if in_memory {
        Connection::open_in_memory()
    } else {
        // Never SQLITE_OPEN_CREATE here: the file exists (or was just created, private).
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }
    .map_err(|source| match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::CannotOpen) if !path.exists() => DbError::Missing {
            path: shown.clone(),
        },
        _ => DbError::sqlite(&shown, source),
    })?;
    configure(&conn, in_memory, options.busy_timeout)
        .map_err(|source| DbError::sqlite(&shown, source))?;
    let version = schema_version(&conn).map_err(|source| DbError::sqlite(&shown, source))?;
    if version <= 0 && !in_memory {
        // Version 0: a file we just created (fine to set up), an empty file (fine unless it
        // must exist already), or another program's database (never touched).
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|source| DbError::sqlite(&shown, source))?;
        if options.mode == OpenMode::Existing || (existed && tables > 0) {
            return Err(DbError::NotInitialised { path: shown });
        }
    }
    migrate(&conn, &shown, migrations)?;
    Ok(conn)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(|_| ())
}

fn configure(conn: &Connection, in_memory: bool, busy_timeout: Duration) -> rusqlite::Result<()> {
    // First, so that the pragmas below wait for other connections too.
    conn.busy_timeout(busy_timeout)?;
    if !in_memory {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// The schema version a database is at (`PRAGMA user_version`).
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

fn migrate(conn: &Connection, path: &str, migrations: &[Migration]) -> Result<(), DbError> {
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    let found = schema_version(conn).map_err(|source| DbError::sqlite(path, source))?;
    if found > known {
        return Err(DbError::TooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    for (index, migration) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i64 + 1;
        // IMMEDIATE, and the version read again inside: two processes opening an old
        // database at once apply each migration once.
        let apply = || -> rusqlite::Result<()> {
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            if schema_version(&tx)? >= version {
                return Ok(());
            }
            tx.execute_batch(migration.sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        apply().map_err(|source| match Busy::from_sqlite(&source) {
            Some(busy) => DbError::Busy {
                path: path.to_owned(),
                source: busy,
            },
            None => DbError::Migration {
                path: path.to_owned(),
                name: migration.name,
                source,
            },
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: [Migration; 2] = [
        Migration {
            name: "0001_a.sql",
            sql: "CREATE TABLE a (x INTEGER);",
        },
        Migration {
            name: "0002_b.sql",
            sql: "CREATE TABLE b (y INTEGER);",
        },
    ];

    #[test]
    fn fresh_and_existing_databases_are_migrated_and_newer_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = open(&path, &TWO[..1]).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), 1);
            conn.execute("INSERT INTO a VALUES (7)", []).unwrap();
        }
        {
            let conn = open(&path, &TWO).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), 2);
            let x: i64 = conn.query_row("SELECT x FROM a", [], |r| r.get(0)).unwrap();
            assert_eq!(x, 7, "existing data survives a migration");
            conn.execute("INSERT INTO b VALUES (1)", []).unwrap();
        }
        let err = open(&path, &TWO[..1]).unwrap_err();
        assert!(
            matches!(
                err,
                DbError::TooNew {
                    found: 2,
                    known: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("newer than this binary"));
    }

    #[cfg(unix)]
    #[test]
    fn new_database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.db");
        open(&path, &TWO).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn existing_mode_never_creates_and_foreign_databases_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let existing = OpenOptions {
            mode: OpenMode::Existing,
            ..OpenOptions::default()
        };
        let err = open_with(&path, &TWO, &existing).unwrap_err();
        assert!(matches!(err, DbError::Missing { .. }), "{err}");
        assert!(!path.exists(), "nothing created");

        // An empty file: set up when creating, refused when it must exist already.
        std::fs::write(&path, b"").unwrap();
        let err = open_with(&path, &TWO, &existing).unwrap_err();
        assert!(matches!(err, DbError::NotInitialised { .. }), "{err}");
        assert_eq!(schema_version(&open(&path, &TWO).unwrap()).unwrap(), 2);
        open_with(&path, &TWO, &existing).unwrap();

        // Another program's database is never migrated into.
        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE notes (text TEXT);")
            .unwrap();
        for options in [existing, OpenOptions::default()] {
            let err = open_with(&foreign, &TWO, &options).unwrap_err();
            assert!(matches!(err, DbError::NotInitialised { .. }), "{err}");
        }
        let tables: i64 = Connection::open(&foreign)
            .unwrap()
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 1);
    }

    #[test]
    fn a_foreign_write_transaction_is_busy_not_a_raw_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        open(&path, &TWO).unwrap();
        let foreign = Connection::open(&path).unwrap();
        foreign
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO a VALUES (1);")
            .unwrap();
        let options = OpenOptions {
            mode: OpenMode::Existing,
            busy_timeout: Duration::from_millis(50),
        };
        let conn = open_with(&path, &TWO, &options).unwrap();
        let err = conn.execute("INSERT INTO a VALUES (2)", []).unwrap_err();
        let busy = Busy::from_sqlite(&err).expect("recognised as busy");
        assert_eq!(busy.code, "SQLITE_BUSY");
        assert!(busy
            .to_string()
            .contains("another connection held a write transaction"));
        let other = rusqlite::Error::QueryReturnedNoRows;
        assert_eq!(Busy::from_sqlite(&other), None);
        // A migration meeting the writer is busy too, not a failed migration.
        let three = [
            TWO[0],
            TWO[1],
            Migration {
                name: "0003_c.sql",
                sql: "CREATE TABLE c (z INTEGER);",
            },
        ];
        let err = open_with(&path, &three, &options).unwrap_err();
        assert!(matches!(err, DbError::Busy { .. }), "{err}");
        foreign.execute_batch("ROLLBACK;").unwrap();
        open_with(&path, &three, &options).unwrap();
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        open(&path, &TWO[..1]).unwrap();
        let broken = [
            TWO[0],
            Migration {
                name: "0002_broken.sql",
                sql: "CREATE TABLE c (z INTEGER); THIS IS NOT SQL;",
            },
        ];
        let err = open(&path, &broken).unwrap_err();
        assert!(err.to_string().contains("0002_broken.sql"), "{err}");
        let conn = open(&path, &TWO[..1]).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 1);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'c'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the failed migration was rolled back whole");
    }
}
