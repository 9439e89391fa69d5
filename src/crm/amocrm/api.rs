//! amoCRM API v4 on the wire: the response shapes crmsync reads (lenient: fields it does
//! not use are ignored), and [`AmoApi`], which sends requests through the connector's HTTP
//! policy with the configured auth and walks paged lists.
//!
//! Lists are HAL documents: `{"_page": 1, "_links": {"self": …, "next": …}, "_embedded":
//! {"contacts": […]}}`, at most `limit` (≤ 250) items per `page`. A `next` link means more
//! pages; a page past the end, or a list with nothing to show, is `204 No Content` with an
//! empty body. One record by id is `GET …/{id}`, `204` when it does not exist. The next
//! page is asked for by number (the `next` link's host is never followed).

use super::super::connector::http::{Credential, HttpClient, HttpRequest, HttpResponse};
use super::super::connector::pacing::Clock;
use super::super::connector::ConnectorError;
use super::super::CrmError;
use super::auth::{Auth, CRM};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Pages one listing may have (250 000 records at 250 per page): a bound on every walk.
pub const MAX_PAGES: u32 = 1_000;

/// `GET api/v4/account?with=users_groups,datetime_settings`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiAccount {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "_embedded")]
    pub embedded: Option<AccountEmbedded>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountEmbedded {
    #[serde(default)]
    pub users_groups: Vec<ApiGroup>,
    #[serde(default)]
    pub datetime_settings: Option<DatetimeSettings>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiGroup {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatetimeSettings {
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A user of `GET api/v4/users`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiUser {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub rights: ApiRights,
}

/// A user's `rights`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiRights {
    #[serde(default)]
    pub contacts: Option<ApiEntityRights>,
    #[serde(default)]
    pub companies: Option<ApiEntityRights>,
    #[serde(default)]
    pub tasks: Option<ApiTaskRights>,
    #[serde(default)]
    pub is_admin: bool,
    #[serde(default)]
    pub is_free: bool,
    /// Required: a user whose state is unknown is not read.
    pub is_active: bool,
    #[serde(default)]
    pub group_id: Option<i64>,
}

/// `view` / `edit` / `add` / `delete` / `export`, each `A`, `G`, `M` or `D` (`add`: `A`/`D`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiEntityRights {
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub edit: Option<String>,
    #[serde(default)]
    pub add: Option<String>,
    #[serde(default)]
    pub delete: Option<String>,
    #[serde(default)]
    pub export: Option<String>,
}

/// Tasks have only `edit` and `delete` rights.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiTaskRights {
    #[serde(default)]
    pub edit: Option<String>,
    #[serde(default)]
    pub delete: Option<String>,
}

/// One `custom_fields_values` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiFieldValues {
    #[serde(default)]
    pub field_id: Option<i64>,
    #[serde(default)]
    pub field_code: Option<String>,
    #[serde(default)]
    pub values: Option<Vec<ApiFieldValue>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiFieldValue {
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub enum_code: Option<String>,
    /// Lists show the enum's code here (`"enum": "WORK"`).
    #[serde(default, rename = "enum")]
    pub enum_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiTag {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiIdRef {
    pub id: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactEmbedded {
    #[serde(default)]
    pub tags: Vec<ApiTag>,
    #[serde(default)]
    pub companies: Vec<ApiIdRef>,
}

/// A contact of `GET api/v4/contacts`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiContact {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    pub responsible_user_id: i64,
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub is_deleted: Option<bool>,
    #[serde(default)]
    pub custom_fields_values: Option<Vec<ApiFieldValues>>,
    #[serde(default, rename = "_embedded")]
    pub embedded: Option<ContactEmbedded>,
}

/// A company of `GET api/v4/companies`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiCompany {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    pub responsible_user_id: i64,
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub is_deleted: Option<bool>,
}

/// A task of `GET api/v4/tasks`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiTask {
    pub id: i64,
    pub responsible_user_id: i64,
    #[serde(default)]
    pub entity_id: Option<i64>,
    #[serde(default)]
    pub entity_type: Option<String>,
    #[serde(default)]
    pub is_completed: Option<bool>,
    pub task_type_id: i64,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub duration: Option<i64>,
    pub complete_till: i64,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// Sends amoCRM requests with the connector's auth through its HTTP policy.
pub struct AmoApi {
    pub http: HttpClient,
    pub api_base: url::Url,
    pub auth: Auth,
    pub clock: Arc<dyn Clock>,
}

fn protocol(path: &str, message: impl Into<String>) -> CrmError {
    CrmError::Connector(ConnectorError::Protocol {
        crm: CRM.into(),
        path: path.to_owned(),
        message: message.into(),
    })
}

impl AmoApi {
    fn url(&self, path: &str, query: &[(String, String)]) -> Result<url::Url, CrmError> {
        let mut url = self
            .api_base
            .join(path)
            .map_err(|e| protocol(path, format!("bad path: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// One request, authenticated; after a 401 the auth may refresh once and the request
    /// is sent again; a second 401 is the error.
    fn send(
        &mut self,
        method: Method,
        url: url::Url,
        body: Option<Value>,
    ) -> Result<HttpResponse, CrmError> {
        let (mut token, mut who) = self.auth.bearer(&self.http, self.clock.as_ref())?;
        for attempt in 0..2 {
            let request = HttpRequest {
                method: method.clone(),
                url: url.clone(),
                credential: Some(Credential::Bearer(token.clone())),
                who: who.clone(),
                json: body.clone(),
            };
            match self.http.call(request) {
                Err(ConnectorError::Unauthorized { status: 401, .. }) if attempt == 0 => {
                    match self.auth.refresh_after_401(&self.http, self.clock.as_ref()) {
                        Some(fresh) => {
                            token = fresh?;
                            who = format!("{who} (refreshed after a 401)");
                        }
                        None => {
                            return Err(ConnectorError::Unauthorized {
                                crm: CRM.into(),
                                who,
                                status: 401,
                            }
                            .into())
                        }
                    }
                }
                Err(e) => return Err(e.into()),
                Ok(response) => return Ok(response),
            }
        }
        Err(ConnectorError::Unauthorized {
            crm: CRM.into(),
            who,
            status: 401,
        }
        .into())
    }

    fn json_of(path: &str, response: &HttpResponse) -> Result<Option<Value>, CrmError> {
        match response.status {
            200 => serde_json::from_str(&response.body)
                .map(Some)
                .map_err(|e| protocol(path, format!("the answer is not JSON: {e}"))),
            204 => Ok(None),
            402 => Err(protocol(
                path,
                "HTTP 402: the amoCRM account's subscription has ended",
            )),
            status => Err(protocol(
                path,
                format!("HTTP {status}: {}", problem_detail(&response.body)),
            )),
        }
    }

    /// `GET path?query`: the JSON body, `None` for 204 No Content (or 404).
    pub fn get(
        &mut self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Option<Value>, CrmError> {
        let url = self.url(path, query)?;
        let response = self.send(Method::GET, url, None)?;
        if response.status == 404 {
            return Ok(None);
        }
        Self::json_of(path, &response)
    }

    /// `PATCH path` with `body`; a 400/422 (amoCRM's validation errors) is
    /// [`CrmError::Invalid`] with amoCRM's detail.
    pub fn patch(&mut self, path: &str, body: Value) -> Result<Value, CrmError> {
        let url = self.url(path, &[])?;
        let response = self.send(Method::PATCH, url, Some(body))?;
        match response.status {
            404 | 204 => Err(protocol(path, "the record is gone")),
            400 | 422 => Err(CrmError::Invalid(format!(
                "amoCRM refused the change: {}",
                problem_detail(&response.body)
            ))),
            _ => Self::json_of(path, &response)?
                .ok_or_else(|| protocol(path, "an empty answer to a change")),
        }
    }

    /// Walks every page of the list at `path` (`_embedded[key]`), handing each page's items
    /// to `each`. Stops at a page without a `next` link or at 204.
    pub fn for_each_page(
        &mut self,
        path: &str,
        key: &str,
        query: &[(String, String)],
        limit: u32,
        mut each: impl FnMut(Vec<Value>) -> Result<(), CrmError>,
    ) -> Result<(), CrmError> {
        for page in 1..=MAX_PAGES {
            let mut q = query.to_vec();
            q.push(("limit".into(), limit.to_string()));
            q.push(("page".into(), page.to_string()));
            let Some(body) = self.get(path, &q)? else {
                return Ok(());
            };
            let items = match body.pointer(&format!("/_embedded/{key}")) {
                Some(Value::Array(items)) => items.clone(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(protocol(path, format!("_embedded.{key} is not a list"))),
            };
            let more = body.pointer("/_links/next/href").is_some();
            let empty = items.is_empty();
            each(items)?;
            if !more || empty {
                return Ok(());
            }
        }
        Err(protocol(
            path,
            format!("more than {MAX_PAGES} pages; lower the data volume or raise page_size"),
        ))
    }
}

/// amoCRM's problem+json detail (`title`, `detail`, `validation-errors`), or the body's start.
fn problem_detail(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(200).collect();
    };
    let mut parts = Vec::new();
    for key in ["title", "detail", "hint"] {
        if let Some(s) = v.get(key).and_then(Value::as_str) {
            parts.push(s.to_owned());
        }
    }
    if let Some(errors) = v.get("validation-errors") {
        parts.push(errors.to_string().chars().take(300).collect());
    }
    if parts.is_empty() {
        body.chars().take(200).collect()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_shapes_parse() {
        let contact: ApiContact = serde_json::from_value(serde_json::json!({
            "id": 3, "name": "Иван Иванов", "first_name": "Иван", "last_name": "Иванов",
            "responsible_user_id": 504141, "group_id": 0, "created_by": 504141,
            "updated_by": 504141, "created_at": 1582117331, "updated_at": 1590943929,
            "closest_task_at": null,
            "custom_fields_values": [{"field_id": 3, "field_name": "Телефон", "field_code": "PHONE",
                "field_type": "multitext", "values": [{"value": "+79123", "enum_id": 1, "enum": "WORK"}]}],
            "account_id": 28805383,
            "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/contacts/3"}},
            "_embedded": {"tags": [], "companies": [{"id": 1, "_links": {}}]}
        }))
        .unwrap();
        assert_eq!(contact.responsible_user_id, 504141);
        let field = &contact.custom_fields_values.unwrap()[0];
        assert_eq!(
            field.values.as_ref().unwrap()[0].enum_name.as_deref(),
            Some("WORK")
        );
        assert_eq!(contact.embedded.unwrap().companies[0].id, 1);
        let missing_owner = serde_json::from_value::<ApiContact>(serde_json::json!({"id": 4}));
        assert!(missing_owner.is_err());
    }

    #[test]
    fn problem_details_are_short_and_named() {
        let body = r#"{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"custom_fields_values.0.field_id"}]}],"title":"Bad Request","status":400,"detail":"Request validation failed"}"#;
        let d = problem_detail(body);
        assert!(
            d.starts_with("Bad Request; Request validation failed"),
            "{d}"
        );
        assert!(d.contains("NotSupportedChoice"));
        assert_eq!(problem_detail("oops"), "oops");
    }
}
