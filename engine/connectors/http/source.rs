//! `http` source: GET a JSON API page by page; records are selected by a JSON path.

use async_trait::async_trait;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::client::{self, HttpError};
use super::transport::Transport;
use crate::config::{BuildCtx, component::SourceConfig};
use crate::expr::{JsonPath, Template};
use crate::runtime::{Fatal, Record, RunCtx, Source};

/// Read records from a JSON HTTP API with GET, following its pagination.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// URL of the first page (a template over `settings` and `run`).
    #[schemars(example = "${env:ORDERS_API_URL}/api/orders")]
    pub url: Template,
    /// Query parameters (templates). The page parameter is added by `pagination`.
    #[serde(default)]
    pub query: IndexMap<String, Template>,
    /// Extra request headers (templates).
    #[serde(default)]
    pub headers: IndexMap<String, Template>,
    /// Sent as `Authorization: Bearer <token>`; use `${secret:NAME}`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// JSON path selecting the records in each page.
    #[schemars(example = "$.orders[*]")]
    pub records: JsonPath,
    /// JSON path of a record's identity (default: its position).
    #[serde(default)]
    #[schemars(example = "$.id")]
    pub key: Option<JsonPath>,
    /// How to get the next page.
    #[serde(default)]
    pub pagination: Pagination,
    #[serde(flatten)]
    pub transport: Transport<30, 3>,
    /// Stop after this many pages (a guard against APIs that never stop).
    #[serde(default = "default_max_pages")]
    #[schemars(range(min = 1))]
    pub max_pages: u64,
}

fn default_max_pages() -> u64 {
    100_000
}

/// Pagination styles.
#[derive(Deserialize, JsonSchema, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Pagination {
    /// One page only.
    #[default]
    None,
    /// The response names the next page (`$.next_page`); it is sent as `param`. Null or missing ends.
    NextField {
        /// JSON path of the next page value in the response.
        field: JsonPath,
        /// Query parameter that carries it.
        param: String,
    },
    /// Page numbers `start`, `start+1`, ... until a page has no records.
    PageNumber {
        /// Query parameter of the page number.
        param: String,
        /// Number of the first page.
        #[serde(default = "one")]
        start: u64,
    },
}

fn one() -> u64 {
    1
}

impl SourceConfig for HttpSourceConfig {
    fn build(self, _: &BuildCtx) -> Result<Box<dyn Source>, String> {
        let http = client::client(self.transport.timeout());
        Ok(Box::new(HttpSource {
            cfg: self,
            http,
            next: None,
            pages: 0,
            done: false,
            position: 0,
            base: None,
        }))
    }
}

struct HttpSource {
    cfg: HttpSourceConfig,
    http: reqwest::Client,
    /// Value of the page parameter for the next request.
    next: Option<Json>,
    pages: u64,
    done: bool,
    position: u64,
    /// URL, query and headers, rendered once per run.
    base: Option<RenderedRequest>,
}

/// URL, query parameters and headers of the first page.
type RenderedRequest = (String, Vec<(String, String)>, Vec<(String, String)>);

#[async_trait]
impl Source for HttpSource {
    async fn open(&mut self, ctx: &RunCtx, _cursor: Option<Json>) -> Result<(), Fatal> {
        let scope = ctx.run_scope(None);
        let render = |t: &Template| {
            t.render(&scope)
                .map_err(|e| Fatal::unavailable("http", format!("template: {e}")))
        };
        let url = render(&self.cfg.url)?;
        let query = self
            .cfg
            .query
            .iter()
            .map(|(k, t)| Ok((k.clone(), render(t)?)))
            .collect::<Result<Vec<_>, Fatal>>()?;
        let headers = self
            .cfg
            .headers
            .iter()
            .map(|(k, t)| Ok((k.clone(), render(t)?)))
            .collect::<Result<Vec<_>, Fatal>>()?;
        self.base = Some((url, query, headers));
        if let Pagination::PageNumber { start, .. } = &self.cfg.pagination {
            self.next = Some(Json::from(*start));
        }
        Ok(())
    }

    async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        if self.done || self.pages >= self.cfg.max_pages {
            return Ok(None);
        }
        let (url, query, headers) = self.base.clone().expect("opened");
        let page_param = match &self.cfg.pagination {
            Pagination::NextField { param, .. } | Pagination::PageNumber { param, .. } => {
                Some(param.clone())
            }
            Pagination::None => None,
        };
        let mut query = query;
        if let (Some(param), Some(v)) = (&page_param, &self.next) {
            query.push((
                param.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            ));
        }
        let token = self.cfg.bearer_token.clone();
        let http = self.http.clone();
        let make = || {
            let mut req = http.get(&url).query(&query);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            req
        };
        let body = client::get_json(make, self.cfg.transport.retries)
            .await
            // A page is a read: even a refused one means the source cannot be read.
            .map_err(|e: HttpError| e.fatal(&format!("HTTP source {}", host_of(&url))))?;
        self.pages += 1;
        let records: Vec<Json> = self.cfg.records.all(&body).into_iter().cloned().collect();
        match &self.cfg.pagination {
            Pagination::None => self.done = true,
            Pagination::NextField { field, .. } => {
                self.next = field.first(&body).filter(|v| !v.is_null()).cloned();
                self.done = self.next.is_none();
            }
            Pagination::PageNumber { .. } => {
                self.done = records.is_empty();
                self.next = self
                    .next
                    .as_ref()
                    .and_then(Json::as_u64)
                    .map(|n| Json::from(n + 1));
            }
        }
        let batch = records
            .into_iter()
            .map(|value| {
                self.position += 1;
                let key = match self.cfg.key.as_ref().and_then(|k| k.first(&value)) {
                    Some(Json::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => self.position.to_string(),
                };
                Record::new(key, value)
            })
            .collect();
        Ok(Some(batch))
    }
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| "?".into())
}
