//! Command-line interface: argument structs (clap), and one function per command that calls
//! the library and prints a human or JSON report. No sync logic lives here.

mod access_cmd;
mod crm_cmd;
mod feed_cmd;
mod mirror_load;
mod scope_cmd;
mod sync_cmd;

use clap::{Args, Parser, Subcommand};
use crmsync::config::Config;
use serde::Serialize;
use std::path::PathBuf;

/// Permission-aware two-way sync of CRM contacts and events into Google.
#[derive(Debug, Parser)]
#[command(name = "crmsync", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (see config/crmsync.toml); defaults apply without one.
    #[arg(long, global = true, env = "CRMSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole product on an embedded demo company: CRM, Google emulator, real syncs.
    Demo(DemoArgs),
    /// One sync pass for all users (or the named ones).
    Sync(SyncArgs),
    /// Run as a daemon: sync on an interval until stopped.
    Run,
    /// Serve the Google API emulator (Calendar v3, People v1, OAuth) on one port.
    Emulator(EmulatorArgs),
    /// Show or change a user's sync scope.
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// Ask the permission engine who may read or edit what, and why.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Remove everything synced to a user's Google account and revoke the tokens.
    Revoke(RevokeArgs),
    /// Per-user sync status: last success, errors, stale users.
    Status,
    /// Show the audit trail (newest last).
    Audit(AuditArgs),
    /// Work with the embedded CRM.
    #[command(subcommand)]
    Crm(CrmCommand),
    /// Per-user read-only ICS calendar feeds (subscription URLs served by `run`).
    #[command(subcommand)]
    Feed(feed_cmd::FeedCommand),
    /// Export a user's data: `export ics --user U FILE`.
    #[command(subcommand)]
    Export(feed_cmd::ExportCommand),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files in this folder instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Sync only this user (repeatable).
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// Print the plan with per-field diffs; change nothing anywhere.
    #[arg(long)]
    pub dry_run: bool,
    /// Override the max_delete_fraction breaker.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on, e.g. 127.0.0.1:8085.
    #[arg(long, default_value = "127.0.0.1:8085")]
    pub listen: std::net::SocketAddr,
    /// Only subjects in these domains get tokens (repeatable); any subject without it.
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Persist the emulator's state in this file.
    #[arg(long)]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ScopeCommand {
    /// Print a user's effective scope and where each setting came from.
    ///
    /// Precedence, per setting: user override > [scope.role.<id>] > [scope.profile.<id>] >
    /// [scope.org] > built-in default.
    Show { user: String },
    /// Set per-user overrides, e.g. `contact=team direction=two_way`.
    #[command(after_help = SCOPE_SET_HELP)]
    Set {
        user: String,
        /// KEY=VALUE settings (see below).
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Drop a user's overrides (back to role/profile/org defaults).
    Reset { user: String },
}

const SCOPE_SET_HELP: &str = "\
Settings (the same keys as in the config's [scope.*] sections):
  contact=mine|team|all_visible|filter|none   which contacts go to the phone
  event=mine|team|all_visible|filter|none     which events go to the phone
  contact_tags=T1,T2            filter: contacts with any of these tags
  contact_organizations=O1,O2   filter: contacts of any of these organizations
  event_tags=T1,T2              filter: events linked to a readable contact with a tag
  event_organizations=O1,O2     filter: events linked to one of these organizations
  direction=crm_to_google|two_way
  days_past=N  days_future=N    event window around now (0..3650 days)
  conflict_policy=crm_wins|google_wins|newest_wins
  google_delete=unlink|restore|delete_in_crm
  KEY=inherit                   drop this override (fall back to role/profile/org)

mine = owned or assigned; team = mine + owned by team-mates + owned by or assigned to
users below the user's role. A scope never widens access: the synced set is always
readable ∩ export gate ∩ scope. A filter needs at least one tag or organization; unknown
keys, values, tags, organizations and users are refused and nothing is stored.

Example: crmsync scope set erin contact=filter contact_tags=vip event=team direction=two_way";

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Why may (or may not) a user read, edit, create, delete a record?
    Explain {
        #[arg(long)]
        user: String,
        /// KIND:ID, e.g. contact:c1.
        #[arg(long)]
        record: String,
    },
    /// What may a user read?
    List {
        #[arg(long)]
        user: String,
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this user's lines.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this record's lines (KIND:ID).
    #[arg(long)]
    pub record: Option<String>,
    /// At most this many lines.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    pub user: String,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum CrmCommand {
    /// Load (or re-load, as a change) the embedded CRM from an org file.
    Load { file: PathBuf },
    /// Print one record (or security entity) of the embedded CRM.
    Show {
        /// contact, event, organization, user, role, profile, team, sharing_rule.
        kind: String,
        id: String,
    },
}

/// A failed command: usage/config problems exit 2, runtime failures 1.
pub struct Failure {
    pub usage: bool,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        if self.usage {
            2
        } else {
            1
        }
    }
}

/// A runtime failure (exit 1).
pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        usage: false,
        error: error.into(),
    }
}

/// A usage or configuration error (exit 2).
pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        usage: true,
        error: error.into(),
    }
}

pub type CmdResult = Result<(), Failure>;

/// Human or JSON output, as the user asked.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON, or `human` as text.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> CmdResult {
        if self.json {
            let text = serde_json::to_string_pretty(value).map_err(runtime)?;
            println!("{text}");
        } else {
            print!("{}", human());
        }
        Ok(())
    }
}

pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRMSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Config::load(p).map_err(usage),
        None => Ok(Config::default()),
    }
}

fn not_built_yet(command: &str, arrives_with: &str) -> CmdResult {
    Err(runtime(anyhow::anyhow!(
        "`crmsync {command}` is not built yet; it arrives with {arrives_with}"
    )))
}

pub fn run(cli: Cli) -> CmdResult {
    let out = Output { json: cli.json };
    let config = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::Crm(cmd) => crm_cmd::run(&config, &out, cmd),
        Command::Demo(args) => sync_cmd::demo(&out, args),
        Command::Sync(args) => sync_cmd::sync(&config, &out, args),
        Command::Run => not_built_yet("run", "the operations work (roadmap item 5)"),
        Command::Emulator(args) => sync_cmd::emulator(args),
        Command::Scope(cmd) => scope_cmd::run(&config, &out, cmd),
        Command::Access(cmd) => access_cmd::run(&config, &out, cmd),
        Command::Revoke(_) => not_built_yet("revoke", "offboarding (roadmap item 1)"),
        Command::Status => sync_cmd::status(&config, &out),
        Command::Audit(args) => sync_cmd::audit(&config, &out, args),
        Command::Feed(cmd) => feed_cmd::feed(&config, &out, cmd),
        Command::Export(cmd) => feed_cmd::export(&config, &out, cmd),
    }
}
