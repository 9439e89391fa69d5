//! One writer per state DB: an exclusive OS file lock on a lock file beside the database.
//!
//! Every command that writes the state DB or Google takes [`WriterLock::acquire`] before it
//! opens anything, and holds the returned [`WriterGuard`] until it is done; the worker takes
//! it once per cycle (never for its whole life), so admin commands get their turn between
//! cycles. A second writer waits up to its `wait` and then gets [`LockError::Held`], which
//! names the holder.
//!
//! The lock is the OS's (`flock` on Unix, `LockFileEx` on Windows, through std's
//! `File::try_lock`): it dies with the process that holds it, so a lock file left behind by a
//! killed process never blocks anyone. The holder's pid, host, command and start time are
//! written into the file only to be shown to whoever waits; they are never trusted. The file
//! is never deleted (deleting a lock file races with a process that just opened it).
//!
//! Acquiring blocks the calling thread while it waits (a bounded poll); async callers (the
//! worker) take it inside `tokio::task::spawn_blocking` and keep the guard for one cycle.

use serde::{Deserialize, Serialize};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting writer tries again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long even a writer that does not wait gives a lock whose holder is not recorded.
const UNRECORDED_GRACE: Duration = Duration::from_millis(200);

/// Who holds (or held) the lock, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// What the holder is doing, e.g. `sync` or `scope set`.
    pub command: String,
    /// RFC 3339 UTC.
    pub started_at: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`crmsync {}` (pid {} on {}, since {})",
            self.command, self.pid, self.host, self.started_at
        )
    }
}

impl Holder {
    /// This process, about to run `command`.
    pub fn this_process(command: &str) -> Self {
        Self {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_owned(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it (and kept it for all of `waited`, the wait asked for).
    #[error(
        "the state DB {state} is in use by {}{}; {}",
        holder.as_ref().map_or_else(|| "another crmsync (holder not recorded yet)".to_owned(), ToString::to_string),
        if waited.is_zero() { String::new() } else { format!(" (waited {} s)", waited.as_secs()) },
        "only one command may write it at a time: try again later, or pass --wait SECS"
    )]
    Held {
        state: String,
        lock_file: PathBuf,
        holder: Option<Box<Holder>>,
        waited: Duration,
    },
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Namespace of the writer lock of a state DB.
pub struct WriterLock;

/// The held lock. Dropping it clears the holder record and releases the lock.
#[derive(Debug)]
pub struct WriterGuard {
    file: File,
    path: PathBuf,
    holder: Holder,
    waited: Duration,
}

impl WriterGuard {
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    pub fn lock_file(&self) -> &Path {
        &self.path
    }

    /// How long acquiring waited for another holder.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // Still holding the lock here, so nobody reads a half-cleared record as current.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

impl WriterLock {
    /// The lock file of the state DB at `state`: `<state>.lock`, beside it.
    pub fn lock_path(state: &Path) -> PathBuf {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the writer lock of the state DB at `state` for `command`, waiting up to `wait`
    /// for another holder to finish.
    pub fn acquire(state: &Path, command: &str, wait: Duration) -> Result<WriterGuard, LockError> {
        Self::acquire_observed(state, command, wait, |_| {})
    }

    /// [`WriterLock::acquire`], calling `on_wait` once (with the holder, if recorded) when
    /// the lock is found taken and the caller is going to wait.
    pub fn acquire_observed(
        state: &Path,
        command: &str,
        wait: Duration,
        mut on_wait: impl FnMut(Option<&Holder>),
    ) -> Result<WriterGuard, LockError> {
        let path = Self::lock_path(state);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = open_lock_file(&path).map_err(io)?;
        let started = Instant::now();
        let mut told = false;
        // Bounded: every turn sleeps, and the loop ends once `wait` has passed.
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let waited = started.elapsed();
                    let holder = Self::recorded_holder(state);
                    // A lock without a record is a holder writing its record this instant,
                    // or someone probing with `current_holder`: both are gone in a moment.
                    let patience = if holder.is_none() {
                        wait.max(UNRECORDED_GRACE)
                    } else {
                        wait
                    };
                    if waited >= patience {
                        return Err(LockError::Held {
                            state: state.display().to_string(),
                            lock_file: path,
                            holder: holder.map(Box::new),
                            waited: wait,
                        });
                    }
                    if !told && !wait.is_zero() {
                        told = true;
                        match &holder {
                            Some(h) => tracing::info!(
                                holder_pid = h.pid,
                                holder_command = %h.command,
                                holder_since = %h.started_at,
                                wait_secs = wait.as_secs(),
                                "waiting for the state DB's writer lock"
                            ),
                            None => tracing::info!(
                                wait_secs = wait.as_secs(),
                                "waiting for the state DB's writer lock"
                            ),
                        }
                        on_wait(holder.as_ref());
                    }
                    std::thread::sleep(POLL_INTERVAL.min(patience - waited));
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let waited = started.elapsed();
        let holder = Holder::this_process(command);
        let record = serde_json::to_string(&holder).unwrap_or_default();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(record.as_bytes()))
            .and_then(|()| file.flush());
        if let Err(e) = written {
            let _ = file.unlock();
            return Err(io(e));
        }
        if told {
            tracing::info!(waited_ms = waited.as_millis() as u64, "writer lock taken");
        }
        Ok(WriterGuard {
            file,
            path,
            holder,
            waited,
        })
    }

    /// The holder recorded in the lock file, if it holds a readable record. Informative only:
    /// a record left by a killed process stays until the next holder overwrites it.
    pub fn recorded_holder(state: &Path) -> Option<Holder> {
        let mut text = String::new();
        File::open(Self::lock_path(state))
            .and_then(|mut f| f.read_to_string(&mut text))
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether some process holds the lock right now (and who, if recorded). Takes and
    /// releases the lock when it is free, so it never blocks.
    pub fn current_holder(state: &Path) -> Result<Option<Option<Holder>>, LockError> {
        let path = Self::lock_path(state);
        if !path.exists() {
            return Ok(None);
        }
        let file = File::open(&path).map_err(|source| LockError::Io {
            path: path.display().to_string(),
            source,
        })?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => Ok(Some(Self::recorded_holder(state))),
            Err(TryLockError::Error(source)) => Err(LockError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

#[cfg(unix)]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// This machine's name, for the holder record (best effort, no unsafe code).
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_and_gets_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let first = WriterLock::acquire(&state, "sync", Duration::ZERO).unwrap();
        assert_eq!(first.holder().pid, std::process::id());
        assert_eq!(
            WriterLock::lock_path(&state),
            dir.path().join("state.db.lock")
        );

        let err = WriterLock::acquire(&state, "scope set", Duration::ZERO).unwrap_err();
        let LockError::Held { holder, waited, .. } = &err else {
            panic!("{err}")
        };
        let holder = holder.as_ref().expect("the holder is recorded");
        assert_eq!(holder.command, "sync");
        assert_eq!(holder.pid, std::process::id());
        assert!(waited.is_zero());
        let text = err.to_string();
        assert!(text.contains("crmsync sync"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert_eq!(
            WriterLock::current_holder(&state).unwrap(),
            Some(Some(Holder::clone(holder)))
        );

        drop(first);
        assert_eq!(WriterLock::current_holder(&state).unwrap(), None);
        assert_eq!(
            WriterLock::recorded_holder(&state),
            None,
            "cleared on release"
        );
        let second = WriterLock::acquire(&state, "scope set", Duration::ZERO).unwrap();
        assert_eq!(second.holder().command, "scope set");
    }

    #[test]
    fn a_bounded_wait_gives_up_and_names_how_long_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let _held = WriterLock::acquire(&state, "sync", Duration::ZERO).unwrap();
        let mut told = 0;
        let err = WriterLock::acquire_observed(&state, "sync", Duration::from_millis(120), |h| {
            assert_eq!(h.map(|h| h.command.as_str()), Some("sync"));
            told += 1;
        })
        .unwrap_err();
        assert_eq!(told, 1, "the waiter is told once");
        let LockError::Held { waited, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(waited, Duration::from_millis(120));
    }

    #[test]
    fn a_waiting_writer_runs_once_the_holder_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let held = WriterLock::acquire(&state, "sync", Duration::ZERO).unwrap();
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let path = state.clone();
        let waiter = std::thread::spawn(move || {
            WriterLock::acquire_observed(&path, "scope set", Duration::from_secs(60), |_| {
                waiting_tx.send(()).unwrap();
            })
            .map(|g| g.holder().command.clone())
        });
        // The waiter is blocked on our lock now; release it.
        waiting_rx.recv().unwrap();
        drop(held);
        assert_eq!(waiter.join().unwrap().unwrap(), "scope set");
    }

    #[test]
    fn a_lock_file_left_by_a_dead_holder_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let dead = Holder {
            pid: 999_999,
            host: "elsewhere".into(),
            command: "sync".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(
            WriterLock::lock_path(&state),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        assert_eq!(WriterLock::recorded_holder(&state), Some(dead));
        assert_eq!(
            WriterLock::current_holder(&state).unwrap(),
            None,
            "nobody holds the OS lock"
        );
        let guard = WriterLock::acquire(&state, "sync", Duration::ZERO).unwrap();
        assert_eq!(
            WriterLock::recorded_holder(&state).map(|h| h.pid),
            Some(std::process::id()),
            "the stale record is replaced"
        );
        drop(guard);
    }

    #[test]
    fn garbage_in_the_lock_file_is_shown_as_an_unrecorded_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let _held = WriterLock::acquire(&state, "sync", Duration::ZERO).unwrap();
        // Another process writing its record right now would look like this to a reader.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(WriterLock::lock_path(&state))
            .unwrap();
        f.set_len(0).unwrap();
        f.write_all(b"{\"pid\": 1").unwrap();
        let err = WriterLock::acquire(&state, "sync", Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("holder not recorded yet"), "{err}");
    }
}
