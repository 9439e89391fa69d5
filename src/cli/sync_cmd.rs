//! `crmsync sync`, `status`, `audit`, `demo` and `emulator`: the commands that run the engine
//! or the emulator. All share one code path with the library (`Engine::sync_once`).

use super::{runtime, usage, CmdResult, DemoArgs, EmulatorArgs, Output, SyncArgs};
use crmsync::config::Config;
use crmsync::emulator::EmulatorOptions;
use crmsync::google::remote::GoogleRemote;
use crmsync::model::UserId;
use crmsync::store::StateDb;
use crmsync::sync::engine::{Engine, EngineError, Progress, SyncOptions};
use std::cell::RefCell;
use std::io::IsTerminal;

fn tokio_runtime() -> Result<tokio::runtime::Runtime, super::Failure> {
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

pub fn sync(config: &Config, out: &Output, args: SyncArgs) -> CmdResult {
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
    let rt = tokio_runtime()?;
    let report = rt.block_on(async {
        let state = StateDb::open(&config.state.path).map_err(runtime)?;
        let crm = super::open_crm(config)?;
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
        result.map_err(|e| match e {
            EngineError::UnknownUser(_) => usage(e),
            other => runtime(other),
        })
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

pub fn status(config: &Config, out: &Output) -> CmdResult {
    let state = StateDb::open(&config.state.path).map_err(runtime)?;
    let users = state.sync_users().map_err(runtime)?;
    let problems = state.mirror_problems().map_err(runtime)?;
    let stale_after = chrono::Duration::minutes(config.sync.stale_after_minutes as i64);
    let now = chrono::Utc::now();
    let rows: Vec<serde_json::Value> = users
        .iter()
        .map(|u| {
            let last = u
                .last_success_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let stale = last.is_none_or(|t| now.signed_duration_since(t) > stale_after);
            let id = UserId::new(u.user_id.as_str()).ok();
            let links = id
                .and_then(|id| state.link_counts(&id).ok())
                .unwrap_or_default()
                .into_iter()
                .map(|((kind, st), n)| (format!("{kind}_{st}"), n))
                .collect::<std::collections::BTreeMap<_, _>>();
            serde_json::json!({
                "user": u.user_id, "account": u.google_account,
                "last_success_at": u.last_success_at, "last_attempt_at": u.last_attempt_at,
                "last_error": u.last_error, "stale": stale, "links": links,
            })
        })
        .collect();
    let value = serde_json::json!({"users": rows, "crm_problems": problems});
    out.emit(&value, || {
        let mut s = format!(
            "{:<10} {:<24} {:<6} {:<26} last error\n",
            "user", "account", "stale", "last success"
        );
        for r in &rows {
            s.push_str(&format!(
                "{:<10} {:<24} {:<6} {:<26} {}\n",
                r["user"].as_str().unwrap_or(""),
                r["account"].as_str().unwrap_or(""),
                if r["stale"].as_bool().unwrap_or(true) {
                    "STALE"
                } else {
                    "ok"
                },
                r["last_success_at"].as_str().unwrap_or("never"),
                r["last_error"].as_str().unwrap_or("")
            ));
        }
        for p in &problems {
            s.push_str(&format!("! {p}\n"));
        }
        s
    })
}

pub fn audit(config: &Config, out: &Output, args: super::AuditArgs) -> CmdResult {
    let state = StateDb::open(&config.state.path).map_err(runtime)?;
    let entries = state
        .audit_entries(args.user.as_deref(), args.record.as_deref(), args.limit)
        .map_err(runtime)?;
    out.emit(&entries, || {
        let mut s = String::new();
        for e in &entries {
            s.push_str(&format!(
                "{} {:<8} {:<18} {:<16} {}\n",
                e.at,
                e.user_id.as_deref().unwrap_or("-"),
                e.action,
                e.record.as_deref().unwrap_or("-"),
                e.detail
            ));
        }
        s
    })
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
            .chain([&outcome.third])
        {
            s.push_str(&crmsync::sync::report::render(r));
        }
        s.push_str(&format!(
            "\nGoogle API calls per pass: {} / {} / {}\n",
            outcome.api_calls[0], outcome.api_calls[1], outcome.api_calls[2]
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
