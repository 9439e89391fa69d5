//! Calendar v3: calendars, calendarList, events (with recurrence, instances, sync tokens,
//! etags and reserved deleted ids), as strict as GOOGLE_API.md says Google is; the ACL
//! endpoints are routed here and served by `acl`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use google_calendar3::api::{
    Calendar, CalendarList, CalendarListEntry, Event, EventCreator, EventDateTime, EventOrganizer,
    EventReminders, Events,
};
use serde_json::Value;

use super::recurrence::{self, Occurrence};
use super::state::{CalendarData, StoredEvent, UserData};
use super::times;
use super::tokens::{PageToken, SyncToken};
use super::wire::{ApiError, ApiResponse, Query, RawRequest};
use super::EmulatorSettings;

/// A resolved Calendar v3 endpoint.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CalendarRoute {
    CalendarsInsert,
    CalendarsGet(String),
    CalendarsDelete(String),
    CalendarListList,
    CalendarListGet(String),
    EventsInsert(String),
    EventsList(String),
    EventsGet(String, String),
    EventsUpdate(String, String),
    EventsPatch(String, String),
    EventsDelete(String, String),
    EventsInstances(String, String),
    AclList(String),
    AclInsert(String),
    AclGet(String, String),
    AclDelete(String, String),
}

/// Route a request path (segments after `/calendar/v3/`).
pub(crate) fn route(method: &str, segments: &[String]) -> Option<CalendarRoute> {
    use CalendarRoute as R;
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let owned = |x: &str| x.to_string();
    Some(match (method, s.as_slice()) {
        ("POST", ["calendars"]) => R::CalendarsInsert,
        ("GET", ["calendars", c]) => R::CalendarsGet(owned(c)),
        ("DELETE", ["calendars", c]) => R::CalendarsDelete(owned(c)),
        ("GET", ["users", "me", "calendarList"]) => R::CalendarListList,
        ("GET", ["users", "me", "calendarList", c]) => R::CalendarListGet(owned(c)),
        ("POST", ["calendars", c, "events"]) => R::EventsInsert(owned(c)),
        ("GET", ["calendars", c, "events"]) => R::EventsList(owned(c)),
        ("GET", ["calendars", c, "events", e]) => R::EventsGet(owned(c), owned(e)),
        ("PUT", ["calendars", c, "events", e]) => R::EventsUpdate(owned(c), owned(e)),
        ("PATCH", ["calendars", c, "events", e]) => R::EventsPatch(owned(c), owned(e)),
        ("DELETE", ["calendars", c, "events", e]) => R::EventsDelete(owned(c), owned(e)),
        ("GET", ["calendars", c, "events", e, "instances"]) => {
            R::EventsInstances(owned(c), owned(e))
        }
        ("GET", ["calendars", c, "acl"]) => R::AclList(owned(c)),
        ("POST", ["calendars", c, "acl"]) => R::AclInsert(owned(c)),
        ("GET", ["calendars", c, "acl", r]) => R::AclGet(owned(c), owned(r)),
        ("DELETE", ["calendars", c, "acl", r]) => R::AclDelete(owned(c), owned(r)),
        _ => return None,
    })
}

impl CalendarRoute {
    /// Google's method id (used for counters and fault matching).
    pub fn method_id(&self) -> &'static str {
        use CalendarRoute as R;
        match self {
            R::CalendarsInsert => "calendar.calendars.insert",
            R::CalendarsGet(_) => "calendar.calendars.get",
            R::CalendarsDelete(_) => "calendar.calendars.delete",
            R::CalendarListList => "calendar.calendarList.list",
            R::CalendarListGet(_) => "calendar.calendarList.get",
            R::EventsInsert(_) => "calendar.events.insert",
            R::EventsList(_) => "calendar.events.list",
            R::EventsGet(..) => "calendar.events.get",
            R::EventsUpdate(..) => "calendar.events.update",
            R::EventsPatch(..) => "calendar.events.patch",
            R::EventsDelete(..) => "calendar.events.delete",
            R::EventsInstances(..) => "calendar.events.instances",
            R::AclList(_) => "calendar.acl.list",
            R::AclInsert(_) => "calendar.acl.insert",
            R::AclGet(..) => "calendar.acl.get",
            R::AclDelete(..) => "calendar.acl.delete",
        }
    }

    /// The calendar the call works on, as given in the path (`primary` included).
    pub fn calendar_id(&self) -> Option<&str> {
        use CalendarRoute as R;
        match self {
            R::CalendarsInsert | R::CalendarListList => None,
            R::CalendarsGet(c)
            | R::CalendarsDelete(c)
            | R::CalendarListGet(c)
            | R::EventsInsert(c)
            | R::EventsList(c)
            | R::EventsGet(c, _)
            | R::EventsUpdate(c, _)
            | R::EventsPatch(c, _)
            | R::EventsDelete(c, _)
            | R::EventsInstances(c, _)
            | R::AclList(c)
            | R::AclInsert(c)
            | R::AclGet(c, _)
            | R::AclDelete(c, _) => Some(c),
        }
    }

    pub fn is_write(&self) -> bool {
        use CalendarRoute as R;
        matches!(
            self,
            R::CalendarsInsert
                | R::CalendarsDelete(_)
                | R::EventsInsert(_)
                | R::EventsUpdate(..)
                | R::EventsPatch(..)
                | R::EventsDelete(..)
                | R::AclInsert(_)
                | R::AclDelete(..)
        )
    }
}

/// Parameters that may not be combined with `syncToken` on events.list.
const FORBIDDEN_WITH_SYNC_TOKEN: &[&str] = &[
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
];

const DEFAULT_MAX_RESULTS: i64 = 250;
const MAX_MAX_RESULTS: i64 = 2500;

/// What a Calendar call needs to know beyond the user's own data.
pub(crate) struct CallContext<'a> {
    /// The OAuth client (app) of the caller's token.
    pub client: &'a str,
    /// For `calendars.insert`: an id unique across every user.
    pub new_calendar_id: Option<String>,
}

/// Execute a routed Calendar call for `user`.
pub(crate) fn execute(
    user: &mut UserData,
    settings: &EmulatorSettings,
    now: DateTime<Utc>,
    route: &CalendarRoute,
    req: &RawRequest,
    call: CallContext<'_>,
) -> Result<ApiResponse, ApiError> {
    use CalendarRoute as R;
    match route {
        R::CalendarsInsert => insert_calendar(user, settings, now, req, call),
        R::CalendarsGet(c) => {
            let cal = calendar_ref(user, c)?;
            Ok(ApiResponse::json(200, &cal.meta))
        }
        R::CalendarsDelete(c) => delete_calendar(user, c),
        R::CalendarListList => calendar_list(user, &req.query),
        R::CalendarListGet(c) => {
            let cal = calendar_ref(user, c)?;
            Ok(ApiResponse::json(200, &list_entry(cal)))
        }
        R::EventsInsert(c) => insert_event(user, now, c, req),
        R::EventsList(c) => {
            let email = user.email.clone();
            let cal = calendar_ref(user, c)?;
            list_events(cal, &email, settings, now, &req.query)
        }
        R::EventsGet(c, e) => {
            let cal = calendar_ref(user, c)?;
            let (event, _) = find_event(cal, e)?;
            Ok(ApiResponse::json(200, &event))
        }
        R::EventsUpdate(c, e) => write_event(user, now, c, e, req, WriteKind::Update),
        R::EventsPatch(c, e) => write_event(user, now, c, e, req, WriteKind::Patch),
        R::EventsDelete(c, e) => delete_event(user, now, c, e, req),
        R::EventsInstances(c, e) => {
            let cal = calendar_ref(user, c)?;
            list_instances(cal, e, &req.query)
        }
        R::AclList(c) => super::acl::list(user, c, &req.query),
        R::AclGet(c, r) => super::acl::get(user, c, r),
        R::AclInsert(c) => super::acl::insert(user, c, req),
        R::AclDelete(c, r) => super::acl::delete(user, c, r),
    }
}

fn resolve_calendar_id(user: &UserData, id: &str) -> String {
    if id == "primary" {
        user.email.clone()
    } else {
        id.to_string()
    }
}

fn calendar_ref<'a>(user: &'a UserData, id: &str) -> Result<&'a CalendarData, ApiError> {
    let id = resolve_calendar_id(user, id);
    user.calendars.get(&id).ok_or_else(ApiError::not_found)
}

fn calendar_mut<'a>(user: &'a mut UserData, id: &str) -> Result<&'a mut CalendarData, ApiError> {
    let id = resolve_calendar_id(user, id);
    user.calendars.get_mut(&id).ok_or_else(ApiError::not_found)
}

fn parse_body<T: serde::de::DeserializeOwned>(req: &RawRequest) -> Result<T, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::required("request body"));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::new(400, "parseError", format!("Parse Error: {e}")))
}

fn parse_error(e: serde_json::Error) -> ApiError {
    ApiError::new(400, "parseError", format!("Parse Error: {e}"))
}

/// The JSON body of an event write, as a value (empty bodies refused).
fn body_value(req: &RawRequest) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::required("request body"));
    }
    serde_json::from_slice(&req.body).map_err(parse_error)
}

/// An event resource from JSON, its times read as Google reads them ([`times`]).
fn event_from_json(mut value: Value) -> Result<Event, ApiError> {
    times::normalize_event_times(&mut value)?;
    serde_json::from_value(value).map_err(parse_error)
}

fn valid_time_zone(name: &str) -> bool {
    name.parse::<chrono_tz::Tz>().is_ok()
}

fn generated_id(user: &mut UserData, width: usize) -> String {
    // base32hex-safe: decimal digits and a-f only.
    let n = user.bump();
    let mixed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    let mut s = format!("{mixed:x}{n:x}");
    while s.len() < width {
        s.push('0');
    }
    s.truncate(width);
    s
}

// ---------------------------------------------------------------------------------------------
// Calendars, calendar list, ACL

fn insert_calendar(
    user: &mut UserData,
    settings: &EmulatorSettings,
    now: DateTime<Utc>,
    req: &RawRequest,
    call: CallContext<'_>,
) -> Result<ApiResponse, ApiError> {
    let body: Calendar = parse_body(req)?;
    if body.summary.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err(ApiError::required("title"));
    }
    if let Some(tz) = &body.time_zone {
        if !valid_time_zone(tz) {
            return Err(ApiError::invalid("Invalid time zone definition."));
        }
    }
    if let Some(limit) = settings.quota.calendar_creations_per_user {
        let window = Duration::seconds(
            i64::try_from(settings.quota.calendar_creation_window_secs).unwrap_or(3600),
        );
        user.calendar_creations.retain(|t| *t + window > now);
        if user.calendar_creations.len() >= limit as usize {
            return Err(
                ApiError::new(403, "quotaExceeded", "Calendar usage limits exceeded.")
                    .with_domain("usageLimits")
                    .with_status("RESOURCE_EXHAUSTED"),
            );
        }
        user.calendar_creations.push(now);
    }
    let id = call.new_calendar_id.ok_or_else(|| ApiError::backend(500))?;
    let etag = user.next_etag();
    let acl_etag = user.next_etag();
    let email = user.email.clone();
    let meta = Calendar {
        kind: Some("calendar#calendar".into()),
        etag: Some(etag),
        id: Some(id.clone()),
        summary: body.summary,
        description: body.description,
        location: body.location,
        time_zone: Some(body.time_zone.unwrap_or_else(|| "UTC".into())),
        ..Default::default()
    };
    let mut cal = CalendarData {
        meta: meta.clone(),
        created_by_app: Some(call.client.to_string()),
        ..Default::default()
    };
    cal.acl.insert(
        format!("user:{email}"),
        super::state::owner_rule(&email, acl_etag),
    );
    user.calendars.insert(id, cal);
    Ok(ApiResponse::json(200, &meta))
}

fn delete_calendar(user: &mut UserData, id: &str) -> Result<ApiResponse, ApiError> {
    let id = resolve_calendar_id(user, id);
    let cal = user.calendars.get(&id).ok_or_else(ApiError::not_found)?;
    if cal.primary {
        return Err(ApiError::new(
            400,
            "cannotDeletePrimaryCalendar",
            "The primary calendar cannot be deleted; use calendars.clear.",
        ));
    }
    user.calendars.remove(&id);
    Ok(ApiResponse::no_content())
}

fn list_entry(cal: &CalendarData) -> CalendarListEntry {
    CalendarListEntry {
        kind: Some("calendar#calendarListEntry".into()),
        etag: cal.meta.etag.clone(),
        id: cal.meta.id.clone(),
        summary: cal.meta.summary.clone(),
        description: cal.meta.description.clone(),
        location: cal.meta.location.clone(),
        time_zone: cal.meta.time_zone.clone(),
        access_role: Some("owner".into()),
        primary: cal.primary.then_some(true),
        selected: Some(true),
        default_reminders: Some(Vec::new()),
        ..Default::default()
    }
}

fn calendar_list(user: &UserData, query: &Query) -> Result<ApiResponse, ApiError> {
    if query.has("syncToken") {
        return Err(ApiError::invalid(
            "emulator: calendarList.list does not support syncToken",
        ));
    }
    let max = match query.int("maxResults")? {
        None => 100,
        Some(n) if n < 1 => return Err(ApiError::invalid_param("maxResults", &n.to_string())),
        Some(n) => n.min(250),
    };
    let fingerprint = query.fingerprint(&["pageToken", "maxResults"]);
    let offset = match query.get("pageToken") {
        None => 0,
        Some(t) => {
            let page = PageToken::decode(t)
                .filter(|p| p.k == "calendarList" && p.f == fingerprint)
                .ok_or_else(|| ApiError::invalid("Invalid page token."))?;
            page.a
        }
    };
    let entries: Vec<CalendarListEntry> = user.calendars.values().map(list_entry).collect();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(entries.len());
    let end = (start + usize::try_from(max).unwrap_or(100)).min(entries.len());
    let next = (end < entries.len()).then(|| {
        PageToken {
            k: "calendarList".into(),
            f: fingerprint,
            a: end as u64,
            n: 0,
            since: None,
            t: 0,
        }
        .encode()
    });
    Ok(ApiResponse::json(
        200,
        &CalendarList {
            kind: Some("calendar#calendarList".into()),
            etag: Some(format!("\"l{}\"", user.next_id)),
            items: Some(entries[start..end].to_vec()),
            next_page_token: next,
            next_sync_token: None,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Events: validation

/// Event ids: base32hex characters (`a-v`, `0-9`), length 5 to 1024.
pub(crate) fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

fn validate_event(ev: &Event, is_instance: bool) -> Result<(), ApiError> {
    let start = ev
        .start
        .as_ref()
        .ok_or_else(|| ApiError::required("start time"))?;
    let end = ev
        .end
        .as_ref()
        .ok_or_else(|| ApiError::required("end time"))?;
    for (which, dt) in [("start", start), ("end", end)] {
        if dt.date.is_some() == dt.date_time.is_some() {
            return Err(ApiError::new(
                400,
                "invalid",
                format!("Invalid {which} time."),
            ));
        }
        if let Some(tz) = &dt.time_zone {
            if !valid_time_zone(tz) {
                return Err(ApiError::invalid(format!(
                    "Invalid time zone definition for {which} time."
                )));
            }
        }
    }
    if start.date.is_some() != end.date.is_some() {
        return Err(ApiError::invalid(
            "Start and end times must either both be date or both be dateTime.",
        ));
    }
    let (s, e) = recurrence::span(ev).ok_or_else(|| ApiError::required("end time"))?;
    if e < s || (start.date.is_some() && e == s) {
        return Err(ApiError::new(
            400,
            "timeRangeEmpty",
            "The specified time range is empty.",
        ));
    }
    if let Some(status) = &ev.status {
        if !["confirmed", "tentative", "cancelled"].contains(&status.as_str()) {
            return Err(ApiError::invalid("Invalid value for: status"));
        }
    }
    if ev.recurrence.as_ref().is_some_and(|r| !r.is_empty()) {
        if is_instance {
            return Err(ApiError::invalid(
                "Instances of a recurring event cannot have a recurrence.",
            ));
        }
        recurrence::validate_series(ev)?;
    }
    if let Some(props) = &ev.extended_properties {
        for map in [&props.private, &props.shared].into_iter().flatten() {
            if map.len() > 300 {
                return Err(ApiError::invalid("Too many extended properties."));
            }
            let mut total = 0usize;
            for (k, v) in map {
                total += k.len() + v.len();
                if k.is_empty() || k.chars().count() > 44 || v.chars().count() > 1024 {
                    return Err(ApiError::invalid(
                        "Invalid extended property: keys are 1-44 characters, values at most 1024.",
                    ));
                }
            }
            if total > 32 * 1024 {
                return Err(ApiError::invalid("Extended properties exceed 32kB."));
            }
        }
    }
    Ok(())
}

fn check_if_match(req: &RawRequest, current: &Event) -> Result<(), ApiError> {
    let Some(wanted) = req.header("if-match") else {
        return Ok(());
    };
    let wanted = wanted.trim();
    if wanted == "*" || Some(wanted) == current.etag.as_deref() {
        return Ok(());
    }
    Err(ApiError::new(412, "conditionNotMet", "Precondition Failed")
        .with_location("header", "If-Match"))
}

// ---------------------------------------------------------------------------------------------
// Events: lookup (stored events and virtual instances of series)

/// The event with this id: a stored one, or an unmodified instance of a stored series.
/// The flag says whether it is stored.
fn find_event(cal: &CalendarData, id: &str) -> Result<(Event, bool), ApiError> {
    if let Some(stored) = cal.events.get(id) {
        return Ok((stored.event.clone(), true));
    }
    let (series_id, suffix) = recurrence::split_instance_id(id).ok_or_else(ApiError::not_found)?;
    let series = cal.events.get(series_id).ok_or_else(ApiError::not_found)?;
    if series.event.status.as_deref() == Some("cancelled")
        || series
            .event
            .recurrence
            .as_ref()
            .is_none_or(|r| r.is_empty())
    {
        return Err(ApiError::not_found());
    }
    let at = parse_suffix(suffix).ok_or_else(ApiError::not_found)?;
    let occurrences = recurrence::expand(
        &series.event,
        Some(at - Duration::days(1)),
        Some(at + Duration::seconds(1)),
        recurrence::MAX_EXPANSION,
    )?;
    let occurrence = occurrences
        .into_iter()
        .find(|o| o.id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok((instance_from(&series.event, &occurrence), false))
}

fn parse_suffix(suffix: &str) -> Option<DateTime<Utc>> {
    if suffix.len() == 8 {
        let d = chrono::NaiveDate::parse_from_str(suffix, "%Y%m%d").ok()?;
        return d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    chrono::NaiveDateTime::parse_from_str(suffix, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}

fn instance_from(series: &Event, occurrence: &Occurrence) -> Event {
    let mut e = series.clone();
    e.id = Some(occurrence.id.clone());
    e.recurrence = None;
    e.recurring_event_id = series.id.clone();
    e.original_start_time = Some(occurrence.original_start.clone());
    e.start = Some(occurrence.start.clone());
    e.end = Some(occurrence.end.clone());
    e
}

/// The shape of a cancelled event in listings: only identity fields (Google guarantees `id`).
fn tombstone(e: &Event) -> Event {
    Event {
        kind: e.kind.clone(),
        etag: e.etag.clone(),
        id: e.id.clone(),
        status: Some("cancelled".into()),
        updated: e.updated,
        recurring_event_id: e.recurring_event_id.clone(),
        original_start_time: e.original_start_time.clone(),
        ..Default::default()
    }
}

fn is_cancelled(e: &Event) -> bool {
    e.status.as_deref() == Some("cancelled")
}

// ---------------------------------------------------------------------------------------------
// Events: writes

fn store(cal: &mut CalendarData, mut event: Event, etag: String, now: DateTime<Utc>) -> Event {
    cal.seq += 1;
    event.etag = Some(etag);
    event.updated = Some(now);
    let id = event.id.clone().unwrap_or_default();
    cal.events.insert(
        id,
        StoredEvent {
            event: event.clone(),
            seq: cal.seq,
        },
    );
    event
}

fn insert_event(
    user: &mut UserData,
    now: DateTime<Utc>,
    cal_id: &str,
    req: &RawRequest,
) -> Result<ApiResponse, ApiError> {
    let mut ev = event_from_json(body_value(req)?)?;
    let generated = generated_id(user, 26);
    let etag = user.next_etag();
    let email = user.email.clone();
    let cal = calendar_mut(user, cal_id)?;
    let cal_key = cal.meta.id.clone().unwrap_or_default();
    let id = match ev.id.take() {
        Some(id) => {
            if !valid_event_id(&id) {
                return Err(ApiError::invalid("Invalid resource id value."));
            }
            id
        }
        None => generated,
    };
    if cal.events.contains_key(&id) {
        return Err(ApiError::new(
            409,
            "duplicate",
            "The requested identifier already exists.",
        ));
    }
    ev.id = Some(id.clone());
    // Read-only fields a client cannot set.
    ev.recurring_event_id = None;
    ev.original_start_time = None;
    validate_event(&ev, false)?;
    ev.kind = Some("calendar#event".into());
    ev.status = Some(ev.status.unwrap_or_else(|| "confirmed".into()));
    ev.created = Some(now);
    ev.html_link = Some(format!(
        "https://www.google.com/calendar/event?eid={id}&ctz=UTC"
    ));
    ev.i_cal_uid = Some(ev.i_cal_uid.unwrap_or_else(|| format!("{id}@google.com")));
    ev.sequence = Some(ev.sequence.unwrap_or(0));
    ev.creator = Some(EventCreator {
        email: Some(email.clone()),
        self_: Some(true),
        ..Default::default()
    });
    ev.organizer = Some(EventOrganizer {
        email: Some(cal_key.clone()),
        self_: Some(true),
        display_name: cal.meta.summary.clone().filter(|_| cal_key != email),
        ..Default::default()
    });
    if ev.reminders.is_none() {
        ev.reminders = Some(EventReminders {
            use_default: Some(true),
            overrides: None,
        });
    }
    ev.event_type = Some(ev.event_type.unwrap_or_else(|| "default".into()));
    let stored = store(cal, ev, etag, now);
    Ok(ApiResponse::json(200, &stored))
}

#[derive(Clone, Copy, PartialEq)]
enum WriteKind {
    Update,
    Patch,
}

/// JSON merge for PATCH: objects merge recursively, everything else (arrays included) replaces.
fn merge_json(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_json(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn write_event(
    user: &mut UserData,
    now: DateTime<Utc>,
    cal_id: &str,
    event_id: &str,
    req: &RawRequest,
    kind: WriteKind,
) -> Result<ApiResponse, ApiError> {
    let etag = user.next_etag();
    let cal = calendar_mut(user, cal_id)?;
    let (current, _) = find_event(cal, event_id)?;
    check_if_match(req, &current)?;
    let body = body_value(req)?;
    let mut next: Event = match kind {
        WriteKind::Update => event_from_json(body.clone())?,
        WriteKind::Patch => {
            let mut merged = serde_json::to_value(&current).unwrap_or(Value::Null);
            super::wire::strip_nulls(&mut merged);
            merge_json(&mut merged, &body);
            event_from_json(merged)?
        }
    };
    if let Some(body_id) = body.get("id").and_then(Value::as_str) {
        if body_id != event_id {
            return Err(ApiError::invalid(
                "The event id in the body does not match the URL.",
            ));
        }
    }
    let current_sequence = current.sequence.unwrap_or(0);
    if next.sequence.is_some_and(|s| s < current_sequence) {
        return Err(ApiError::new(
            400,
            "invalidSequenceValue",
            "Invalid sequence value. The specified sequence number is below the current sequence number of the resource.",
        ));
    }
    let is_instance = current.recurring_event_id.is_some();
    // Server-owned fields survive any write.
    next.id = current.id.clone();
    next.kind = current.kind.clone();
    next.created = current.created;
    next.creator = current.creator.clone();
    next.organizer = current.organizer.clone();
    next.i_cal_uid = current.i_cal_uid.clone();
    next.html_link = current.html_link.clone();
    next.recurring_event_id = current.recurring_event_id.clone();
    next.original_start_time = current.original_start_time.clone();
    if next.status.is_none() {
        next.status = Some("confirmed".into());
    }
    if next.event_type.is_none() {
        next.event_type = current.event_type.clone();
    }
    validate_event(&next, is_instance)?;
    let times_changed = json_of(&next.start) != json_of(&current.start)
        || json_of(&next.end) != json_of(&current.end)
        || next.recurrence != current.recurrence;
    next.sequence = Some(if times_changed {
        current_sequence.max(next.sequence.unwrap_or(0)) + 1
    } else {
        current_sequence.max(next.sequence.unwrap_or(0))
    });
    let stored = store(cal, next, etag, now);
    Ok(ApiResponse::json(200, &stored))
}

fn json_of(dt: &Option<EventDateTime>) -> Value {
    serde_json::to_value(dt).unwrap_or(Value::Null)
}

fn delete_event(
    user: &mut UserData,
    now: DateTime<Utc>,
    cal_id: &str,
    event_id: &str,
    req: &RawRequest,
) -> Result<ApiResponse, ApiError> {
    let etag = user.next_etag();
    let mut extra_etags: Vec<String> = Vec::new();
    {
        let cal = calendar_ref(user, cal_id)?;
        let exceptions = cal
            .events
            .values()
            .filter(|s| s.event.recurring_event_id.as_deref() == Some(event_id))
            .count();
        for _ in 0..exceptions {
            extra_etags.push(String::new());
        }
    }
    for slot in &mut extra_etags {
        *slot = user.next_etag();
    }
    let cal = calendar_mut(user, cal_id)?;
    let (mut current, _) = find_event(cal, event_id)?;
    check_if_match(req, &current)?;
    if is_cancelled(&current) {
        return Err(ApiError::new(410, "deleted", "Resource has been deleted"));
    }
    current.status = Some("cancelled".into());
    store(cal, current, etag, now);
    // Deleting a series cancels its modified instances too.
    let exception_ids: Vec<String> = cal
        .events
        .iter()
        .filter(|(_, s)| {
            s.event.recurring_event_id.as_deref() == Some(event_id) && !is_cancelled(&s.event)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for (id, etag) in exception_ids.into_iter().zip(extra_etags) {
        if let Some(mut e) = cal.events.get(&id).map(|s| s.event.clone()) {
            e.status = Some("cancelled".into());
            store(cal, e, etag, now);
        }
    }
    Ok(ApiResponse::no_content())
}

// ---------------------------------------------------------------------------------------------
// Events: listings

fn parse_time_param(query: &Query, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| ApiError::invalid_param(name, v)),
    }
}

fn max_results(query: &Query) -> Result<usize, ApiError> {
    match query.int("maxResults")? {
        None => Ok(DEFAULT_MAX_RESULTS as usize),
        Some(n) if n < 1 => Err(ApiError::invalid_param("maxResults", &n.to_string())),
        Some(n) => Ok(usize::try_from(n.min(MAX_MAX_RESULTS)).unwrap_or(250)),
    }
}

fn property_filters(query: &Query, name: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .all(name)
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::invalid_param(name, p))
        })
        .collect()
}

fn props_match(props: Option<&HashMap<String, String>>, wanted: &[(String, String)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| props.and_then(|p| p.get(k)) == Some(v))
}

struct ListFilter {
    show_deleted: bool,
    time_min: Option<DateTime<Utc>>,
    time_max: Option<DateTime<Utc>>,
    private: Vec<(String, String)>,
    shared: Vec<(String, String)>,
    text: Option<String>,
    ical_uid: Option<String>,
    updated_min: Option<DateTime<Utc>>,
}

impl ListFilter {
    fn from_query(query: &Query) -> Result<ListFilter, ApiError> {
        let time_min = parse_time_param(query, "timeMin")?;
        let time_max = parse_time_param(query, "timeMax")?;
        if let (Some(a), Some(b)) = (time_min, time_max) {
            if a >= b {
                return Err(ApiError::new(
                    400,
                    "timeRangeEmpty",
                    "The specified time range is empty.",
                ));
            }
        }
        Ok(ListFilter {
            show_deleted: query.bool("showDeleted")?,
            time_min,
            time_max,
            private: property_filters(query, "privateExtendedProperty")?,
            shared: property_filters(query, "sharedExtendedProperty")?,
            text: query.get("q").map(str::to_lowercase),
            ical_uid: query.get("iCalUID").map(str::to_string),
            updated_min: parse_time_param(query, "updatedMin")?,
        })
    }

    /// Non-time filters.
    fn accepts(&self, e: &Event) -> bool {
        if is_cancelled(e) && !self.show_deleted {
            return false;
        }
        let props = e.extended_properties.as_ref();
        if !props_match(props.and_then(|p| p.private.as_ref()), &self.private)
            || !props_match(props.and_then(|p| p.shared.as_ref()), &self.shared)
        {
            return false;
        }
        if let Some(text) = &self.text {
            let hay = [&e.summary, &e.description, &e.location]
                .iter()
                .filter_map(|f| f.as_deref())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join("\n");
            if !hay.contains(text.as_str()) {
                return false;
            }
        }
        if let Some(uid) = &self.ical_uid {
            if e.i_cal_uid.as_ref() != Some(uid) {
                return false;
            }
        }
        if let Some(min) = self.updated_min {
            if e.updated.is_some_and(|u| u < min) {
                return false;
            }
        }
        true
    }

    /// Time window: an event overlaps if it ends after timeMin and starts before timeMax; a
    /// series overlaps if any of its instances does.
    fn overlaps(&self, e: &Event) -> bool {
        if self.time_min.is_none() && self.time_max.is_none() {
            return true;
        }
        if e.recurrence.as_ref().is_some_and(|r| !r.is_empty()) {
            return recurrence::expand(e, self.time_min, self.time_max, 1)
                .map(|o| !o.is_empty())
                .unwrap_or(false);
        }
        let Some((s, end)) = recurrence::span(e) else {
            return false;
        };
        self.time_min
            .is_none_or(|m| end > m || (end == s && s == m))
            && self.time_max.is_none_or(|m| s < m)
    }
}

fn events_envelope(cal: &CalendarData, now: DateTime<Utc>, items: Vec<Event>) -> Events {
    Events {
        kind: Some("calendar#events".into()),
        etag: Some(format!("\"p{}\"", cal.seq)),
        summary: cal.meta.summary.clone(),
        description: cal.meta.description.clone(),
        updated: Some(items.iter().filter_map(|e| e.updated).max().unwrap_or(now)),
        time_zone: cal.meta.time_zone.clone(),
        access_role: Some("owner".into()),
        default_reminders: Some(Vec::new()),
        items: Some(items),
        next_page_token: None,
        next_sync_token: None,
    }
}

fn list_events(
    cal: &CalendarData,
    user_email: &str,
    settings: &EmulatorSettings,
    now: DateTime<Utc>,
    query: &Query,
) -> Result<ApiResponse, ApiError> {
    let cal_id = cal.meta.id.clone().unwrap_or_default();
    let sync_token = query.get("syncToken");
    if sync_token.is_some() {
        if let Some(bad) = FORBIDDEN_WITH_SYNC_TOKEN.iter().find(|p| query.has(p)) {
            return Err(ApiError::invalid(format!(
                "The parameter {bad} is not allowed together with syncToken."
            ))
            .with_location("parameter", *bad));
        }
    }
    let single_events = query.bool("singleEvents")?;
    if let Some(order) = query.get("orderBy") {
        match order {
            "startTime" if !single_events => {
                return Err(ApiError::invalid(
                    "The requested ordering is not available for the particular query.",
                ))
            }
            "startTime" | "updated" => {}
            other => return Err(ApiError::invalid_param("orderBy", other)),
        }
    }
    let max = max_results(query)?;
    let filter = ListFilter::from_query(query)?;
    let fingerprint = query.fingerprint(&["pageToken", "maxResults"]);
    let page = match query.get("pageToken") {
        None => None,
        Some(t) => Some(
            PageToken::decode(t)
                .filter(|p| p.f == fingerprint && p.k.starts_with("events"))
                .ok_or_else(|| ApiError::invalid("Invalid page token."))?,
        ),
    };
    let since = match sync_token {
        None => None,
        Some(t) => Some(check_sync_token(
            t, user_email, &cal_id, cal, settings, now,
        )?),
    };
    if single_events {
        if since.is_some() {
            return Err(ApiError::invalid(
                "emulator: singleEvents=true together with syncToken is not supported",
            ));
        }
        return list_single_events(cal, user_email, now, query, &filter, max, page, fingerprint);
    }
    let snap = page.as_ref().map_or(cal.seq, |p| p.n);
    let after = page.as_ref().map_or(since.unwrap_or(0), |p| p.a);
    let mut candidates: Vec<&StoredEvent> = cal
        .events
        .values()
        .filter(|s| s.seq > after && s.seq <= snap)
        .collect();
    candidates.sort_by_key(|s| s.seq);
    let mut items = Vec::new();
    let mut last_seq = after;
    let mut more = false;
    for stored in candidates {
        let e = &stored.event;
        let include = if since.is_some() {
            true
        } else {
            filter.accepts(e) && filter.overlaps(e)
        };
        if !include {
            last_seq = stored.seq;
            continue;
        }
        if items.len() == max {
            more = true;
            break;
        }
        items.push(if is_cancelled(e) {
            tombstone(e)
        } else {
            e.clone()
        });
        last_seq = stored.seq;
    }
    if query.get("orderBy") == Some("updated") {
        items.sort_by_key(|e| e.updated);
    }
    let started = page.as_ref().map_or(now.timestamp_millis(), |p| p.t);
    let mut out = events_envelope(cal, now, items);
    if more {
        out.next_page_token = Some(
            PageToken {
                k: "events".into(),
                f: fingerprint,
                a: last_seq,
                n: snap,
                since,
                t: started,
            }
            .encode(),
        );
    } else {
        out.next_sync_token = Some(
            SyncToken {
                k: "events".into(),
                u: user_email.to_string(),
                s: cal_id,
                e: cal.sync_epoch,
                q: snap,
                t: now.timestamp_millis(),
            }
            .encode(),
        );
    }
    Ok(ApiResponse::json(200, &out))
}

fn check_sync_token(
    token: &str,
    user_email: &str,
    cal_id: &str,
    cal: &CalendarData,
    settings: &EmulatorSettings,
    now: DateTime<Utc>,
) -> Result<u64, ApiError> {
    let gone = || {
        ApiError::new(
            410,
            "fullSyncRequired",
            "Sync token is no longer valid, a full sync is required.",
        )
        .with_location("parameter", "syncToken")
    };
    let t = SyncToken::decode(token)
        .filter(|t| t.k == "events" && t.u == user_email && t.s == cal_id)
        .ok_or_else(|| {
            ApiError::invalid("Invalid sync token value.").with_location("parameter", "syncToken")
        })?;
    if t.e != cal.sync_epoch || t.q > cal.seq {
        return Err(gone());
    }
    if let Some(max_age) = settings.calendar_sync_token_max_age_secs {
        let age_ms = now.timestamp_millis() - t.t;
        if age_ms
            > i64::try_from(max_age)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000)
        {
            return Err(gone());
        }
    }
    Ok(t.q)
}

/// All instances of `series` (exceptions applied) overlapping the window.
fn instances_of(
    cal: &CalendarData,
    series: &Event,
    time_min: Option<DateTime<Utc>>,
    time_max: Option<DateTime<Utc>>,
    limit: usize,
) -> Result<Vec<Event>, ApiError> {
    let series_id = series.id.clone().unwrap_or_default();
    let occurrences = recurrence::expand(series, time_min, time_max, limit)?;
    let mut out = Vec::with_capacity(occurrences.len());
    for o in &occurrences {
        match cal.events.get(&o.id) {
            Some(exception) => out.push(exception.event.clone()),
            None => out.push(instance_from(series, o)),
        }
    }
    // Exceptions moved into the window from outside their original slot.
    for stored in cal.events.values() {
        let e = &stored.event;
        if e.recurring_event_id.as_deref() == Some(series_id.as_str())
            && !out.iter().any(|x| x.id == e.id)
        {
            if let Some((s, end)) = recurrence::span(e) {
                if time_min.is_none_or(|m| end > m) && time_max.is_none_or(|m| s < m) {
                    out.push(e.clone());
                }
            }
        }
    }
    out.sort_by_key(|e| e.start.as_ref().and_then(recurrence::instant));
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn list_single_events(
    cal: &CalendarData,
    user_email: &str,
    now: DateTime<Utc>,
    query: &Query,
    filter: &ListFilter,
    max: usize,
    page: Option<PageToken>,
    fingerprint: u64,
) -> Result<ApiResponse, ApiError> {
    let mut all: Vec<Event> = Vec::new();
    for stored in cal.events.values() {
        let e = &stored.event;
        if e.recurring_event_id.is_some() {
            continue; // exceptions come with their series
        }
        if e.recurrence.as_ref().is_some_and(|r| !r.is_empty()) {
            if is_cancelled(e) {
                if filter.show_deleted && filter.accepts(e) {
                    all.push(tombstone(e));
                }
                continue;
            }
            for instance in instances_of(
                cal,
                e,
                filter.time_min,
                filter.time_max,
                recurrence::MAX_EXPANSION,
            )? {
                if filter.accepts(&instance) {
                    all.push(if is_cancelled(&instance) {
                        tombstone(&instance)
                    } else {
                        instance
                    });
                }
            }
        } else if filter.accepts(e) && filter.overlaps(e) {
            all.push(if is_cancelled(e) {
                tombstone(e)
            } else {
                e.clone()
            });
        }
    }
    match query.get("orderBy") {
        Some("startTime") => all.sort_by_key(|e| e.start.as_ref().and_then(recurrence::instant)),
        Some("updated") => all.sort_by_key(|e| e.updated),
        _ => {}
    }
    let offset = page.as_ref().map_or(0, |p| p.a) as usize;
    let start = offset.min(all.len());
    let end = (start + max).min(all.len());
    let mut out = events_envelope(cal, now, all[start..end].to_vec());
    if end < all.len() {
        out.next_page_token = Some(
            PageToken {
                k: "events-single".into(),
                f: fingerprint,
                a: end as u64,
                n: cal.seq,
                since: None,
                t: now.timestamp_millis(),
            }
            .encode(),
        );
    } else {
        out.next_sync_token = Some(
            SyncToken {
                k: "events".into(),
                u: user_email.to_string(),
                s: cal.meta.id.clone().unwrap_or_default(),
                e: cal.sync_epoch,
                q: page.as_ref().map_or(cal.seq, |p| p.n),
                t: now.timestamp_millis(),
            }
            .encode(),
        );
    }
    Ok(ApiResponse::json(200, &out))
}

fn list_instances(
    cal: &CalendarData,
    event_id: &str,
    query: &Query,
) -> Result<ApiResponse, ApiError> {
    let series = cal
        .events
        .get(event_id)
        .map(|s| s.event.clone())
        .ok_or_else(ApiError::not_found)?;
    let max = max_results(query)?;
    let show_deleted = query.bool("showDeleted")?;
    let time_min = parse_time_param(query, "timeMin")?;
    let time_max = parse_time_param(query, "timeMax")?;
    let fingerprint = query.fingerprint(&["pageToken", "maxResults"]);
    let offset = match query.get("pageToken") {
        None => 0,
        Some(t) => {
            PageToken::decode(t)
                .filter(|p| p.k == "instances" && p.f == fingerprint)
                .ok_or_else(|| ApiError::invalid("Invalid page token."))?
                .a as usize
        }
    };
    let now = series.updated.unwrap_or_else(Utc::now);
    let mut all: Vec<Event> = if is_cancelled(&series) {
        Vec::new()
    } else if series.recurrence.as_ref().is_some_and(|r| !r.is_empty()) {
        instances_of(cal, &series, time_min, time_max, recurrence::MAX_EXPANSION)?
    } else {
        vec![series.clone()]
    };
    if let Some(original) = query.get("originalStart") {
        let at = DateTime::parse_from_rfc3339(original)
            .map_err(|_| ApiError::invalid_param("originalStart", original))?
            .with_timezone(&Utc);
        all.retain(|e| e.original_start_time.as_ref().and_then(recurrence::instant) == Some(at));
    }
    if !show_deleted {
        all.retain(|e| !is_cancelled(e));
    }
    let start = offset.min(all.len());
    let end = (start + max).min(all.len());
    let mut out = events_envelope(cal, now, all[start..end].to_vec());
    if end < all.len() {
        out.next_page_token = Some(
            PageToken {
                k: "instances".into(),
                f: fingerprint,
                a: end as u64,
                n: 0,
                since: None,
                t: 0,
            }
            .encode(),
        );
    }
    Ok(ApiResponse::json(200, &out))
}

/// Invalidate every events sync token of every calendar of `user`.
pub(crate) fn expire_sync_tokens(user: &mut UserData) {
    for cal in user.calendars.values_mut() {
        cal.sync_epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_rules() {
        assert!(valid_event_id("abcde"));
        assert!(valid_event_id("0123456789abcdefghijklmnopqrstuv"));
        assert!(!valid_event_id("abcd"));
        assert!(!valid_event_id("abcdw"));
        assert!(!valid_event_id("ABCDE"));
        assert!(!valid_event_id("abc-de"));
        assert!(!valid_event_id(&"a".repeat(1025)));
        assert!(valid_event_id(&"a".repeat(1024)));
    }

    #[test]
    fn routes_resolve() {
        let segs = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            route("GET", &segs("calendars/primary/events/abc/instances")),
            Some(CalendarRoute::EventsInstances(
                "primary".into(),
                "abc".into()
            ))
        );
        assert_eq!(route("POST", &segs("calendars/x/events/abc")), None);
    }

    #[test]
    fn merge_replaces_arrays_and_merges_objects() {
        let mut a = serde_json::json!({"start": {"dateTime": "x", "timeZone": "UTC"}, "recurrence": ["a", "b"]});
        merge_json(
            &mut a,
            &serde_json::json!({"start": {"dateTime": "y"}, "recurrence": ["c"]}),
        );
        assert_eq!(a["start"]["timeZone"], "UTC");
        assert_eq!(a["start"]["dateTime"], "y");
        assert_eq!(a["recurrence"], serde_json::json!(["c"]));
    }
}
