use super::*;

#[test]
fn layers_list_apply_and_clear_their_values() {
    let mut layer = ScopeLayer {
        contact: Some(SelectionMode::Team),
        days_past: Some(3),
        ..ScopeLayer::default()
    };
    let values = layer.values();
    assert_eq!(values.len(), 2);
    assert_eq!(values[&ScopeKey::Contact], serde_json::json!("team"));
    assert_eq!(values[&ScopeKey::DaysPast], serde_json::json!(3));
    layer.apply(&ScopeLayer {
        days_past: Some(9),
        direction: Some(Direction::TwoWay),
        ..ScopeLayer::default()
    });
    assert_eq!(layer.days_past, Some(9));
    assert_eq!(layer.contact, Some(SelectionMode::Team));
    layer.clear(ScopeKey::Contact);
    assert!(!layer.is_set(ScopeKey::Contact));
    assert!(layer.is_set(ScopeKey::Direction));
    for key in ScopeKey::ALL {
        assert_eq!(key.as_str().parse::<ScopeKey>(), Ok(key));
    }
}

#[test]
fn edits_parse_lists_and_inherit() {
    let edit = ScopeEdit::parse(&[
        "contact_tags= vip , partner,,",
        "event_organizations=",
        "event=inherit",
    ])
    .unwrap();
    assert_eq!(
        edit.set.contact_tags,
        Some(vec!["vip".to_owned(), "partner".to_owned()])
    );
    assert_eq!(edit.set.event_organizations, Some(vec![]));
    assert!(edit.inherit.contains(&ScopeKey::Event));
    let current = ScopeLayer {
        event: Some(SelectionMode::None),
        ..ScopeLayer::default()
    };
    let next = edit.applied_to(&current);
    assert_eq!(next.event, None);
    assert!(ScopeEdit::parse(&["contact_organizations=bad id"]).is_err());
}

#[test]
fn selections_render_for_messages() {
    let s = Selection {
        mode: SelectionMode::Filter,
        tags: ["vip".to_owned()].into(),
        organizations: [CrmId::new("o1").unwrap()].into(),
    };
    assert_eq!(s.to_string(), "filter (tags vip; organizations o1)");
    assert_eq!(
        Selection::mode(SelectionMode::AllVisible).to_string(),
        "all_visible"
    );
}

#[test]
fn resolve_all_reports_per_user_errors() {
    let model: OrgModel = crate::security::synthetic::small_org(3);
    let first = model.users.keys().next().cloned().unwrap();
    let mut overrides = BTreeMap::new();
    overrides.insert(
        first.clone(),
        ScopeLayer {
            contact: Some(SelectionMode::Filter),
            ..ScopeLayer::default()
        },
    );
    let all = resolve_all(&ScopeConfig::default(), &model, &overrides);
    assert_eq!(all.len(), model.users.len());
    assert!(matches!(all[&first], Err(ScopeError::EmptyFilter { .. })));
    assert!(all
        .iter()
        .filter(|(u, _)| **u != first)
        .all(|(_, r)| r.is_ok()));
}
