//! `crmsync access explain|list`: the permission engine's answers, with reasons.

use super::mirror_load::{known_user, refresh, Intent};
use super::state_access::StateAccess;
use super::{runtime, usage, AccessCommand, CmdResult, Output};
use crmsync::config::Config;
use crmsync::model::{ObjectKind, RecordRef};
use crmsync::scope::{self, sync_verdict};
use crmsync::security::{Access, Operation};
use serde_json::{json, Map, Value};

pub fn run(config: &Config, out: &Output, access: &StateAccess, cmd: AccessCommand) -> CmdResult {
    let mirror = refresh(config, access, Intent::Read("access"))?;
    let model = &mirror.model;
    let access = Access::build(model);
    match cmd {
        AccessCommand::Explain { user, record } => {
            let user = known_user(model, &user)?;
            let record: RecordRef = record
                .parse()
                .map_err(|e: String| usage(anyhow::anyhow!("--record: {e}")))?;
            let decision = access
                .decide(&user, &record)
                .map_err(|e| usage(anyhow::anyhow!(e)))?;
            let overrides = mirror.state.scope_overrides(&user).map_err(runtime)?;
            let resolved = scope::resolve(&config.scope, model, &user, &overrides)
                .map_err(|e| usage(anyhow::anyhow!("scope of {user}: {e}")))?;
            let now = chrono::Utc::now();
            let verdict = sync_verdict(&access, &user, &resolved.scope, &record, now)
                .map_err(|e| usage(anyhow::anyhow!(e)))?;
            let mut denied = Map::new();
            for (op, line) in decision.denied.iter().zip(decision.denial_lines()) {
                denied.insert(op.0.to_string(), Value::String(line));
            }
            let value = json!({
                "user": user,
                "record": record.to_string(),
                "read": decision.read,
                "edit": decision.edit,
                "create": decision.create,
                "delete": decision.delete,
                "reasons": decision.reason_lines(),
                "level": decision.level,
                "denied": denied,
                "sync": {
                    "synced": verdict.synced,
                    "reasons": verdict.reasons,
                    "scope_fingerprint": resolved.fingerprint,
                },
            });
            out.emit(&value, || {
                let mut text = format!("{user} → {record}\n");
                for op in Operation::ALL {
                    let allowed = decision.allows(op);
                    let why = decision
                        .denied
                        .iter()
                        .zip(decision.denial_lines())
                        .find(|((o, _), _)| *o == op)
                        .map(|(_, line)| format!("   ({line})"))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "  {:<7} {}{why}\n",
                        op.as_str(),
                        if allowed { "yes" } else { "no" }
                    ));
                }
                text.push_str("because:\n");
                for line in decision.reason_lines() {
                    text.push_str(&format!("  - {line}\n"));
                }
                text.push_str(&format!(
                    "synced to {user}'s Google account: {}\n",
                    if verdict.synced { "yes" } else { "no" }
                ));
                for line in &verdict.reasons {
                    text.push_str(&format!("  - {line}\n"));
                }
                text
            })
        }
        AccessCommand::List { user, kind } => {
            let user = known_user(model, &user)?;
            let kinds: Vec<ObjectKind> = match kind {
                None => ObjectKind::ALL.to_vec(),
                Some(k) => vec![k
                    .parse()
                    .map_err(|e: String| usage(anyhow::anyhow!("--kind: {e}")))?],
            };
            let mut value = Map::new();
            value.insert("user".into(), json!(user));
            let mut lists = Vec::new();
            for kind in kinds {
                let set = access
                    .readable(&user, kind)
                    .map_err(|e| usage(anyhow::anyhow!(e)))?;
                let ids: Vec<String> = set.iter().map(|id| id.to_string()).collect();
                value.insert(kind.to_string(), json!(ids));
                lists.push((kind, ids));
            }
            out.emit(&Value::Object(value), || {
                let mut text = format!("{user} may read:\n");
                for (kind, ids) in &lists {
                    text.push_str(&format!(
                        "  {kind} ({}): {}\n",
                        ids.len(),
                        if ids.is_empty() {
                            "(none)".to_owned()
                        } else {
                            ids.join(", ")
                        }
                    ));
                }
                text
            })
        }
    }
}
