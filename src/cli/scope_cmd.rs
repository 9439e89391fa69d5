//! `crmsync scope show|set|reset USER`: per-user sync scopes.

use super::mirror_load::{known_user, refresh, Intent};
use super::state_access::StateAccess;
use super::{runtime, usage, CmdResult, Output, ScopeCommand};
use crmsync::config::Config;
use crmsync::crm::OrgModel;
use crmsync::model::UserId;
use crmsync::scope::{self, known_tags, ResolvedScope, ScopeEdit, ScopeLayer};
use serde_json::json;

pub fn run(config: &Config, out: &Output, access: &StateAccess, cmd: ScopeCommand) -> CmdResult {
    let intent = match &cmd {
        ScopeCommand::Show { .. } => Intent::Read("scope show"),
        ScopeCommand::Set { .. } => Intent::Write("scope set"),
        ScopeCommand::Reset { .. } => Intent::Write("scope reset"),
    };
    let mut mirror = refresh(config, access, intent)?;
    let model = &mirror.model;
    match cmd {
        ScopeCommand::Show { user } => {
            let user = known_user(model, &user)?;
            let overrides = mirror.state.scope_overrides(&user).map_err(runtime)?;
            let resolved = resolve(config, model, &user, &overrides)?;
            show(out, &resolved, &overrides, None)
        }
        ScopeCommand::Set { user, settings } => {
            let user = known_user(model, &user)?;
            let edit = ScopeEdit::parse(&settings).map_err(usage)?;
            let current = mirror.state.scope_overrides(&user).map_err(runtime)?;
            let next = edit.applied_to(&current);
            next.check_against(model, &known_tags(model))
                .map_err(|e| usage(anyhow::anyhow!("{e}; nothing was stored")))?;
            let resolved = scope::resolve(&config.scope, model, &user, &next)
                .map_err(|e| usage(anyhow::anyhow!("{e}; nothing was stored")))?;
            mirror
                .state
                .replace_scope_overrides(&user, &next)
                .map_err(runtime)?;
            show(
                out,
                &resolved,
                &next,
                Some(format!("Updated {user}'s scope.")),
            )
        }
        ScopeCommand::Reset { user } => {
            let user = known_user(model, &user)?;
            let removed = mirror.state.reset_scope_overrides(&user).map_err(runtime)?;
            let empty = ScopeLayer::default();
            let resolved = resolve(config, model, &user, &empty)?;
            show(
                out,
                &resolved,
                &empty,
                Some(format!("Removed {removed} override(s) of {user}.")),
            )
        }
    }
}

fn resolve(
    config: &Config,
    model: &OrgModel,
    user: &UserId,
    overrides: &ScopeLayer,
) -> Result<ResolvedScope, super::Failure> {
    scope::resolve(&config.scope, model, user, overrides)
        .map_err(|e| usage(anyhow::anyhow!("scope of {user}: {e}")))
}

fn show(
    out: &Output,
    resolved: &ResolvedScope,
    overrides: &ScopeLayer,
    headline: Option<String>,
) -> CmdResult {
    let lines = resolved.lines();
    let settings: Vec<_> = lines
        .iter()
        .map(|(key, value, source)| json!({"key": key, "value": value, "source": source}))
        .collect();
    let value = json!({
        "user": resolved.user,
        "fingerprint": resolved.fingerprint,
        "settings": settings,
        "overrides": overrides,
        "scope": resolved.scope,
        "sources": resolved.sources,
    });
    out.emit(&value, || {
        let mut text = String::new();
        if let Some(h) = &headline {
            text.push_str(h);
            text.push('\n');
        }
        text.push_str(&format!("Sync scope of {}:\n", resolved.user));
        for (key, value, source) in &lines {
            text.push_str(&format!(
                "  {:<22} {:<16} ({source})\n",
                key.as_str(),
                value
            ));
        }
        text.push_str(&format!(
            "  fingerprint            {}\n",
            resolved.fingerprint
        ));
        text
    })
}
