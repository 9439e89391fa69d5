//! `crmsync feed create|rotate|revoke USER`, `crmsync feed list` and
//! `crmsync export ics --user U FILE`: per-user ICS feeds (see `crmsync::ics`).

use super::mirror_load::{known_user, refresh, Intent};
use super::state_access::StateAccess;
use super::{runtime, usage, CmdResult, Failure, Output};
use clap::Subcommand;
use crmsync::config::Config;
use crmsync::crm::OrgModel;
use crmsync::ics::{self, feed_now, feed_scope, render_feed};
use crmsync::model::UserId;
use crmsync::security::Access;
use crmsync::store::StateDb;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Give an active user a feed and print its URL — the only time the secret is shown.
    Create { user: String },
    /// Replace a user's feed secret: the old URL answers 404 at once; prints the new URL.
    Rotate { user: String },
    /// Delete a user's feed: its URL answers 404 from now on.
    Revoke { user: String },
    /// Users with feeds: created, rotated and last-fetched times (never the secret).
    List,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write a user's ICS feed document to FILE (`-` for stdout).
    Ics {
        #[arg(long)]
        user: String,
        file: PathBuf,
    },
}

pub fn feed(config: &Config, out: &Output, access: &StateAccess, cmd: FeedCommand) -> CmdResult {
    match cmd {
        FeedCommand::List => list(config, out, access),
        FeedCommand::Create { user } => {
            let mirror = refresh(config, access, Intent::Write("feed create"))?;
            let user = active_user(&mirror.model, &user)?;
            let Some(secret) =
                ics::create_feed(&mirror.state, &user, chrono::Utc::now()).map_err(runtime)?
            else {
                return Err(usage(anyhow::anyhow!(
                    "{user} already has a feed; `crmsync feed rotate {user}` gives it a new URL"
                )));
            };
            audit(&mirror.state, &user, "feed_created")?;
            print_url(config, out, &user, &secret, "created")
        }
        FeedCommand::Rotate { user } => {
            let mirror = refresh(config, access, Intent::Write("feed rotate"))?;
            let user = active_user(&mirror.model, &user)?;
            let Some(secret) =
                ics::rotate_feed(&mirror.state, &user, chrono::Utc::now()).map_err(runtime)?
            else {
                return Err(usage(anyhow::anyhow!(
                    "{user} has no feed; `crmsync feed create {user}` makes one"
                )));
            };
            audit(&mirror.state, &user, "feed_rotated")?;
            print_url(config, out, &user, &secret, "rotated")
        }
        FeedCommand::Revoke { user: raw } => {
            let mirror = refresh(config, access, Intent::Write("feed revoke"))?;
            let user = UserId::new(raw.as_str())
                .map_err(|e| usage(anyhow::anyhow!("user {raw:?}: {e}")))?;
            // A user gone from the CRM can still have a feed to revoke.
            let revoked = mirror.state.revoke_feed(&user).map_err(runtime)?;
            if !revoked {
                known_user(&mirror.model, &raw)?;
            } else {
                audit(&mirror.state, &user, "feed_revoked")?;
            }
            out.emit(&json!({"user": user, "revoked": revoked}), || {
                if revoked {
                    format!("Revoked {user}'s feed: its URL answers 404 from now on.\n")
                } else {
                    format!("{user} has no feed; nothing to revoke.\n")
                }
            })
        }
    }
}

fn active_user(model: &OrgModel, raw: &str) -> Result<UserId, Failure> {
    let user = known_user(model, raw)?;
    if !model.users.get(&user).is_some_and(|u| u.active) {
        return Err(usage(anyhow::anyhow!(
            "{user} is inactive in the CRM; inactive users have no feed"
        )));
    }
    Ok(user)
}

fn audit(state: &StateDb, user: &UserId, action: &str) -> CmdResult {
    state
        .write(|w| w.audit("feed-cli", Some(user), None, action, &json!({})))
        .map_err(runtime)
}

fn print_url(
    config: &Config,
    out: &Output,
    user: &UserId,
    secret: &ics::FeedSecret,
    what: &str,
) -> CmdResult {
    let url = config.ics.feed_url(secret);
    out.emit(
        &json!({"user": user, "url": url, "secret": secret.expose()}),
        || {
            let mut text = format!(
                "Feed of {user} {what}. Subscribe to this URL (shown only now; crmsync keeps \
                 only a hash of its secret):\n  {url}\n"
            );
            if config.ics.public_base_url.is_none() {
                text.push_str(
                    "(set ics.public_base_url in the config to print the full URL the worker \
                     is reached at)\n",
                );
            }
            text
        },
    )
}

fn list(config: &Config, out: &Output, access: &StateAccess) -> CmdResult {
    let state = access.open_for_read(config)?;
    let feeds = state.feeds().map_err(runtime)?;
    out.emit(&feeds, || {
        if feeds.is_empty() {
            return "No feeds.\n".to_owned();
        }
        let mut text = format!(
            "{:<16} {:<26} {:<26} {}\n",
            "user", "created", "rotated", "last fetched"
        );
        for f in &feeds {
            text.push_str(&format!(
                "{:<16} {:<26} {:<26} {}\n",
                f.user_id,
                f.created_at,
                f.rotated_at.as_deref().unwrap_or("-"),
                f.last_fetched_at.as_deref().unwrap_or("never"),
            ));
        }
        text
    })
}

pub fn export(
    config: &Config,
    out: &Output,
    access: &StateAccess,
    cmd: ExportCommand,
) -> CmdResult {
    let ExportCommand::Ics { user, file } = cmd;
    let mirror = refresh(config, access, Intent::Read("export ics"))?;
    let user = active_user(&mirror.model, &user)?;
    let overrides = mirror.state.scope_overrides(&user).map_err(runtime)?;
    let resolved = feed_scope(&config.scope, &mirror.model, &user, &overrides)
        .map_err(|e| usage(anyhow::Error::new(e)))?
        .ok_or_else(|| usage(anyhow::anyhow!("{user} has no feed to export")))?;
    let mirror_times = mirror.state.event_mirror_times().map_err(runtime)?;
    let access = Access::build(&mirror.model);
    let feed = render_feed(
        &access,
        &mirror_times,
        &config.ics,
        &resolved,
        feed_now(chrono::Utc::now()),
    )
    .map_err(runtime)?;
    if file.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(feed.body.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(runtime)?;
        return Ok(());
    }
    std::fs::write(&file, feed.body.as_bytes())
        .map_err(|e| runtime(anyhow::anyhow!("cannot write {}: {e}", file.display())))?;
    out.emit(
        &json!({"user": user, "file": file, "events": feed.events}),
        || {
            format!(
                "Wrote {} event(s) of {user}'s feed to {}.\n",
                feed.events,
                file.display()
            )
        },
    )
}
