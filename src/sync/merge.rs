//! Field-level three-way merge of synced forms against their stored base.
//!
//! For each field: a side that did not change takes the other side's value; equal changes
//! agree; free-text fields changed on both sides first try a line-level three-way merge
//! (diffs from `similar`); what is left is a conflict resolved by the user's policy, and every
//! conflict is recorded with the base and both values. CRM-owned fields (a contact's
//! organization, an event's attendees) always take the CRM value.

use crate::model::synced::{crm_owned_fields, text_fields};
use crate::model::ObjectKind;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use similar::{capture_diff_slices, Algorithm, DiffOp};

/// How a field changed on both sides to different values is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    #[default]
    CrmWins,
    GoogleWins,
    /// The side changed most recently wins; ties go to the CRM.
    NewestWins,
}

/// Which side a conflicting field was settled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Crm,
    Google,
}

/// One field changed on both sides to different values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldConflict {
    pub field: String,
    pub base: Value,
    pub crm: Value,
    pub google: Value,
    pub resolution: Resolution,
    pub policy: ConflictPolicy,
}

/// The outcome of a merge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Merged<T> {
    pub value: T,
    pub conflicts: Vec<FieldConflict>,
    /// Free-text fields whose line-level merge kept both sides' edits.
    pub text_merged: Vec<String>,
    /// CRM-owned fields changed on the phone, reverted to the CRM's value.
    pub reverted: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot merge: {0}")]
pub struct MergeError(String);

/// Three-way merge of `crm` and `google` against `base`.
pub fn merge<T: Serialize + DeserializeOwned>(
    kind: ObjectKind,
    base: &T,
    crm: &T,
    google: &T,
    policy: ConflictPolicy,
    crm_changed_at: Option<DateTime<Utc>>,
    google_changed_at: Option<DateTime<Utc>>,
) -> Result<Merged<T>, MergeError> {
    let to_obj = |v: &T| match serde_json::to_value(v) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(MergeError("not a record".into())),
        Err(e) => Err(MergeError(e.to_string())),
    };
    let (b, c, g) = (to_obj(base)?, to_obj(crm)?, to_obj(google)?);
    let mut out = serde_json::Map::new();
    let mut conflicts = Vec::new();
    let mut text_merged = Vec::new();
    let mut reverted = Vec::new();
    let null = Value::Null;
    for (field, crm_value) in &c {
        let base_value = b.get(field).unwrap_or(&null);
        let google_value = g.get(field).unwrap_or(&null);
        let crm_changed = crm_value != base_value;
        let google_changed = google_value != base_value;
        let value = if crm_owned_fields(kind).contains(&field.as_str()) {
            if google_changed && google_value != crm_value {
                reverted.push(field.clone());
            }
            crm_value.clone()
        } else if !google_changed || crm_value == google_value {
            crm_value.clone()
        } else if !crm_changed {
            google_value.clone()
        } else {
            let text_merge = if text_fields(kind).contains(&field.as_str()) {
                match (
                    base_value.as_str(),
                    crm_value.as_str(),
                    google_value.as_str(),
                ) {
                    (Some(bt), Some(ct), Some(gt)) => merge_lines(bt, ct, gt),
                    _ => None,
                }
            } else {
                None
            };
            match text_merge {
                Some(text) => {
                    text_merged.push(field.clone());
                    Value::String(text)
                }
                None => {
                    let resolution = decide(policy, crm_changed_at, google_changed_at);
                    conflicts.push(conflict(
                        field,
                        base_value,
                        crm_value,
                        google_value,
                        resolution,
                        policy,
                    ));
                    pick(resolution, crm_value, google_value)
                }
            }
        };
        out.insert(field.clone(), value);
    }
    let value =
        serde_json::from_value(Value::Object(out)).map_err(|e| MergeError(e.to_string()))?;
    Ok(Merged {
        value,
        conflicts,
        text_merged,
        reverted,
    })
}

fn conflict(
    field: &str,
    base: &Value,
    crm: &Value,
    google: &Value,
    resolution: Resolution,
    policy: ConflictPolicy,
) -> FieldConflict {
    FieldConflict {
        field: field.to_owned(),
        base: base.clone(),
        crm: crm.clone(),
        google: google.clone(),
        resolution,
        policy,
    }
}

fn pick(resolution: Resolution, crm: &Value, google: &Value) -> Value {
    match resolution {
        Resolution::Crm => crm.clone(),
        Resolution::Google => google.clone(),
    }
}

fn decide(
    policy: ConflictPolicy,
    crm_changed_at: Option<DateTime<Utc>>,
    google_changed_at: Option<DateTime<Utc>>,
) -> Resolution {
    match policy {
        ConflictPolicy::CrmWins => Resolution::Crm,
        ConflictPolicy::GoogleWins => Resolution::Google,
        ConflictPolicy::NewestWins => match (crm_changed_at, google_changed_at) {
            (Some(c), Some(g)) if g > c => Resolution::Google,
            (None, Some(_)) => Resolution::Google,
            _ => Resolution::Crm,
        },
    }
}

/// One side's change to a range of base lines.
#[derive(Debug, Clone, PartialEq)]
struct Edit<'a> {
    start: usize,
    end: usize,
    lines: Vec<&'a str>,
}

fn edits<'a>(base: &[&'a str], side: &[&'a str]) -> Vec<Edit<'a>> {
    // Positions in the base are tracked from the ops' lengths: an insert's position is where
    // the base cursor stands after the preceding ops.
    let mut cursor = 0;
    let mut out = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, base, side) {
        match op {
            DiffOp::Equal { len, .. } => cursor += len,
            DiffOp::Delete { old_len, .. } => {
                out.push(Edit {
                    start: cursor,
                    end: cursor + old_len,
                    lines: Vec::new(),
                });
                cursor += old_len;
            }
            DiffOp::Insert {
                new_index, new_len, ..
            } => out.push(Edit {
                start: cursor,
                end: cursor,
                lines: side[new_index..new_index + new_len].to_vec(),
            }),
            DiffOp::Replace {
                old_len,
                new_index,
                new_len,
                ..
            } => {
                out.push(Edit {
                    start: cursor,
                    end: cursor + old_len,
                    lines: side[new_index..new_index + new_len].to_vec(),
                });
                cursor += old_len;
            }
        }
    }
    // Adjacent edits of one side (a delete followed by an insert at its end) form one edit.
    let mut joined: Vec<Edit<'a>> = Vec::with_capacity(out.len());
    for edit in out {
        match joined.last_mut() {
            Some(last) if last.end == edit.start => {
                last.end = edit.end;
                last.lines.extend(edit.lines);
            }
            _ => joined.push(edit),
        }
    }
    joined
}

fn split_lines(text: &str) -> Vec<&str> {
    text.split('\n').collect()
}

/// Line-level three-way merge: `Some(text)` when the two sides' edits touch separate lines of
/// the base (identical edits count once), `None` when they overlap.
pub fn merge_lines(base: &str, ours: &str, theirs: &str) -> Option<String> {
    let (b, o, t) = (split_lines(base), split_lines(ours), split_lines(theirs));
    let mut ours_edits = edits(&b, &o).into_iter().peekable();
    let mut theirs_edits = edits(&b, &t).into_iter().peekable();
    let mut merged: Vec<&str> = Vec::new();
    let mut pos = 0;
    let overlaps = |a: &Edit, b: &Edit| {
        // Two edits conflict when their base ranges intersect, or both insert at one point,
        // or one inserts inside/at the edge of the other's replaced range.
        if a.start == a.end && b.start == b.end {
            return a.start == b.start;
        }
        a.start < b.end.max(b.start + 1) && b.start < a.end.max(a.start + 1)
    };
    let bound = b.len() + o.len() + t.len() + 2;
    for _ in 0..bound {
        let next = match (ours_edits.peek(), theirs_edits.peek()) {
            (None, None) => break,
            (Some(a), Some(c)) if overlaps(a, c) => {
                if a == c {
                    theirs_edits.next();
                    ours_edits.next()
                } else {
                    return None;
                }
            }
            (Some(a), Some(c)) => {
                if (a.start, a.end) <= (c.start, c.end) {
                    ours_edits.next()
                } else {
                    theirs_edits.next()
                }
            }
            (Some(_), None) => ours_edits.next(),
            (None, Some(_)) => theirs_edits.next(),
        };
        let Some(edit) = next else { break };
        if edit.start < pos {
            return None;
        }
        merged.extend_from_slice(&b[pos..edit.start]);
        merged.extend_from_slice(&edit.lines);
        pos = edit.end;
    }
    merged.extend_from_slice(&b[pos.min(b.len())..]);
    Some(merged.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SyncedContact;

    /// Merges contacts with no change times (the time only matters for `newest_wins`).
    fn merge_contacts(
        base: &SyncedContact,
        crm: &SyncedContact,
        google: &SyncedContact,
        policy: ConflictPolicy,
    ) -> Merged<SyncedContact> {
        merge(ObjectKind::Contact, base, crm, google, policy, None, None).unwrap()
    }

    fn contact(first: &str, title: &str, notes: &str) -> SyncedContact {
        SyncedContact {
            first_name: first.into(),
            title: title.into(),
            notes: notes.into(),
            ..SyncedContact::default()
        }
    }

    #[test]
    fn one_sided_changes_are_taken_field_by_field() {
        let base = contact("Ada", "CTO", "");
        let crm = contact("Ada", "CEO", "");
        let google = contact("Ada L.", "CTO", "");
        let m = merge_contacts(&base, &crm, &google, ConflictPolicy::CrmWins);
        assert_eq!(m.value, contact("Ada L.", "CEO", ""));
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn both_sides_changing_a_field_is_a_conflict_settled_by_policy() {
        let base = contact("Ada", "CTO", "");
        let crm = contact("Ada", "CEO", "");
        let google = contact("Ada", "Chair", "");
        let m = merge_contacts(&base, &crm, &google, ConflictPolicy::CrmWins);
        assert_eq!(m.value.title, "CEO");
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].field, "title");
        assert_eq!(m.conflicts[0].google, Value::String("Chair".into()));
        let m = merge_contacts(&base, &crm, &google, ConflictPolicy::GoogleWins);
        assert_eq!(m.value.title, "Chair");
        let early = "2026-01-01T00:00:00Z".parse().ok();
        let late = "2026-01-02T00:00:00Z".parse().ok();
        let m = merge(
            ObjectKind::Contact,
            &base,
            &crm,
            &google,
            ConflictPolicy::NewestWins,
            early,
            late,
        )
        .unwrap();
        assert_eq!(m.value.title, "Chair");
        let m = merge(
            ObjectKind::Contact,
            &base,
            &crm,
            &google,
            ConflictPolicy::NewestWins,
            late,
            early,
        )
        .unwrap();
        assert_eq!(m.value.title, "CEO");
        let m = merge(
            ObjectKind::Contact,
            &base,
            &crm,
            &google,
            ConflictPolicy::NewestWins,
            late,
            late,
        )
        .unwrap();
        assert_eq!(m.value.title, "CEO", "ties go to the CRM");
    }

    #[test]
    fn equal_changes_on_both_sides_agree() {
        let base = contact("Ada", "CTO", "");
        let both = contact("Ada", "CEO", "");
        let m = merge_contacts(&base, &both, &both, ConflictPolicy::GoogleWins);
        assert_eq!(m.value, both);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn notes_edited_on_both_sides_keep_both_sides_lines() {
        let base = contact("Ada", "CTO", "line one\nline two\nline three");
        let crm = contact("Ada", "CTO", "line one (crm)\nline two\nline three");
        let google = contact(
            "Ada",
            "CTO",
            "line one\nline two\nline three\nadded on the phone",
        );
        let m = merge_contacts(&base, &crm, &google, ConflictPolicy::CrmWins);
        assert_eq!(
            m.value.notes,
            "line one (crm)\nline two\nline three\nadded on the phone"
        );
        assert_eq!(m.text_merged, vec!["notes".to_string()]);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn overlapping_text_edits_fall_back_to_the_policy() {
        let base = contact("Ada", "CTO", "a\nb");
        let crm = contact("Ada", "CTO", "a\nB from crm");
        let google = contact("Ada", "CTO", "a\nB from phone");
        let m = merge_contacts(&base, &crm, &google, ConflictPolicy::GoogleWins);
        assert_eq!(m.value.notes, "a\nB from phone");
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].field, "notes");
    }

    #[test]
    fn crm_owned_fields_are_reverted() {
        let mut base = contact("Ada", "CTO", "");
        base.organization = "Globex".into();
        let crm = base.clone();
        let mut google = base.clone();
        google.organization = "Initech".into();
        let m = merge_contacts(&base, &crm, &google, ConflictPolicy::GoogleWins);
        assert_eq!(m.value.organization, "Globex");
        assert_eq!(m.reverted, vec!["organization".to_string()]);
    }

    #[test]
    fn line_merge_cases() {
        assert_eq!(
            merge_lines("a\nb\nc", "a\nb\nc", "a\nb\nc").as_deref(),
            Some("a\nb\nc")
        );
        assert_eq!(
            merge_lines("a\nb\nc", "X\nb\nc", "a\nb\nY").as_deref(),
            Some("X\nb\nY")
        );
        assert_eq!(
            merge_lines("a\nb\nc", "a\nc", "a\nb\nc\nd").as_deref(),
            Some("a\nc\nd")
        );
        assert_eq!(
            merge_lines("a", "a\nx", "a\ny"),
            None,
            "two inserts at one point"
        );
        assert_eq!(
            merge_lines("a\nb", "a\nx\nb", "a\nx\nb").as_deref(),
            Some("a\nx\nb")
        );
        assert_eq!(merge_lines("", "x", "y"), None);
        assert_eq!(merge_lines("", "", "y").as_deref(), Some("y"));
    }

    proptest::proptest! {
        #[test]
        fn line_merge_takes_a_lone_side_exactly(base in "[abc\n]{0,12}", side in "[abcd\n]{0,12}") {
            proptest::prop_assert_eq!(merge_lines(&base, &side, &base), Some(side.clone()));
            proptest::prop_assert_eq!(merge_lines(&base, &base, &side), Some(side.clone()));
            proptest::prop_assert_eq!(merge_lines(&base, &side, &side), Some(side));
        }

        #[test]
        fn line_merge_is_symmetric(base in "[abc\n]{0,10}", a in "[abcd\n]{0,10}", b in "[abce\n]{0,10}") {
            proptest::prop_assert_eq!(merge_lines(&base, &a, &b), merge_lines(&base, &b, &a));
        }
    }
}
