//! Insightly API v3.1 on the wire: the request shapes crmsync sends and the JSON it reads.
//!
//! Field names are Insightly's (`CONTACT_ID`, `DATE_UPDATED_UTC`, `VISIBLE_TO`, …; see the
//! README's Insightly section for what was confirmed against published material). Records
//! are decoded one by one from the page's JSON array, so one malformed record is reported
//! and skipped while the rest of the page goes on.
//!
//! Paging: `skip`/`top` (≤ 500) with `count_total=true`, whose total comes back in the
//! `X-Total-Count` header; a listing stops at a short page or when `skip` reaches the total,
//! and never runs past [`MAX_PAGES`]. A listing whose total moved between its first and its
//! last page is marked unstable: offset paging may have skipped a record, so nothing is
//! inferred from what it did not contain.

use crate::crm::connector::http::{Credential, HttpClient, HttpRequest, HttpResponse};
use crate::crm::connector::secret::Secret;
use crate::crm::connector::ConnectorError;
use crate::model::UserId;
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Method;
use serde::Deserialize;

/// Upper bound on pages of one listing (500 per page: five million records).
pub const MAX_PAGES: usize = 10_000;

/// The CRM's name in messages.
pub const CRM: &str = "Insightly";

/// One API key and whose it is.
#[derive(Debug, Clone)]
pub struct Reader {
    /// The Insightly user whose key this is (`None`: the configured admin key).
    pub user: Option<UserId>,
    pub key: Secret,
    /// For messages: "the admin API key (from env X)", "the API key of user 7 (from …)".
    pub who: String,
}

impl Reader {
    /// A short, stable name for state keys (`admin`, `user:7`).
    pub fn tag(&self) -> String {
        match &self.user {
            None => "admin".into(),
            Some(u) => format!("user:{u}"),
        }
    }

    fn credential(&self) -> Credential {
        Credential::Basic {
            username: self.key.clone(),
            password: None,
        }
    }
}

/// The records of one listing, undecoded.
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<serde_json::Value>,
    /// Whether the total stayed the same across the pages (see the module docs).
    pub stable: bool,
}

/// The API of one instance.
pub struct Api<'a> {
    pub http: &'a HttpClient,
    /// Ends with `/`.
    pub base: &'a url::Url,
    pub page_size: u32,
}

fn protocol(path: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Protocol {
        crm: CRM.into(),
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A short excerpt of an error body for messages.
pub fn excerpt(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

impl Api<'_> {
    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<url::Url, ConnectorError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| ConnectorError::Config(format!("base_url + {path}: {e}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn request(
        &self,
        reader: &Reader,
        method: Method,
        url: url::Url,
        json: Option<serde_json::Value>,
    ) -> Result<HttpResponse, ConnectorError> {
        self.http.call(HttpRequest {
            method,
            url,
            credential: Some(reader.credential()),
            who: reader.who.clone(),
            json,
        })
    }

    /// Every record of `collection` the reader may see (`Contacts`, `Users`, …), or with
    /// `updated_after` only those changed after it (the `/Search` endpoint).
    pub fn list(
        &self,
        reader: &Reader,
        collection: &str,
        updated_after: Option<DateTime<Utc>>,
    ) -> Result<Listing, ConnectorError> {
        let path = match updated_after {
            Some(_) => format!("{collection}/Search"),
            None => collection.to_owned(),
        };
        let top = self.page_size.clamp(1, 500) as usize;
        let mut listing = Listing::default();
        let mut first_total = None;
        for page in 0..MAX_PAGES {
            let mut query = vec![
                ("skip", (page * top).to_string()),
                ("top", top.to_string()),
                ("count_total", "true".to_owned()),
            ];
            if let Some(after) = updated_after {
                query.push((
                    "updated_after_utc",
                    after.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                ));
            }
            let url = self.url(&path, &query)?;
            let shown = url.path().to_owned();
            let response = self.request(reader, Method::GET, url, None)?;
            if !response.is_success() {
                return Err(protocol(
                    &shown,
                    format!("HTTP {}: {}", response.status, excerpt(&response.body)),
                ));
            }
            let total = response.header_u64("x-total-count");
            if page == 0 {
                first_total = total;
            }
            let items: Vec<serde_json::Value> = serde_json::from_str(&response.body)
                .map_err(|e| protocol(&shown, format!("expected a JSON array: {e}")))?;
            let got = items.len();
            listing.items.extend(items);
            let done = got < top || total.is_some_and(|t| ((page + 1) * top) as u64 >= t);
            if done {
                listing.stable = first_total == total;
                return Ok(listing);
            }
        }
        Err(protocol(
            &path,
            format!("more than {MAX_PAGES} pages of {top}: the listing was cut off"),
        ))
    }

    /// One record (`Contacts/123`); `None` when the reader gets 404 (deleted, or not
    /// visible to that key).
    pub fn get(
        &self,
        reader: &Reader,
        collection: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, ConnectorError> {
        let url = self.url(&format!("{collection}/{id}"), &[])?;
        let shown = url.path().to_owned();
        let response = self.request(reader, Method::GET, url, None)?;
        match response.status {
            404 => Ok(None),
            s if (200..300).contains(&s) => serde_json::from_str(&response.body)
                .map(Some)
                .map_err(|e| protocol(&shown, format!("expected a JSON object: {e}"))),
            s => Err(protocol(
                &shown,
                format!("HTTP {s}: {}", excerpt(&response.body)),
            )),
        }
    }

    /// `PUT /{collection}` with the record id and the fields to set; the answer as sent.
    pub fn put(
        &self,
        reader: &Reader,
        collection: &str,
        body: serde_json::Value,
    ) -> Result<HttpResponse, ConnectorError> {
        let url = self.url(collection, &[])?;
        self.request(reader, Method::PUT, url, Some(body))
    }

    /// `DELETE /{collection}/{id}`; the answer as sent.
    pub fn delete(
        &self,
        reader: &Reader,
        collection: &str,
        id: &str,
    ) -> Result<HttpResponse, ConnectorError> {
        let url = self.url(&format!("{collection}/{id}"), &[])?;
        self.request(reader, Method::DELETE, url, None)
    }
}

/// Insightly's date-times: `yyyy-MM-dd HH:mm:ss` in UTC inside bodies (ISO-8601 forms are
/// accepted too).
pub fn parse_utc(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(raw) {
        return Some(dt.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(raw, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// Insightly's body format for a UTC date-time.
pub fn format_utc(at: &NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A tag.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireTag {
    pub tag_name: Option<String>,
}

/// Who may see a record (Simple Permissions).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireVisibility {
    #[serde(default)]
    pub visible_to: Option<String>,
    #[serde(default)]
    pub visible_team_id: Option<i64>,
    #[serde(default)]
    pub visible_user_ids: Option<String>,
}

/// `Contacts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireContact {
    pub contact_id: i64,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub background: Option<String>,
    #[serde(default)]
    pub owner_user_id: Option<i64>,
    #[serde(default)]
    pub organisation_id: Option<i64>,
    #[serde(default)]
    pub email_address: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub phone_mobile: Option<String>,
    #[serde(default)]
    pub phone_home: Option<String>,
    #[serde(default)]
    pub phone_other: Option<String>,
    #[serde(default)]
    pub phone_assistant: Option<String>,
    #[serde(default)]
    pub phone_fax: Option<String>,
    #[serde(default)]
    pub address_mail_street: Option<String>,
    #[serde(default)]
    pub address_mail_city: Option<String>,
    #[serde(default)]
    pub address_mail_state: Option<String>,
    #[serde(default)]
    pub address_mail_postcode: Option<String>,
    #[serde(default)]
    pub address_mail_country: Option<String>,
    #[serde(default)]
    pub address_other_street: Option<String>,
    #[serde(default)]
    pub address_other_city: Option<String>,
    #[serde(default)]
    pub address_other_state: Option<String>,
    #[serde(default)]
    pub address_other_postcode: Option<String>,
    #[serde(default)]
    pub address_other_country: Option<String>,
    #[serde(default)]
    pub date_updated_utc: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<WireTag>>,
    #[serde(flatten)]
    pub visibility: WireVisibility,
}

/// `Organisations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireOrganisation {
    pub organisation_id: i64,
    #[serde(default)]
    pub organisation_name: Option<String>,
    #[serde(default)]
    pub owner_user_id: Option<i64>,
    #[serde(default)]
    pub date_updated_utc: Option<String>,
    #[serde(flatten)]
    pub visibility: WireVisibility,
}

/// A link between two records (`LINKS` of an event).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireLink {
    #[serde(default)]
    pub object_name: Option<String>,
    #[serde(default)]
    pub object_id: Option<i64>,
    #[serde(default)]
    pub link_object_name: Option<String>,
    #[serde(default)]
    pub link_object_id: Option<i64>,
}

/// `Events`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireEvent {
    pub event_id: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub start_date_utc: Option<String>,
    #[serde(default)]
    pub end_date_utc: Option<String>,
    #[serde(default)]
    pub all_day: Option<bool>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub owner_user_id: Option<i64>,
    #[serde(default)]
    pub date_updated_utc: Option<String>,
    #[serde(default)]
    pub links: Option<Vec<WireLink>>,
    #[serde(flatten)]
    pub visibility: WireVisibility,
}

/// `Users`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireUser {
    pub user_id: i64,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email_address: Option<String>,
    #[serde(default)]
    pub administrator: Option<bool>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub profile_id: Option<i64>,
    #[serde(default)]
    pub role_id: Option<i64>,
}

/// `Teams`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireTeam {
    pub team_id: i64,
    #[serde(default)]
    pub team_name: Option<String>,
}

/// `TeamMembers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WireTeamMember {
    pub team_id: i64,
    pub member_user_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insightly_dates_parse_in_both_forms() {
        let a = parse_utc("2026-11-01 10:00:00").unwrap();
        let b = parse_utc("2026-11-01T10:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_utc(&a.naive_utc()), "2026-11-01 10:00:00");
        assert!(parse_utc("yesterday").is_none());
    }

    #[test]
    fn records_decode_from_the_published_shape() {
        let c: WireContact = serde_json::from_value(serde_json::json!({
            "CONTACT_ID": 7, "FIRST_NAME": "Ada", "OWNER_USER_ID": 1, "EMAIL_ADDRESS": "a@b.c",
            "DATE_UPDATED_UTC": "2026-11-01 10:00:00", "VISIBLE_TO": "TEAM",
            "VISIBLE_TEAM_ID": 3, "TAGS": [{"TAG_NAME": "vip"}], "CUSTOMFIELDS": []
        }))
        .unwrap();
        assert_eq!(c.contact_id, 7);
        assert_eq!(c.visibility.visible_team_id, Some(3));
        assert!(
            serde_json::from_value::<WireContact>(serde_json::json!({"CONTACT_ID": "x"})).is_err()
        );
        assert!(excerpt(&"x".repeat(500)).ends_with('…'));
    }
}
