//! SQLite plumbing shared by the state DB (`store`) and the embedded CRM (`crm::sqlite`):
//! creating the file with mode 0600, the pragmas every connection needs, and the runner for
//! append-only numbered migrations embedded in the binary.
//!
//! The schema version is SQLite's `user_version`; a database newer than the binary is refused,
//! so an old binary never writes to a schema it does not understand.

use rusqlite::Connection;
use std::path::Path;

/// One embedded migration: its file name (for messages) and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
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

/// Opens (creating with mode 0600 if needed) a database file and applies `migrations`.
/// `":memory:"` opens a private in-memory database.
pub fn open(path: &Path, migrations: &[Migration]) -> Result<Connection, DbError> {
    let shown = path.display().to_string();
    let in_memory = path.as_os_str() == ":memory:";
    if !in_memory && !path.exists() {
        create_private_file(path).map_err(|source| DbError::Create {
            path: shown.clone(),
            source,
        })?;
    }
    let conn = if in_memory {
        Connection::open_in_memory()
    } else {
        Connection::open(path)
    }
    .map_err(|source| DbError::Sqlite {
        path: shown.clone(),
        source,
    })?;
    configure(&conn, in_memory).map_err(|source| DbError::Sqlite {
        path: shown.clone(),
        source,
    })?;
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

fn configure(conn: &Connection, in_memory: bool) -> rusqlite::Result<()> {
    if !in_memory {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// The schema version a database is at (`PRAGMA user_version`).
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

fn migrate(conn: &Connection, path: &str, migrations: &[Migration]) -> Result<(), DbError> {
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    let found = schema_version(conn).map_err(|source| DbError::Sqlite {
        path: path.to_owned(),
        source,
    })?;
    if found > known {
        return Err(DbError::TooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    for (index, migration) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i64 + 1;
        let apply = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(migration.sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        apply().map_err(|source| DbError::Migration {
            path: path.to_owned(),
            name: migration.name,
            source,
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
