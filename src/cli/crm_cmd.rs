//! `crmsync crm load|show`: the embedded CRM (other sources are refused with exit 2).

use super::{runtime, usage, CmdResult, CrmCommand, Output};
use crmsync::config::{Config, CrmKind};
use crmsync::crm::{orgfile, sqlite::SqliteCrm, EntityKind};

pub fn run(config: &Config, out: &Output, cmd: CrmCommand) -> CmdResult {
    match config.crm.source {
        CrmKind::Sqlite => {}
        CrmKind::Amocrm => {
            return Err(usage(anyhow::anyhow!(
                "`crmsync crm load` and `crm show` work on the embedded CRM only, and this \
                 configuration's CRM is amoCRM ([crm] source = \"amocrm\"); change records \
                 in amoCRM itself, and use `crmsync access explain` to see one as crmsync does"
            )))
        }
    }
    match cmd {
        CrmCommand::Load { file } => {
            let model = orgfile::load_path(&file).map_err(usage)?;
            let mut crm = SqliteCrm::open(&config.crm.path).map_err(runtime)?;
            let report = crm.load(&model).map_err(runtime)?;
            out.emit(&report, || {
                let mut text = format!(
                    "Loaded {} into {}: {} change(s).\n",
                    file.display(),
                    config.crm.path.display(),
                    report.total_changes()
                );
                for kind in EntityKind::ALL {
                    let get = |m: &std::collections::BTreeMap<EntityKind, usize>| {
                        m.get(&kind).copied().unwrap_or(0)
                    };
                    let (c, u, d, s) = (
                        get(&report.created),
                        get(&report.updated),
                        get(&report.deleted),
                        get(&report.unchanged),
                    );
                    if c + u + d + s > 0 {
                        text.push_str(&format!(
                            "  {:<16} {c} new, {u} changed, {d} removed, {s} unchanged\n",
                            kind.as_str()
                        ));
                    }
                }
                text
            })
        }
        CrmCommand::Show { kind, id } => {
            let kind: EntityKind = kind
                .parse()
                .map_err(|e: String| usage(anyhow::anyhow!(e)))?;
            let crm = SqliteCrm::open(&config.crm.path).map_err(runtime)?;
            let (version, entity) = crm
                .get(kind, &id)
                .map_err(runtime)?
                .ok_or_else(|| usage(anyhow::anyhow!("no {kind} with id {id:?} in the CRM")))?;
            let value = serde_json::json!({"kind": kind, "version": version, "record": entity});
            out.emit(&value, || {
                let body = serde_json::to_string_pretty(&entity).unwrap_or_default();
                format!("{kind} {id} (version {version})\n{body}\n")
            })
        }
    }
}
