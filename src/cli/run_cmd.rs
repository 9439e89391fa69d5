//! `crmsync run`: the sync worker with its HTTP listener (health, readiness, metrics, ICS
//! feeds), until SIGINT/SIGTERM. The worker itself is `crmsync::worker`.

use super::state_access::StateAccess;
use super::{runtime, usage, CmdResult, Failure};
use crmsync::config::Config;
use crmsync::google::remote::GoogleRemote;
use crmsync::worker::{http, metrics::Metrics, signal_channel, Exit, Worker, WorkerError};
use std::sync::Arc;
use std::time::Duration;

/// Exit code when the worker stopped with users in flight (drain timeout, second signal).
const EXIT_ABANDONED: u8 = 1;

fn worker_failure(e: WorkerError) -> Failure {
    match e {
        WorkerError::Store(s) => runtime(s),
        WorkerError::Lock(l) => runtime(l),
        WorkerError::Mirror(m) => runtime(m),
        WorkerError::Crm(c) => runtime(c),
        WorkerError::Engine(e) => runtime(e),
        other => runtime(other),
    }
}

pub fn run(config: &Config, access: &StateAccess) -> CmdResult {
    // The state DB must exist (or --init); the CRM must be the mirrored one (or
    // --accept-new-crm, which re-mirrors it now, under the lock).
    let crm = {
        let (_guard, state) = access.open_for_write(config, "run", Duration::ZERO)?;
        access.open_crm_for_sync(config, &state)?
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(runtime)?;
    let exit = rt.block_on(async {
        let remote = GoogleRemote::from_config(&config.google, &config.sync)
            .await
            .map_err(usage)?;
        let listener = tokio::net::TcpListener::bind(config.worker.listen)
            .await
            .map_err(|e| {
                usage(anyhow::anyhow!(
                    "[worker] listen: cannot listen on {}: {e}",
                    config.worker.listen
                ))
            })?;
        let addr = listener.local_addr().map_err(runtime)?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the worker listens beyond loopback: metrics and feeds are reachable from the network");
        }
        let metrics = Arc::new(Metrics::default());
        let clock = crmsync::ics::serve::system_clock();
        let feeds = crmsync::ics::feed_router(config).map_err(runtime)?;
        let window = config.worker.interval() * 3 + Duration::from_secs(60);
        let router = http::router(metrics.clone(), clock.clone(), window, Some(feeds));
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, router, async move {
            let _ = server_stopped.await;
        }));
        let (signals, watched) = signal_channel();
        listen_for_signals(signals).map_err(runtime)?;
        eprintln!("crmsync run: listening on http://{addr} (/healthz /readyz /metrics /ics/…); Ctrl-C to stop");
        let seed: u64 = rand::random();
        let worker = Worker::new(config.clone(), crm, remote, metrics, clock, seed);
        let exit = worker.run(watched).await;
        let _ = stop_server.send(());
        let _ = server.await;
        exit.map_err(worker_failure)
    })?;
    match exit {
        Exit::Drained => Ok(()),
        Exit::DrainTimedOut => Err(Failure {
            code: EXIT_ABANDONED,
            error: anyhow::anyhow!(
                "stopped after the drain timeout with users in flight; the next start resumes"
            ),
        }),
        Exit::Forced => Err(Failure {
            code: EXIT_ABANDONED,
            error: anyhow::anyhow!("stopped at once by a second signal; the next start resumes"),
        }),
    }
}

/// Counts SIGINT and SIGTERM into `signals`; the second one ends the process at once.
fn listen_for_signals(signals: tokio::sync::watch::Sender<u32>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut count = 0u32;
        // Bounded: the second signal ends the process.
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            count += 1;
            signals.send_replace(count);
            if count >= 2 {
                eprintln!("crmsync run: second signal, stopping at once (the next start resumes)");
                std::process::exit(i32::from(EXIT_ABANDONED));
            }
            eprintln!("crmsync run: stopping after the users in flight (again to stop at once)");
        }
    });
    Ok(())
}
