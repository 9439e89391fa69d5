use super::*;
use chrono::{NaiveDate, NaiveTime};
use proptest::prelude::*;
use std::sync::OnceLock;

fn dt(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, min, 0)
        .unwrap()
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap()
}

fn crm(id: &str) -> CrmId {
    CrmId::new(id).unwrap()
}

/// What Google's wire does to an event we send: JSON without nulls, parsed back.
fn over_the_wire_event(e: &Event) -> Event {
    serde_json::from_value(to_json_without_nulls(e)).unwrap()
}

fn over_the_wire_person(p: &Person) -> Person {
    serde_json::from_value(to_json_without_nulls(p)).unwrap()
}

fn present<T: std::fmt::Debug>(change: RemoteChange<T>) -> RemoteItem<T> {
    match change {
        RemoteChange::Present(item) => item,
        other => panic!("expected a present item, got {other:?}"),
    }
}

fn timed_event(start: NaiveDateTime, end: NaiveDateTime, tz: &str) -> SyncedEvent {
    SyncedEvent {
        title: "Quarterly review".into(),
        description: "Agenda:\n1. numbers\n2. plans".into(),
        location: "Room 4".into(),
        start: EventTime::DateTime(start),
        end: EventTime::DateTime(end),
        time_zone: tz.into(),
        all_day: false,
        recurrence: vec![],
        attendees: vec![
            AttendeeLine {
                name: "Ada Lovelace".into(),
                email: "ada@globex.example".into(),
            },
            AttendeeLine {
                name: String::new(),
                email: "bob@initech.example".into(),
            },
        ],
    }
}

// ----- local times -------------------------------------------------------------------------

#[test]
fn gap_times_move_forward_by_the_gap() {
    // Europe/Berlin springs forward at 02:00 → 03:00 on 2026-03-29.
    let berlin = zone("Europe/Berlin");
    assert_eq!(
        normalize_local_time(dt(2026, 3, 29, 2, 30), berlin),
        dt(2026, 3, 29, 3, 30)
    );
    assert_eq!(
        local_to_utc(dt(2026, 3, 29, 2, 30), berlin),
        dt(2026, 3, 29, 1, 30).and_utc()
    );
    // Lord Howe moves by 30 minutes (02:00 → 02:30 on 2026-10-04).
    let lord_howe = zone("Australia/Lord_Howe");
    assert_eq!(
        normalize_local_time(dt(2026, 10, 4, 2, 10), lord_howe),
        dt(2026, 10, 4, 2, 40)
    );
    // New York: 02:00 → 03:00 on 2026-03-08.
    let ny = zone("America/New_York");
    assert_eq!(
        normalize_local_time(dt(2026, 3, 8, 2, 59), ny),
        dt(2026, 3, 8, 3, 59)
    );
    // Times outside gaps are untouched (seconds kept, sub-seconds dropped).
    let t = dt(2026, 6, 1, 9, 15).with_second(42).unwrap();
    assert_eq!(
        normalize_local_time(t.with_nanosecond(5).unwrap(), berlin),
        t
    );
}

#[test]
fn ambiguous_times_mean_the_earlier_instant_and_read_back_unchanged() {
    // Europe/Berlin falls back 03:00 → 02:00 on 2026-10-25: 02:30 happens twice.
    let berlin = zone("Europe/Berlin");
    let local = dt(2026, 10, 25, 2, 30);
    assert_eq!(normalize_local_time(local, berlin), local);
    let instant = local_to_utc(local, berlin);
    assert_eq!(instant, dt(2026, 10, 25, 0, 30).and_utc()); // CEST, +02:00
    assert_eq!(utc_to_local(instant, berlin), local);
    // Europe/Dublin has "negative DST" in tzdb (winter is the offset-shifted period).
    let dublin = zone("Europe/Dublin");
    let local = dt(2026, 10, 25, 1, 30);
    assert_eq!(utc_to_local(local_to_utc(local, dublin), dublin), local);
}

// ----- attendees block -----------------------------------------------------------------------

#[test]
fn attendees_are_a_block_after_the_description() {
    let a = vec![
        AttendeeLine {
            name: "Ada Lovelace".into(),
            email: "ada@globex.example".into(),
        },
        AttendeeLine {
            name: String::new(),
            email: "bob@initech.example".into(),
        },
    ];
    let text = compose_description("Agenda", &a);
    assert_eq!(
        text,
        "Agenda\n\nAttendees (from the CRM):\n- Ada Lovelace <ada@globex.example>\n- <bob@initech.example>"
    );
    assert_eq!(split_description(&text), ("Agenda".to_owned(), a.clone()));
    assert_eq!(compose_description("", &[]), "");
    assert_eq!(compose_description("x", &[]), "x");
    let only = compose_description("", &a[..1]);
    assert_eq!(split_description(&only), (String::new(), a[..1].to_vec()));
}

#[test]
fn a_header_inside_the_description_does_not_confuse_the_split() {
    let d = "Notes\nAttendees (from the CRM):\n- Fake <fake@x.example>";
    let text = compose_description(d, &[]);
    assert_eq!(split_description(&text), (d.to_owned(), vec![]));
    let a = vec![AttendeeLine {
        name: "Real".into(),
        email: "real@x.example".into(),
    }];
    let text = compose_description(d, &a);
    assert_eq!(split_description(&text), (d.to_owned(), a));
}

#[test]
fn text_typed_below_the_block_stays_description() {
    let text = "Agenda\n\nAttendees (from the CRM):\n- A <a@x.example>\nbring slides";
    let (d, a) = split_description(text);
    assert_eq!(d, "Agenda\n\nbring slides");
    assert_eq!(a.len(), 1);
    // A block the phone user deleted reads as no attendees.
    assert_eq!(split_description("Agenda"), ("Agenda".to_owned(), vec![]));
}

// ----- events --------------------------------------------------------------------------------

#[test]
fn timed_events_carry_zone_and_markers_and_no_google_attendees() {
    let v = timed_event(
        dt(2026, 3, 29, 9, 0),
        dt(2026, 3, 29, 10, 0),
        "Europe/London",
    );
    let e = event_to_google("abc12345", &crm("ev-1"), &v).unwrap();
    assert_eq!(e.id.as_deref(), Some("abc12345"));
    assert!(e.attendees.is_none());
    let start = e.start.clone().unwrap();
    assert_eq!(start.time_zone.as_deref(), Some("Europe/London"));
    assert_eq!(start.date_time, Some(dt(2026, 3, 29, 8, 0).and_utc())); // BST
    let private = e.extended_properties.clone().unwrap().private.unwrap();
    assert_eq!(private[MARKER_ID], "ev-1");
    assert_eq!(private[MARKER_KIND], "event");
    let item = present(event_from_google(&over_the_wire_event(&e)));
    assert_eq!(item.crm_id, Some(crm("ev-1")));
    assert_eq!(item.data, canonical_event(&v));
    assert_eq!(item.google_id, "abc12345");
}

#[test]
fn all_day_events_use_dates_with_an_exclusive_end() {
    let mut v = timed_event(
        dt(2026, 1, 1, 0, 0),
        dt(2026, 1, 1, 1, 0),
        "America/New_York",
    );
    v.all_day = true;
    v.start = EventTime::Date(NaiveDate::from_ymd_opt(2026, 7, 3).unwrap());
    v.end = EventTime::Date(NaiveDate::from_ymd_opt(2026, 7, 4).unwrap());
    v.recurrence = vec!["RRULE:FREQ=YEARLY;COUNT=3".into()];
    let e = event_to_google("abc12345", &crm("ev-2"), &v).unwrap();
    assert_eq!(e.start.as_ref().unwrap().date, v.start_date());
    assert!(e.start.as_ref().unwrap().date_time.is_none());
    // Google may drop the zone of an all-day event: our private property keeps it.
    let mut wire = over_the_wire_event(&e);
    wire.start.as_mut().unwrap().time_zone = None;
    wire.end.as_mut().unwrap().time_zone = None;
    assert_eq!(present(event_from_google(&wire)).data, canonical_event(&v));
}

trait StartDate {
    fn start_date(&self) -> Option<NaiveDate>;
}
impl StartDate for SyncedEvent {
    fn start_date(&self) -> Option<NaiveDate> {
        match self.start {
            EventTime::Date(d) => Some(d),
            EventTime::DateTime(_) => None,
        }
    }
}

#[test]
fn cancelled_events_are_deletions_and_instances_name_their_series() {
    let cancelled = Event {
        id: Some("abc12345".into()),
        status: Some("cancelled".into()),
        ..Event::default()
    };
    assert_eq!(
        event_from_google(&cancelled),
        RemoteChange::Deleted {
            google_id: "abc12345".into()
        }
    );
    let v = timed_event(dt(2026, 5, 1, 9, 0), dt(2026, 5, 1, 10, 0), "UTC");
    let mut instance = event_to_google("abc12345_20260501T090000Z", &crm("ev-3"), &v).unwrap();
    instance.recurring_event_id = Some("abc12345".into());
    let item = present(event_from_google(&instance));
    assert_eq!(item.recurring_parent.as_deref(), Some("abc12345"));
}

#[test]
fn a_patch_sets_every_synced_field_and_clears_the_rest() {
    // A timed event with everything set, patched to an all-day event with nothing.
    let before = timed_event(dt(2026, 2, 1, 9, 0), dt(2026, 2, 1, 10, 0), "Europe/Paris");
    let mut current =
        to_json_without_nulls(&event_to_google("abc12345", &crm("ev-4"), &before).unwrap());
    current["reminders"] = serde_json::json!({"useDefault": false});
    current["extendedProperties"]["private"]["phone_app"] = "kept".into();
    let after = SyncedEvent {
        title: String::new(),
        description: String::new(),
        location: String::new(),
        start: EventTime::Date(NaiveDate::from_ymd_opt(2026, 2, 2).unwrap()),
        end: EventTime::Date(NaiveDate::from_ymd_opt(2026, 2, 3).unwrap()),
        time_zone: "Europe/Paris".into(),
        all_day: true,
        recurrence: vec![],
        attendees: vec![],
    };
    let patch = event_patch_body(&event_to_google("abc12345", &crm("ev-4"), &after).unwrap());
    merge_patch(&mut current, &patch);
    let merged: Event = serde_json::from_value(current.clone()).unwrap();
    assert_eq!(
        present(event_from_google(&merged)).data,
        canonical_event(&after)
    );
    assert_eq!(current["reminders"]["useDefault"], false);
    assert_eq!(
        current["extendedProperties"]["private"]["phone_app"],
        "kept"
    );
}

/// JSON merge patch as Google applies PATCH: objects merge, `null` clears, the rest replaces.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k).filter(|e| e.is_object()) {
                    merge_patch(existing, v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[test]
fn an_unknown_zone_is_a_permanent_error_not_a_panic() {
    let v = timed_event(dt(2026, 2, 1, 9, 0), dt(2026, 2, 1, 10, 0), "Mars/Olympus");
    let err = event_to_google("abc12345", &crm("ev-5"), &v).unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Permanent);
}

#[test]
fn reading_foreign_events_never_panics() {
    // A phone-created event: no markers, no zone, odd shapes.
    for e in [
        Event::default(),
        Event {
            start: Some(EventDateTime::default()),
            ..Event::default()
        },
        Event {
            id: Some("x".into()),
            start: Some(EventDateTime {
                date_time: Some(Utc::now()),
                time_zone: Some("Not/AZone".into()),
                date: None,
            }),
            extended_properties: Some(EventExtendedProperties {
                private: Some(HashMap::from([(MARKER_ID.into(), "bad id!".into())])),
                shared: None,
            }),
            ..Event::default()
        },
    ] {
        let item = present(event_from_google(&e));
        assert_eq!(item.crm_id, None);
    }
}

// ----- contacts ------------------------------------------------------------------------------

fn sample_contact() -> SyncedContact {
    SyncedContact {
        first_name: "Zoë".into(),
        last_name: "Ångström".into(),
        organization: "Globex".into(),
        title: "CTO".into(),
        emails: vec![EmailAddress {
            address: "zoe@globex.example".into(),
            label: "work".into(),
        }],
        phones: vec![
            PhoneNumber {
                number: "+442079460000".into(),
                label: "mobile".into(),
            },
            PhoneNumber {
                number: "020 7946 0000".into(),
                label: String::new(),
            },
        ],
        addresses: vec![PostalAddress {
            street: "1 Main St".into(),
            city: "London".into(),
            country: "UK".into(),
            ..PostalAddress::default()
        }],
        notes: "Met at the fair.\nLikes tea.".into(),
    }
}

#[test]
fn contacts_carry_marker_group_and_my_contacts() {
    let v = sample_contact();
    let p = contact_to_google(&crm("c-1"), "contactGroups/abc", &v, &[], &[]);
    assert_eq!(person_marker(&p), Some(crm("c-1")));
    assert_eq!(
        person_groups(&p),
        vec![MY_CONTACTS.to_owned(), "contactGroups/abc".to_owned()]
    );
    let mut wire = over_the_wire_person(&p);
    wire.resource_name = Some("people/c1".into());
    wire.etag = Some("e1".into());
    let item = present(contact_from_google(&wire, "contactGroups/abc"));
    assert!(item.in_container);
    assert_eq!(item.etag, "e1");
    assert_eq!(item.data, canonical_contact(&v));
    assert!(!present(contact_from_google(&wire, "contactGroups/other")).in_container);
}

#[test]
fn keeping_other_groups_and_client_data_when_linking() {
    let v = sample_contact();
    let others = vec!["contactGroups/family".to_owned(), MY_CONTACTS.to_owned()];
    // A contact the phone user took out of My Contacts is not put back.
    let p = contact_to_google(
        &crm("c-1"),
        "contactGroups/abc",
        &v,
        &["contactGroups/family".to_owned()],
        &[],
    );
    assert_eq!(
        person_groups(&p),
        vec![
            "contactGroups/family".to_owned(),
            "contactGroups/abc".to_owned()
        ]
    );
    let data = vec![
        ClientData {
            key: Some("other_app".into()),
            value: Some("1".into()),
            metadata: None,
        },
        ClientData {
            key: Some(MARKER_ID.into()),
            value: Some("stale".into()),
            metadata: None,
        },
    ];
    let p = contact_to_google(&crm("c-1"), "contactGroups/abc", &v, &others, &data);
    assert_eq!(
        person_groups(&p),
        vec![
            "contactGroups/family".to_owned(),
            MY_CONTACTS.to_owned(),
            "contactGroups/abc".to_owned(),
        ]
    );
    let keys: Vec<_> = p
        .client_data
        .iter()
        .flatten()
        .map(|c| (c.key.clone().unwrap(), c.value.clone().unwrap()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("other_app".to_owned(), "1".to_owned()),
            (MARKER_ID.to_owned(), "c-1".to_owned())
        ]
    );
}

#[test]
fn phone_retyping_a_number_or_email_is_not_a_change() {
    let v = sample_contact();
    let mut p = over_the_wire_person(&contact_to_google(&crm("c-1"), "g", &v, &[], &[]));
    p.phone_numbers.as_mut().unwrap()[0].value = Some("+44 20 7946 0000".into());
    p.phone_numbers.as_mut().unwrap()[0].canonical_form = Some("+442079460000".into());
    p.email_addresses.as_mut().unwrap()[0].value = Some(" Zoe@Globex.Example ".into());
    assert_eq!(contact_fields(&p), canonical_contact(&v));
}

#[test]
fn deleted_people_and_previous_names() {
    let mut p = Person {
        resource_name: Some("people/c2".into()),
        metadata: Some(google_people1::api::PersonMetadata {
            previous_resource_names: Some(vec!["people/c1".into()]),
            ..Default::default()
        }),
        ..Person::default()
    };
    let item = present(contact_from_google(&p, "g"));
    assert_eq!(item.previous_ids, vec!["people/c1".to_owned()]);
    assert_eq!(item.data, SyncedContact::default());
    p.metadata.as_mut().unwrap().deleted = Some(true);
    assert_eq!(
        contact_from_google(&p, "g"),
        RemoteChange::Deleted {
            google_id: "people/c2".into()
        }
    );
}

// ----- property tests ------------------------------------------------------------------------

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Dublin",
    "America/New_York",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Asia/Kolkata",
    "Africa/Casablanca",
];

/// (zone, local date) of every UTC-offset change in 2010–2035 for the zones above.
fn transition_days() -> &'static [(&'static str, NaiveDate)] {
    static DAYS: OnceLock<Vec<(&'static str, NaiveDate)>> = OnceLock::new();
    DAYS.get_or_init(|| {
        let mut days = Vec::new();
        for &name in ZONES {
            let tz = zone(name);
            let mut day = NaiveDate::from_ymd_opt(2010, 1, 1).unwrap();
            let end = NaiveDate::from_ymd_opt(2035, 12, 31).unwrap();
            let offset_at = |d: NaiveDate| {
                tz.offset_from_utc_datetime(&d.and_time(NaiveTime::MIN))
                    .fix()
                    .local_minus_utc()
            };
            let mut previous = offset_at(day);
            while day < end {
                let next = day.succ_opt().unwrap();
                let offset = offset_at(next);
                if offset != previous {
                    days.push((name, day));
                    days.push((name, next));
                }
                previous = offset;
                day = next;
            }
        }
        days
    })
}

fn local_time_near_transitions() -> impl Strategy<Value = (String, NaiveDateTime)> {
    let near = (0..transition_days().len(), 0u32..86_400).prop_map(|(i, secs)| {
        let (name, day) = transition_days()[i];
        let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap();
        (name.to_owned(), day.and_time(t))
    });
    let anywhere = (0..ZONES.len(), 0i64..(40 * 366), 0u32..86_400).prop_map(|(z, days, secs)| {
        let day = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + Duration::days(days);
        let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap();
        (ZONES[z].to_owned(), day.and_time(t))
    });
    prop_oneof![3 => near, 1 => anywhere]
}

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<String>(),
        2 => "[a-zA-Z0-9 ,.'-]{0,20}",
        1 => Just(ATTENDEES_HEADER.to_owned()),
        1 => Just("- Someone <someone@x.example>".to_owned()),
        1 => Just(String::new()),
        1 => Just("  \t ".to_owned()),
        1 => Just("日本語のメモ 🎉".to_owned()),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|pieces| pieces.join("\n"))
}

fn attendee() -> impl Strategy<Value = AttendeeLine> {
    (
        prop_oneof![any::<String>(), "[A-Za-zéü <>]{0,15}", Just(String::new())],
        prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9.]{1,8}@[a-z]{1,8}\\.example",
            Just(String::new())
        ],
    )
        .prop_map(|(name, email)| AttendeeLine { name, email })
}

fn recurrence() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        Just(vec![]),
        Just(vec!["RRULE:FREQ=WEEKLY;COUNT=10".to_owned()]),
        Just(vec![
            "rrule:FREQ=DAILY;UNTIL=20270101T000000Z".to_owned(),
            "EXDATE;VALUE=DATE:20260505".to_owned()
        ]),
        Just(vec![" RRULE:FREQ=MONTHLY;BYDAY=1MO ".to_owned()]),
    ]
}

fn synced_event() -> impl Strategy<Value = SyncedEvent> {
    (
        local_time_near_transitions(),
        1i64..(3 * 24 * 60),
        any::<bool>(),
        (text(), text(), text()),
        recurrence(),
        prop::collection::vec(attendee(), 0..4),
    )
        .prop_map(
            |(
                (tz, start),
                minutes,
                all_day,
                (title, description, location),
                recurrence,
                attendees,
            )| {
                let end = start + Duration::minutes(minutes);
                let (start, end) = if all_day {
                    let s = start.date();
                    let e = end.date().max(s.succ_opt().unwrap());
                    (EventTime::Date(s), EventTime::Date(e))
                } else {
                    (EventTime::DateTime(start), EventTime::DateTime(end))
                };
                SyncedEvent {
                    title,
                    description,
                    location,
                    start,
                    end,
                    time_zone: tz,
                    all_day,
                    recurrence,
                    attendees,
                }
            },
        )
}

fn email() -> impl Strategy<Value = EmailAddress> {
    (
        prop_oneof![
            "[a-zA-Z0-9.]{1,8}@[a-zA-Z]{1,8}\\.(example|COM)",
            " [A-Z]{1,5}@[a-z]{1,5}\\.org ",
            any::<String>()
        ],
        prop_oneof![Just(String::new()), Just("work".to_owned()), "[a-z ]{0,6}"],
    )
        .prop_map(|(address, label)| EmailAddress { address, label })
}

fn phone() -> impl Strategy<Value = PhoneNumber> {
    (
        prop_oneof![
            Just("+44 20 7946 0000".to_owned()),
            Just("0044 20 7946 0000".to_owned()),
            Just("+1 (415) 555-0132".to_owned()),
            Just(" 020  7946 0000 ".to_owned()),
            "[0-9 +()-]{0,16}",
            any::<String>()
        ],
        prop_oneof![Just(String::new()), Just("mobile".to_owned())],
    )
        .prop_map(|(number, label)| PhoneNumber { number, label })
}

fn address() -> impl Strategy<Value = PostalAddress> {
    (
        text(),
        "[A-Za-z ]{0,10}",
        "[A-Z]{0,3}",
        "[0-9A-Z ]{0,8}",
        "[A-Za-z]{0,8}",
        "[a-z]{0,5}",
    )
        .prop_map(
            |(street, city, region, postal_code, country, label)| PostalAddress {
                street,
                city,
                region,
                postal_code,
                country,
                label,
            },
        )
}

fn synced_contact() -> impl Strategy<Value = SyncedContact> {
    (
        (text(), text(), text(), text()),
        prop::collection::vec(email(), 0..3),
        prop::collection::vec(phone(), 0..3),
        prop::collection::vec(address(), 0..2),
        text(),
    )
        .prop_map(
            |((first_name, last_name, organization, title), emails, phones, addresses, notes)| {
                SyncedContact {
                    first_name,
                    last_name,
                    organization,
                    title,
                    emails,
                    phones,
                    addresses,
                    notes,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn events_round_trip_through_google(v in synced_event()) {
        let canonical = canonical_event(&v);
        prop_assert_eq!(&canonical_event(&canonical), &canonical);
        let e = event_to_google("abcdef0123", &crm("ev-1"), &v).unwrap();
        prop_assert!(e.attendees.is_none());
        let item = present(event_from_google(&over_the_wire_event(&e)));
        prop_assert_eq!(&item.data, &canonical);
        prop_assert_eq!(item.crm_id, Some(crm("ev-1")));
        // Writing the canonical value gives the same Google event.
        let again = event_to_google("abcdef0123", &crm("ev-1"), &canonical).unwrap();
        prop_assert_eq!(to_json_without_nulls(&again), to_json_without_nulls(&e));
    }

    #[test]
    fn local_times_survive_the_instant(input in local_time_near_transitions()) {
        let (name, local) = input;
        let tz = zone(&name);
        let canonical = normalize_local_time(local, tz);
        prop_assert_eq!(normalize_local_time(canonical, tz), canonical);
        prop_assert_eq!(utc_to_local(local_to_utc(local, tz), tz), canonical);
        prop_assert_eq!(local_to_utc(canonical, tz), local_to_utc(local, tz));
        // Normalising never moves a time backwards nor by more than a day.
        prop_assert!(canonical >= local && canonical - local <= Duration::days(1));
    }

    #[test]
    fn descriptions_and_attendees_split_back_apart(
        description in text(),
        attendees in prop::collection::vec(attendee(), 0..4),
    ) {
        let d = description.trim().to_owned();
        let a: Vec<AttendeeLine> = attendees.iter().map(canonical_attendee).collect();
        prop_assert_eq!(split_description(&compose_description(&d, &a)), (d, a));
    }

    #[test]
    fn contacts_round_trip_through_google(v in synced_contact()) {
        let canonical = canonical_contact(&v);
        prop_assert_eq!(&canonical_contact(&canonical), &canonical);
        let p = contact_to_google(&crm("c-1"), "contactGroups/g1", &v, &[], &[]);
        let item = present(contact_from_google(&over_the_wire_person(&p), "contactGroups/g1"));
        prop_assert_eq!(&item.data, &canonical);
        prop_assert_eq!(item.crm_id, Some(crm("c-1")));
        prop_assert!(item.in_container);
    }
}

#[test]
fn an_end_the_gap_puts_before_the_start_becomes_the_start() {
    // 01:30 does not exist in London on 2026-03-29 (01:00 → 02:00): it is 02:30 BST,
    // after the 02:00 end. Google refuses an empty range; the event shows at its start.
    let e = canonical_event(&timed_event(
        dt(2026, 3, 29, 1, 30),
        dt(2026, 3, 29, 2, 0),
        "Europe/London",
    ));
    assert_eq!(e.start, EventTime::DateTime(dt(2026, 3, 29, 2, 30)));
    assert_eq!(e.end, e.start);
    assert_eq!(canonical_event(&e), e, "canonical twice is canonical once");
    // An ordinary event keeps its end.
    let e = canonical_event(&timed_event(
        dt(2026, 3, 29, 3, 0),
        dt(2026, 3, 29, 4, 0),
        "Europe/London",
    ));
    assert_eq!(e.end, EventTime::DateTime(dt(2026, 3, 29, 4, 0)));
}
