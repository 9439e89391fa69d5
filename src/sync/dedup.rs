//! The duplicate sweep: after every full listing, Google items of one account that carry the
//! same crmsync marker (contacts' `clientData` `crmsync_id`, events' private extended property)
//! are found, one survivor is kept and the others are deleted from Google and audited.
//!
//! Such duplicates come from before the writer lock existed (racing runs), from restored
//! state DBs, or from a phone copying an item with our marker. The planner links one item per
//! record and would leave the others on the phone for ever; sweeping them first keeps the plan
//! table untouched.
//!
//! The survivor is the linked item; when none is linked, one deterministic item
//! ([`choose_survivor`]), which the planner then relinks as usual. Exceptions of a recurring
//! series carry their master's marker and are never duplicates. Deletions that fail leave the
//! sync token unsaved, so the next pass lists in full and sweeps again.

use super::engine::{Engine, SyncOptions, UserReport};
use super::execute::{ItemError, KeyedOp, Outgoing, RemoteKind};
use super::plan::{GoogleStep, Link};
use super::remote::{GoogleUser, Listing, OpKey, OpOutcome, Remote, RemoteChange, RemoteErrorKind};
use crate::model::{CrmId, RecordRef, SyncedContact, SyncedEvent};
use crate::store::{StateDb, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the survivor choice knows of one item carrying a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub google_id: &'a str,
    /// A link of the record points at this item (directly or by a previous resource name).
    pub linked: bool,
    /// Contacts: a member of the user's crmsync group (events: always).
    pub in_container: bool,
}

/// The index of the item to keep: the linked one; else one in the container; ties broken by
/// the smallest Google id, so every pass (and every racing process) picks the same one.
pub fn choose_survivor(candidates: &[Candidate<'_>]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            (!a.linked, !a.in_container, a.google_id).cmp(&(
                !b.linked,
                !b.in_container,
                b.google_id,
            ))
        })
        .map(|(i, _)| i)
}

/// Several Google items carrying one record's marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateSet {
    pub crm_id: CrmId,
    pub survivor: String,
    pub survivor_linked: bool,
    /// The items to delete.
    pub extras: Vec<String>,
}

/// Finds the duplicate sets of a full listing (pure).
pub fn find_duplicates<T>(
    changes: &[RemoteChange<T>],
    links: &BTreeMap<CrmId, Link<T>>,
) -> Vec<DuplicateSet> {
    let mut by_marker: BTreeMap<&CrmId, Vec<Candidate<'_>>> = BTreeMap::new();
    for change in changes {
        let RemoteChange::Present(item) = change else {
            continue;
        };
        let Some(marker) = &item.crm_id else { continue };
        if item.recurring_parent.is_some() {
            continue;
        }
        let linked = links
            .get(marker)
            .and_then(|l| l.google_id.as_deref())
            .is_some_and(|g| g == item.google_id || item.previous_ids.iter().any(|p| p == g));
        by_marker.entry(marker).or_default().push(Candidate {
            google_id: &item.google_id,
            linked,
            in_container: item.in_container,
        });
    }
    by_marker
        .into_iter()
        .filter(|(_, items)| items.len() > 1)
        .filter_map(|(marker, items)| {
            let keep = choose_survivor(&items)?;
            Some(DuplicateSet {
                crm_id: marker.clone(),
                survivor: items[keep].google_id.to_owned(),
                survivor_linked: items[keep].linked,
                extras: items
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != keep)
                    .map(|(_, c)| c.google_id.to_owned())
                    .collect(),
            })
        })
        .collect()
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepOutcome {
    /// Duplicates deleted from Google (or found already gone).
    pub removed: usize,
    pub errors: Vec<ItemError>,
}

/// Where a sweep runs: one user's account and container.
pub struct SweepCtx<'a, R> {
    pub remote: &'a R,
    pub state: &'a StateDb,
    pub google_user: &'a GoogleUser,
    pub container: &'a str,
    pub run_id: &'a str,
}

/// Sweeps the duplicates of a full listing (an incremental one is returned as it is):
/// deletes the extras from Google in one batch, audits each, and returns the listing as
/// the planner should see it (deleted extras as deletions). If any deletion failed, the
/// listing's sync token is dropped, so the next pass lists in full and sweeps again.
pub async fn sweep<T: RemoteKind, R: Remote>(
    ctx: &SweepCtx<'_, R>,
    mut listing: Listing<T>,
    links: &BTreeMap<CrmId, Link<T>>,
) -> Result<(Listing<T>, SweepOutcome), StoreError> {
    let mut outcome = SweepOutcome::default();
    if !listing.full {
        return Ok((listing, outcome));
    }
    let sets = find_duplicates(&listing.changes, links);
    if sets.is_empty() {
        return Ok((listing, outcome));
    }
    let items: BTreeMap<&str, &super::remote::RemoteItem<T>> = listing
        .changes
        .iter()
        .filter_map(|c| match c {
            RemoteChange::Present(i) => Some((i.google_id.as_str(), i)),
            RemoteChange::Deleted { .. } => None,
        })
        .collect();
    // Extras crmsync created are deleted; an extra it did not create (a contact of the user's
    // that carries our marker) is released — a user's own contact is never deleted.
    let mut outgoing = Vec::new();
    let mut owners = Vec::new();
    for set in &sets {
        for extra in &set.extras {
            let item = items.get(extra.as_str());
            let step = match item {
                Some(i) if !i.created_by_us => GoogleStep::Release {
                    google_id: extra.clone(),
                    base: None,
                },
                _ => GoogleStep::Delete {
                    google_id: extra.clone(),
                    etag: item.map(|i| i.etag.clone()),
                },
            };
            outgoing.push(Outgoing {
                crm_id: set.crm_id.clone(),
                step,
                pre_link: None,
                marked: false,
            });
            owners.push((set, extra.clone()));
        }
    }
    let ops: Vec<T::Op> = outgoing.iter().map(T::to_op).collect();
    // Answers are found by the op they name, never by position.
    let mut answers: BTreeMap<OpKey, Result<OpOutcome<T>, super::remote::RemoteError>> =
        match T::send(ctx.remote, ctx.google_user, ctx.container, &ops).await {
            Ok(results) => results.into_iter().map(|r| (r.key, r.result)).collect(),
            Err(e) => ops.iter().map(|op| (op.op_key(), Err(e.clone()))).collect(),
        };
    let results: Vec<Option<Result<OpOutcome<T>, super::remote::RemoteError>>> =
        ops.iter().map(|op| answers.remove(&op.op_key())).collect();
    let user = &ctx.google_user.user;
    let kind = T::KIND;
    let mut gone = Vec::new();
    ctx.state.write(|w| {
        for ((set, extra), result) in owners.iter().zip(results) {
            let record = RecordRef::new(kind, set.crm_id.clone()).to_string();
            let result = result.unwrap_or_else(|| {
                Err(super::remote::RemoteError::new(
                    RemoteErrorKind::Transient,
                    "no result for this delete",
                ))
            });
            match result {
                Ok(OpOutcome::Deleted | OpOutcome::Written(_) | OpOutcome::Released(_)) => {}
                Err(e) if e.kind == RemoteErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(
                        user = %user,
                        record = %record,
                        error_kind = ?e.kind,
                        "could not delete a duplicate"
                    );
                    outcome.errors.push(ItemError {
                        kind,
                        record: Some(record.clone()),
                        google_id: Some(extra.clone()),
                        error: format!("deleting a duplicate: {e}"),
                    });
                    w.audit(
                        ctx.run_id,
                        Some(user),
                        Some(&record),
                        "error",
                        &serde_json::json!({"error": e.to_string(), "case": "duplicate", "google_id": extra}),
                    )?;
                    continue;
                }
            }
            let removed_item = items
                .get(extra.as_str())
                .and_then(|i| serde_json::to_value(&i.data).ok());
            w.audit(
                ctx.run_id,
                Some(user),
                Some(&record),
                "duplicate_removed",
                &serde_json::json!({
                    "google_id": extra,
                    "released": items.get(extra.as_str()).is_some_and(|i| !i.created_by_us),
                    "kept": set.survivor,
                    "kept_was_linked": set.survivor_linked,
                    "removed_item": removed_item,
                }),
            )?;
            gone.push(extra.clone());
        }
        Ok(())
    })?;
    outcome.removed = gone.len();
    tracing::info!(
        user = %user,
        kind = %kind,
        sets = sets.len(),
        removed = outcome.removed,
        failed = outcome.errors.len(),
        "duplicate sweep"
    );
    for change in &mut listing.changes {
        if let RemoteChange::Present(item) = change {
            if gone.contains(&item.google_id) {
                *change = RemoteChange::Deleted {
                    google_id: item.google_id.clone(),
                };
            }
        }
    }
    if !outcome.errors.is_empty() {
        listing.next_sync_token = None;
    }
    Ok((listing, outcome))
}

/// One kind's part of [`Engine::sweep_duplicates`]: the container, the listing, the links.
type KindInput<'a, T> = (&'a Option<String>, Listing<T>, &'a BTreeMap<CrmId, Link<T>>);

impl<R: Remote> Engine<'_, R> {
    /// Sweeps both kinds' listings (not in dry runs, not without a container) and records
    /// what was removed (and what failed) in the user's report.
    pub(crate) async fn sweep_duplicates(
        &self,
        (google_user, options, run_id, report): (&GoogleUser, &SyncOptions, &str, &mut UserReport),
        (group, contacts, contact_links): KindInput<'_, SyncedContact>,
        (calendar, events, event_links): KindInput<'_, SyncedEvent>,
    ) -> Result<(Listing<SyncedContact>, Listing<SyncedEvent>), StoreError> {
        let (Some(group), Some(calendar), false) = (group, calendar, options.dry_run) else {
            return Ok((contacts, events));
        };
        let ctx = |container| SweepCtx {
            remote: self.remote,
            state: self.state,
            google_user,
            container,
            run_id,
        };
        let (contacts, swept) = sweep(&ctx(group), contacts, contact_links).await?;
        report.contacts.duplicates_removed += swept.removed;
        report.errors.extend(swept.errors);
        let (events, swept) = sweep(&ctx(calendar), events, event_links).await?;
        report.events.duplicates_removed += swept.removed;
        report.errors.extend(swept.errors);
        Ok((contacts, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SyncedContact;
    use crate::sync::plan::{LinkOrigin, LinkState};
    use crate::sync::remote::RemoteItem;

    fn c(google_id: &str, linked: bool, in_container: bool) -> Candidate<'_> {
        Candidate {
            google_id,
            linked,
            in_container,
        }
    }

    #[test]
    fn survivor_choice_table() {
        let cases: &[(&str, Vec<Candidate<'_>>, Option<usize>)] = &[
            ("nothing to choose from", vec![], None),
            ("a single item", vec![c("b", false, true)], Some(0)),
            (
                "the linked one, even with a larger id",
                vec![c("a", false, true), c("z", true, true)],
                Some(1),
            ),
            (
                "the linked one, even outside the container",
                vec![c("a", false, true), c("b", true, false)],
                Some(1),
            ),
            (
                "none linked: the one in the container",
                vec![c("a", false, false), c("b", false, true)],
                Some(1),
            ),
            (
                "none linked, all in the container: the smallest id",
                vec![c("people/c9", false, true), c("people/c10", false, true)],
                Some(1),
            ),
            (
                "order of the listing does not matter",
                vec![
                    c("x", false, true),
                    c("m", false, true),
                    c("q", false, true),
                ],
                Some(1),
            ),
        ];
        for (name, candidates, want) in cases {
            assert_eq!(choose_survivor(candidates), *want, "{name}");
            let mut reversed = candidates.clone();
            reversed.reverse();
            let got = choose_survivor(&reversed).map(|i| reversed[i].google_id);
            assert_eq!(
                got,
                want.map(|i| candidates[i].google_id),
                "{name} (reversed)"
            );
        }
    }

    fn item(google_id: &str, marker: Option<&str>) -> RemoteChange<SyncedContact> {
        RemoteChange::Present(RemoteItem {
            google_id: google_id.into(),
            etag: format!("etag-{google_id}"),
            crm_id: marker.map(|m| CrmId::new(m).unwrap()),
            data: SyncedContact::default(),
            in_container: true,
            previous_ids: Vec::new(),
            recurring_parent: None,
            updated: None,
            raw: serde_json::Value::Null,
            created_by_us: true,
        })
    }

    fn link(crm_id: &str, google_id: &str) -> (CrmId, Link<SyncedContact>) {
        let id = CrmId::new(crm_id).unwrap();
        (
            id.clone(),
            Link {
                crm_id: id,
                state: LinkState::Linked,
                google_id: Some(google_id.into()),
                etag: None,
                generation: 0,
                base: None,
                crm_version: Some(1),
                origin: LinkOrigin::Created,
            },
        )
    }

    #[test]
    fn duplicates_are_grouped_by_marker_and_the_linked_item_survives() {
        let mut exception = item("g-series_20261201", Some("e1"));
        if let RemoteChange::Present(i) = &mut exception {
            i.recurring_parent = Some("g1".into());
        }
        let changes = vec![
            item("g1", Some("e1")),
            item("g0", Some("e1")),
            exception,
            item("g2", Some("e2")),
            item("g3", None),
            item("g4", None),
            RemoteChange::Deleted {
                google_id: "g5".into(),
            },
            item("g7", Some("e3")),
            item("g6", Some("e3")),
            item("g8", Some("e3")),
        ];
        let links: BTreeMap<_, _> = [link("e1", "g1"), link("e2", "g2")].into_iter().collect();
        let sets = find_duplicates(&changes, &links);
        assert_eq!(
            sets,
            vec![
                DuplicateSet {
                    crm_id: CrmId::new("e1").unwrap(),
                    survivor: "g1".into(),
                    survivor_linked: true,
                    extras: vec!["g0".into()],
                },
                DuplicateSet {
                    crm_id: CrmId::new("e3").unwrap(),
                    survivor: "g6".into(),
                    survivor_linked: false,
                    extras: vec!["g7".into(), "g8".into()],
                },
            ],
            "unmarked items and series exceptions are never duplicates"
        );
    }

    #[test]
    fn a_link_following_a_renamed_contact_still_marks_the_survivor() {
        let mut renamed = item("people/c2", Some("c1"));
        if let RemoteChange::Present(i) = &mut renamed {
            i.previous_ids = vec!["people/c9".into()];
        }
        let changes = vec![item("people/c1", Some("c1")), renamed];
        let links: BTreeMap<_, _> = [link("c1", "people/c9")].into_iter().collect();
        let sets = find_duplicates(&changes, &links);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].survivor, "people/c2");
        assert!(sets[0].survivor_linked);
        assert_eq!(sets[0].extras, vec!["people/c1".to_owned()]);
    }
}
