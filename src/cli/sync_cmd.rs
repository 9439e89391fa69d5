//! `crmsync sync`, `demo` and `emulator`: the commands that run the engine or the emulator.
//! All share one code path with the library (`Engine::sync_once`).

use super::state_access::{open_crm, StateAccess};
use super::{runtime, usage, CmdResult, DemoArgs, EmulatorArgs, Output, SyncArgs};
use crmsync::config::Config;
use crmsync::emulator::EmulatorOptions;
use crmsync::google::remote::GoogleRemote;
use crmsync::model::UserId;
use crmsync::sync::engine::{Engine, Progress, SyncOptions};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::Duration;

pub(super) fn tokio_runtime() -> Result<tokio::runtime::Runtime, super::Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(runtime)
}

/// A spinner on a terminal (nothing when output is piped or JSON).
fn spinner(out: &Output, message: &str) -> Option<indicatif::ProgressBar> {
    if out.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

pub fn sync(config: &Config, out: &Output, access: &StateAccess, args: SyncArgs) -> CmdResult {
    let users = args
        .users
        .iter()
        .map(|u| UserId::new(u.as_str()).map_err(|e| usage(anyhow::anyhow!("--user {u:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let options = SyncOptions {
        users,
        dry_run: args.dry_run,
        force: args.force,
    };
    if args.dry_run && access.accept_new_crm {
        return Err(usage(anyhow::anyhow!(
            "--accept-new-crm replaces the CRM mirror, which a dry run never changes; \
             run it without --dry-run"
        )));
    }
    // One writer: the lock before anything is opened (a dry run writes nothing, takes none).
    let (_guard, state) = if args.dry_run {
        (None, access.open_for_read(config)?)
    } else {
        let (guard, state) = access.open_for_write(config, "sync", Duration::ZERO)?;
        (Some(guard), state)
    };
    let crm = if args.dry_run {
        open_crm(config)?
    } else {
        access.open_crm_for_sync(config, &state)?
    };
    let rt = tokio_runtime()?;
    let report = rt.block_on(async {
        // Only configuration can make this fail (base URL, service-account key): exit 2.
        let remote = GoogleRemote::from_config(&config.google, &config.sync)
            .await
            .map_err(usage)?;
        let engine = Engine {
            config,
            state: &state,
            crm: RefCell::new(crm),
            remote: &remote,
            now: chrono::Utc::now(),
        };
        let bar = spinner(out, "syncing…");
        let on_progress = |p: Progress<'_>| {
            let Some(bar) = &bar else { return };
            match p {
                Progress::Started { users } => {
                    bar.set_length(users as u64);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} {pos}/{len} users {wide_bar} {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                }
                Progress::UserDone(report) => {
                    bar.inc(1);
                    bar.set_message(report.user.to_string());
                }
            }
        };
        let result = engine.sync_once_with_progress(&options, &on_progress).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        // `runtime` gives unknown users 2, a held lock or busy DB 3, a different CRM 2.
        result.map_err(runtime)
    })?;
    out.emit(&report, || crmsync::sync::report::render(&report))?;
    let failed = report.users.iter().any(|u| {
        matches!(
            u.status,
            crmsync::sync::engine::UserStatus::Failed | crmsync::sync::engine::UserStatus::Refused
        )
    });
    if failed {
        Err(runtime(anyhow::anyhow!(
            "some users were not synced (see the report)"
        )))
    } else {
        Ok(())
    }
}

pub fn demo(out: &Output, args: DemoArgs) -> CmdResult {
    let rt = tokio_runtime()?;
    let temp = match &args.keep {
        Some(_) => None,
        None => Some(tempfile_dir()?),
    };
    let dir = match (&args.keep, &temp) {
        (Some(keep), _) => {
            std::fs::create_dir_all(keep).map_err(runtime)?;
            keep.clone()
        }
        (None, Some(t)) => t.path().to_owned(),
        (None, None) => return Err(runtime(anyhow::anyhow!("no demo folder"))),
    };
    let bar = spinner(out, "running the demo…");
    let outcome = rt.block_on(crmsync::demo::run(&dir)).map_err(runtime);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let outcome = outcome?;
    out.emit(&outcome, || {
        let mut s = outcome.story.clone();
        s.push_str("\nRun reports:\n");
        let forced = outcome.forced.iter();
        for r in [&outcome.first, &outcome.second]
            .into_iter()
            .chain(forced)
            .chain([&outcome.third, &outcome.offboarding.report])
        {
            s.push_str(&crmsync::sync::report::render(r));
        }
        let [day1, day3, day4, day5] = outcome.api_calls;
        s.push_str(&format!(
            "\nGoogle API calls per pass: {day1} / {day3} / {day4} / {day5} (days 1, 3, 4, 5)\n"
        ));
        if args.keep.is_some() {
            s.push_str(&format!("Files kept in {}\n", outcome.dir.display()));
        }
        s
    })
}

fn tempfile_dir() -> Result<tempfile::TempDir, super::Failure> {
    tempfile::Builder::new()
        .prefix("crmsync-demo-")
        .tempdir()
        .map_err(runtime)
}

pub fn emulator(args: EmulatorArgs) -> CmdResult {
    if !args.listen.ip().is_loopback() {
        return Err(usage(anyhow::anyhow!(
            "the emulator listens on loopback addresses only (got {})",
            args.listen
        )));
    }
    let rt = tokio_runtime()?;
    let options = EmulatorOptions {
        domains: args.domains,
        state_file: args.state,
        ..EmulatorOptions::default()
    };
    eprintln!(
        "Google API emulator on http://{} (Ctrl-C to stop)",
        args.listen
    );
    rt.block_on(crmsync::emulator::run_until_shutdown(
        args.listen,
        options,
        tokio::signal::ctrl_c(),
    ))
    .map_err(runtime)
}
