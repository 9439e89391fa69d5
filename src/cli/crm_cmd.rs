//! `crmsync crm load|export|show`: the embedded CRM (other sources are refused with exit 2).

use super::state_access::{open_embedded_crm, open_or_create_crm};
use super::{runtime, usage, CmdResult, CrmCommand, Output};
use crmsync::config::{Config, CrmKind};
use crmsync::crm::{orgfile, EntityKind};

pub fn run(config: &Config, out: &Output, cmd: CrmCommand) -> CmdResult {
    let kind = config.crm.source;
    if kind != CrmKind::Sqlite {
        return Err(usage(anyhow::anyhow!(
            "`crmsync crm load`, `crm export` and `crm show` work on the embedded CRM only, and \
             this configuration's CRM is {name} ([crm] source = \"{key}\"); change records in \
             {name} itself, and use `crmsync access explain` to see one as crmsync does",
            name = kind.name(),
            key = kind.key()
        )));
    }
    match cmd {
        CrmCommand::Load { file, force } => {
            let model = orgfile::load_path(&file).map_err(usage)?;
            let mut crm = open_or_create_crm(config)?;
            let (report, undone) = crm.load_guarded(&model, force).map_err(runtime)?;
            let Some(report) = report else {
                let lines: Vec<String> = undone.iter().map(|u| format!("  {u}")).collect();
                return Err(usage(anyhow::anyhow!(
                    "{} would undo {} write-back(s) made from phones since the last load; \
                     nothing was loaded:\n{}\nRefresh the file with `crmsync crm export FILE` \
                     and edit that, or load it anyway with --force.",
                    file.display(),
                    undone.len(),
                    lines.join("\n")
                )));
            };
            for u in &undone {
                eprintln!("warning (--force): {u}");
            }
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
        CrmCommand::Export { file } => {
            let crm = open_embedded_crm(config)?;
            let (doc, problems) = crm.export().map_err(runtime)?;
            for p in &problems {
                eprintln!("warning: {p} (not exported)");
            }
            let text = serde_json::to_string_pretty(&doc).map_err(runtime)?;
            write_private(&file, &format!("{text}\n"))
                .map_err(|e| runtime(anyhow::anyhow!("writing {}: {e}", file.display())))?;
            let count = |key: &str| doc[key].as_array().map_or(0, Vec::len);
            let value = serde_json::json!({
                "file": file.display().to_string(),
                "users": count("users"),
                "contacts": count("contacts"),
                "events": count("events"),
                "organizations": count("organizations"),
                "skipped": problems.len(),
            });
            out.emit(&value, || {
                format!(
                    "Exported {} to {}: {} users, {} contacts, {} events, {} organizations.\n",
                    config.crm.path.display(),
                    file.display(),
                    count("users"),
                    count("contacts"),
                    count("events"),
                    count("organizations")
                )
            })
        }
        CrmCommand::Show { kind, id } => {
            let kind: EntityKind = kind
                .parse()
                .map_err(|e: String| usage(anyhow::anyhow!(e)))?;
            let crm = open_embedded_crm(config)?;
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

/// Writes `text` to `path` through a private (0600) temporary file beside it, renamed into
/// place: a crash never leaves half an org file, and the CRM's data is not world-readable.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
