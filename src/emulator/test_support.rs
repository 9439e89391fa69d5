//! [`TestEmulator`]: the emulator in-process on `127.0.0.1:0`, for tests and benchmarks.

use std::net::SocketAddr;
use std::ops::Deref;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::control::EmulatorHandle;
use super::{EmulatorError, EmulatorOptions};

/// A running in-process emulator. Dereferences to [`EmulatorHandle`] for the typed control
/// methods; stops when dropped or on [`TestEmulator::shutdown`].
pub struct TestEmulator {
    handle: EmulatorHandle,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestEmulator {
    /// Bind `127.0.0.1:0` and serve in a background task of the current runtime.
    pub async fn start(options: EmulatorOptions) -> Result<TestEmulator, EmulatorError> {
        let wanted: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = tokio::net::TcpListener::bind(wanted)
            .await
            .map_err(|e| EmulatorError::Bind(wanted, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| EmulatorError::Bind(wanted, e))?;
        let handle = EmulatorHandle::new(options)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = handle.clone();
        let task = tokio::spawn(async move {
            super::server::serve(listener, serving.clone(), async {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = serving.save() {
                tracing::warn!("emulator: cannot write state file: {e}");
            }
        });
        Ok(TestEmulator {
            handle,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint, for a service-account key's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> &EmulatorHandle {
        &self.handle
    }

    /// Stop serving, wait for in-flight requests (bounded) and write the state file.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Deref for TestEmulator {
    type Target = EmulatorHandle;

    fn deref(&self) -> &EmulatorHandle {
        &self.handle
    }
}

impl Drop for TestEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
