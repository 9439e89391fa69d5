//! Command-line interface: argument structs (clap), and one function per command that calls
//! the library and prints a human or JSON report. No sync logic lives here.

mod access_cmd;
mod crm_cmd;
mod exit;
mod feed_cmd;
mod logging;
mod mirror_load;
mod ops_cmd;
mod revoke_cmd;
mod run_cmd;
mod scope_cmd;
mod state_access;
mod sync_cmd;

pub use exit::{runtime, usage, Failure};
pub use logging::{init_tracing, LogFormat};

use clap::{Args, Parser, Subcommand};
use crmsync::config::Config;
use serde::Serialize;
use std::path::PathBuf;

/// Permission-aware two-way sync of CRM contacts and events into Google.
#[derive(Debug, Parser)]
#[command(name = "crmsync", version, about, long_about = None, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Configuration file (see config/crmsync.toml); defaults apply without one.
    #[arg(long, global = true, env = "CRMSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). Logs never hold tokens,
    /// keys or personal data beyond ids, at any level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Wait up to SECS for another command writing the state DB (default: 0 for `sync`,
    /// 30 for short admin commands such as `init` and `scope set`), else exit 3.
    #[arg(long, global = true, value_name = "SECS")]
    pub wait: Option<u64>,
    /// Create the state DB if it does not exist (as `crmsync init` does).
    #[arg(long, global = true)]
    pub init: bool,
    /// The configured CRM is not the one the state DB mirrors, on purpose: re-mirror it in
    /// full (what it lacks is pulled back from phones).
    #[arg(long, global = true)]
    pub accept_new_crm: bool,
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES_HELP: &str = "\
Exit codes: 0 success, 1 runtime failure (or, for `status`, users failing or stale),
2 usage or configuration error, 3 the state DB is in use by another writer (or SQLite
stayed busy): try again later or pass --wait SECS.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole product on an embedded demo company: CRM, Google emulator, real syncs.
    Demo(DemoArgs),
    /// Create the state DB (a no-op that says so when it exists already).
    Init,
    /// One sync pass for all users (or the named ones).
    Sync(SyncArgs),
    /// The sync worker: poll the CRM's change feed and sync the users affected, serve
    /// /healthz, /readyz, /metrics and the ICS feeds, until SIGINT/SIGTERM.
    Run,
    /// Serve the Google API emulator (Calendar v3, People v1, OAuth) on one port.
    Emulator(EmulatorArgs),
    /// Show or change a user's sync scope.
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// Ask the permission engine who may read or edit what, and why.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Remove everything synced to a user's Google account (restoring their own contacts),
    /// verify, and release the credentials.
    Revoke(RevokeArgs),
    /// Per-user sync status: last success, errors, stale, inactive users. Exits 1 when an
    /// active user is failing or stale.
    Status,
    /// Show the audit trail (newest last), or undo a write-back.
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
    /// Override the max_delete_fraction breaker; release revocations the mass-offboarding
    /// guard paused; with --user, sync a user revoked by `crmsync revoke` again.
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
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
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

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Put back the CRM values a write-back (audit line ID) replaced, if the record has not
    /// changed since; otherwise say why not (exit 1).
    Undo {
        /// The audit line of the write-back (`crmsync audit --record KIND:ID` shows it).
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The CRM user whose Google account is cleared of everything crmsync put there.
    pub user: String,
    /// Print what would be removed and restored; change nothing anywhere.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum CrmCommand {
    /// Load (or re-load, as a change) the embedded CRM from an org file.
    ///
    /// A file that would undo write-backs made since the last load (phone edits the engine
    /// wrote into the CRM) is refused, naming the records and fields, unless --force.
    Load {
        file: PathBuf,
        /// Load even if it undoes write-backs made since the last load.
        #[arg(long)]
        force: bool,
    },
    /// Write the whole embedded CRM as an org file (loading it back changes nothing).
    Export { file: PathBuf },
    /// Print one record (or security entity) of the embedded CRM.
    Show {
        /// contact, event, organization, user, role, profile, team, sharing_rule.
        kind: String,
        id: String,
    },
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

fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Config::load(p).map_err(usage),
        None => Ok(Config::default()),
    }
}

pub fn run(cli: Cli) -> CmdResult {
    let out = Output { json: cli.json };
    let config = load_config(cli.config.as_ref())?;
    let access = state_access::StateAccess {
        wait: cli.wait,
        init: cli.init,
        accept_new_crm: cli.accept_new_crm,
    };
    match cli.command {
        Command::Crm(cmd) => crm_cmd::run(&config, &out, cmd),
        Command::Demo(args) => sync_cmd::demo(&out, args),
        Command::Init => ops_cmd::init(&config, &out, &access),
        Command::Sync(args) => sync_cmd::sync(&config, &out, &access, args),
        Command::Run => run_cmd::run(&config, &access),
        Command::Emulator(args) => sync_cmd::emulator(args),
        Command::Scope(cmd) => scope_cmd::run(&config, &out, &access, cmd),
        Command::Access(cmd) => access_cmd::run(&config, &out, &access, cmd),
        Command::Revoke(args) => revoke_cmd::revoke(&config, &out, &access, args),
        Command::Status => ops_cmd::status(&config, &out, &access),
        Command::Audit(AuditArgs {
            action: Some(AuditAction::Undo { id }),
            ..
        }) => revoke_cmd::undo(&config, &out, &access, id),
        Command::Audit(args) => ops_cmd::audit(&config, &out, &access, args),
        Command::Feed(cmd) => feed_cmd::feed(&config, &out, &access, cmd),
        Command::Export(cmd) => feed_cmd::export(&config, &out, &access, cmd),
    }
}
