//! The official `google-calendar3` and `google-people1` hubs, built for one impersonated user
//! and pointed at Google or at an emulator root URL.
//!
//! URL layout (as the crates build requests): Calendar calls go to
//! `{root}/calendar/v3/...` (`base_url` = `{root}/calendar/v3/`), People calls to
//! `{root}/v1/...` (`base_url` = `{root}/`).

use google_calendar3::CalendarHub;
use google_people1::PeopleService;

use super::auth::{check_url, AuthError, Connector, HttpClients, UserAuth};

/// Google's own root URLs.
pub const GOOGLE_CALENDAR_ROOT: &str = "https://www.googleapis.com/";
pub const GOOGLE_PEOPLE_ROOT: &str = "https://people.googleapis.com/";

pub type Calendar = CalendarHub<Connector>;
pub type People = PeopleService<Connector>;

/// `root` with a trailing `/` (as it is when it has one).
pub(super) fn with_slash(root: &str) -> String {
    if root.ends_with('/') {
        root.to_string()
    } else {
        format!("{root}/")
    }
}

/// A Calendar hub for `auth`'s user. `root` is e.g. `http://127.0.0.1:8085` (emulator) or
/// [`GOOGLE_CALENDAR_ROOT`].
pub fn calendar_hub(root: &str, auth: UserAuth) -> Result<Calendar, AuthError> {
    calendar_hub_on(&HttpClients::new(), root, auth)
}

/// [`calendar_hub`] sending through `http`'s shared pool.
pub fn calendar_hub_on(
    http: &HttpClients,
    root: &str,
    auth: UserAuth,
) -> Result<Calendar, AuthError> {
    check_url(root)?;
    let root = with_slash(root);
    let mut hub = CalendarHub::new(http.hubs(), auth);
    hub.root_url(root.clone());
    hub.base_url(format!("{root}calendar/v3/"));
    Ok(hub)
}

/// A People hub for `auth`'s user. `root` is e.g. `http://127.0.0.1:8085` (emulator) or
/// [`GOOGLE_PEOPLE_ROOT`].
pub fn people_hub(root: &str, auth: UserAuth) -> Result<People, AuthError> {
    people_hub_on(&HttpClients::new(), root, auth)
}

/// [`people_hub`] sending through `http`'s shared pool.
pub fn people_hub_on(http: &HttpClients, root: &str, auth: UserAuth) -> Result<People, AuthError> {
    check_url(root)?;
    let root = with_slash(root);
    let mut hub = PeopleService::new(http.hubs(), auth);
    hub.root_url(root.clone());
    hub.base_url(root);
    Ok(hub)
}
