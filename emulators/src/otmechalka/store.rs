//! The emulated account's data: clients and tickets keyed by origin_id, and the rules that need
//! the stored state (duplicates, the active-client limit, a ticket's client must exist).

use std::collections::HashMap;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::OtmechalkaConfig;
use super::validate::{
    ClientInput, FieldErrors, TicketInput, format_money, validate_client, validate_ticket,
};

/// A stored client as `GET /api/clients/<origin_id>/` returns it. Courses and branch offices are
/// normalised to catalogue IDs (as strings), whichever way they were sent; their names and the
/// groups the client was put into (one per course x branch office) come alongside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Client {
    pub id: u64,
    pub origin_id: String,
    pub last_name: String,
    pub first_name: String,
    pub phone: String,
    pub email: Option<String>,
    pub courses: Vec<String>,
    pub course_names: Vec<String>,
    pub branchoffices: Vec<String>,
    pub branchoffice_names: Vec<String>,
    pub birthdate: Option<String>,
    pub gender: String,
    pub additional_data: Option<String>,
    pub groups: Vec<String>,
    pub is_archived: bool,
}

/// A stored ticket as `GET /api/tickets/<origin_id>/` returns it. Always paid; visits and the
/// validity come from its ticket type; it joins the groups of the type's courses in the selling
/// branch office.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ticket {
    pub id: u64,
    pub origin_id: String,
    pub client_origin_id: String,
    pub client_id: u64,
    pub ticket_type: String,
    pub price_initial: String,
    pub discount: String,
    pub price_final: String,
    pub selling_date: String,
    pub selling_branchoffice: String,
    pub selling_branchoffice_name: String,
    pub employee: String,
    pub payment_method: String,
    pub is_paid: bool,
    pub visits_total: u32,
    pub visits_left: u32,
    pub valid_until: String,
    pub groups: Vec<String>,
}

/// Why a request was refused; every variant answers `{"detail": ...}`, validation adds `errors`.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiError {
    /// 404 `{"detail": "Not found."}`
    NotFound,
    /// 409, e.g. a create with an origin_id that exists.
    Conflict(String),
    /// 400 with per-field `errors`.
    Invalid(FieldErrors),
    /// 400 without `errors` (the active-client limit).
    Refused(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) | ApiError::Refused(_) => StatusCode::BAD_REQUEST,
        }
    }
    pub fn body(&self) -> Value {
        match self {
            ApiError::NotFound => json!({ "detail": "Not found." }),
            ApiError::Conflict(d) | ApiError::Refused(d) => json!({ "detail": d }),
            ApiError::Invalid(e) => e.to_json(),
        }
    }
}

fn field_error(field: &str, msg: String) -> ApiError {
    let mut e = FieldErrors::default();
    e.add(field, msg);
    ApiError::Invalid(e)
}

#[derive(Default)]
pub struct Store {
    pub clients: HashMap<String, Client>,
    pub tickets: HashMap<String, Ticket>,
    next_client_id: u64,
    next_ticket_id: u64,
    active: usize,
}

impl Store {
    pub fn new() -> Self {
        Self {
            next_client_id: 12_456,
            next_ticket_id: 70_001,
            ..Default::default()
        }
    }

    pub fn active_clients(&self) -> usize {
        self.active
    }

    fn build_client(
        &self,
        id: u64,
        input: ClientInput,
        is_archived: bool,
        cfg: &OtmechalkaConfig,
    ) -> Client {
        let cat = &cfg.catalogue;
        let name =
            |n: Option<&super::catalogue::Named>| n.map(|n| n.name.clone()).unwrap_or_default();
        let groups = input
            .branchoffices
            .iter()
            .flat_map(|b| input.courses.iter().map(move |c| cat.group_name(*c, *b)))
            .collect();
        Client {
            id,
            course_names: input
                .courses
                .iter()
                .map(|c| name(cat.course_by_id(*c)))
                .collect(),
            courses: input.courses.iter().map(u64::to_string).collect(),
            branchoffice_names: input
                .branchoffices
                .iter()
                .map(|b| name(cat.branchoffice_by_id(*b)))
                .collect(),
            branchoffices: input.branchoffices.iter().map(u64::to_string).collect(),
            origin_id: input.origin_id,
            last_name: input.last_name,
            first_name: input.first_name,
            phone: input.phone,
            email: input.email,
            birthdate: input.birthdate,
            gender: input.gender,
            additional_data: input.additional_data,
            groups,
            is_archived,
        }
    }

    /// `POST /api/clients/`: validate, refuse duplicates (409), then the active-client limit.
    pub fn create_client(
        &mut self,
        body: &Value,
        cfg: &OtmechalkaConfig,
    ) -> Result<Client, ApiError> {
        let input = validate_client(body, &cfg.catalogue).map_err(ApiError::Invalid)?;
        if self.clients.contains_key(&input.origin_id) {
            return Err(ApiError::Conflict(format!(
                "Client with origin_id \"{}\" already exists.",
                input.origin_id
            )));
        }
        if self.active >= cfg.max_active_clients {
            return Err(ApiError::Refused(format!(
                "Active clients limit reached: the account has {} active clients of {} allowed. \
                 Archive clients to add new ones.",
                self.active, cfg.max_active_clients
            )));
        }
        let id = self.next_client_id;
        self.next_client_id += 1;
        let client = self.build_client(id, input, false, cfg);
        self.clients
            .insert(client.origin_id.clone(), client.clone());
        self.active += 1;
        Ok(client)
    }

    /// `POST /api/clients/<origin_id>/`: a full replacement of the client's fields. The body's
    /// origin_id may be left out; if given it must match the URL.
    pub fn update_client(
        &mut self,
        origin_id: &str,
        body: &Value,
        cfg: &OtmechalkaConfig,
    ) -> Result<Client, ApiError> {
        let Some(existing) = self.clients.get(origin_id) else {
            return Err(ApiError::NotFound);
        };
        let (id, archived) = (existing.id, existing.is_archived);
        let mut body = body.clone();
        if let Some(obj) = body.as_object_mut() {
            match obj.get("origin_id") {
                None | Some(Value::Null) => {
                    obj.insert("origin_id".into(), json!(origin_id));
                }
                Some(v)
                    if v.as_str() == Some(origin_id)
                        || v.as_u64().is_some_and(|n| n.to_string() == origin_id) => {}
                Some(v) => {
                    return Err(field_error(
                        "origin_id",
                        format!(
                            "Does not match the origin_id in the URL (\"{origin_id}\"); got {v}."
                        ),
                    ));
                }
            }
        }
        let input = validate_client(&body, &cfg.catalogue).map_err(ApiError::Invalid)?;
        let client = self.build_client(id, input, archived, cfg);
        self.clients.insert(origin_id.to_string(), client.clone());
        Ok(client)
    }

    /// Moves a client out of (or back into) the active count. Unarchiving ignores the limit.
    pub fn set_archived(&mut self, origin_id: &str, archived: bool) -> bool {
        let Some(c) = self.clients.get_mut(origin_id) else {
            return false;
        };
        if c.is_archived != archived {
            c.is_archived = archived;
            if archived {
                self.active -= 1
            } else {
                self.active += 1
            }
        }
        true
    }

    /// `POST /api/tickets/`: validate (the client must exist), refuse duplicates (409).
    pub fn create_ticket(
        &mut self,
        body: &Value,
        cfg: &OtmechalkaConfig,
    ) -> Result<Ticket, ApiError> {
        let input = match validate_ticket(body, &cfg.catalogue, cfg.check_prices) {
            Ok(t) if !self.clients.contains_key(&t.client_origin_id) => {
                let msg = format!(
                    "Client with origin_id \"{}\" does not exist.",
                    t.client_origin_id
                );
                return Err(field_error("client_origin_id", msg));
            }
            Ok(t) => t,
            Err(mut e) => {
                let client = body.get("client_origin_id").and_then(|v| v.as_str());
                if let Some(c) = client
                    && !c.trim().is_empty()
                    && !self.clients.contains_key(c)
                {
                    e.add(
                        "client_origin_id",
                        format!("Client with origin_id \"{c}\" does not exist."),
                    );
                }
                return Err(ApiError::Invalid(e));
            }
        };
        if self.tickets.contains_key(&input.origin_id) {
            return Err(ApiError::Conflict(format!(
                "Ticket with origin_id \"{}\" already exists.",
                input.origin_id
            )));
        }
        let ticket = self.build_ticket(input, cfg);
        self.tickets
            .insert(ticket.origin_id.clone(), ticket.clone());
        Ok(ticket)
    }

    fn build_ticket(&mut self, t: TicketInput, cfg: &OtmechalkaConfig) -> Ticket {
        let cat = &cfg.catalogue;
        let tt = cat
            .ticket_type(&t.ticket_type)
            .expect("ticket type validated")
            .clone();
        let id = self.next_ticket_id;
        self.next_ticket_id += 1;
        let valid_until = t.selling_date + chrono::Days::new(u64::from(tt.valid_days));
        Ticket {
            id,
            client_id: self.clients[&t.client_origin_id].id,
            groups: tt
                .courses
                .iter()
                .map(|c| cat.group_name(*c, t.selling_branchoffice))
                .collect(),
            selling_branchoffice_name: cat
                .branchoffice_by_id(t.selling_branchoffice)
                .map(|n| n.name.clone())
                .unwrap_or_default(),
            selling_branchoffice: t.selling_branchoffice.to_string(),
            origin_id: t.origin_id,
            client_origin_id: t.client_origin_id,
            ticket_type: t.ticket_type,
            price_initial: format_money(t.price_initial),
            discount: format_money(t.discount),
            price_final: format_money(t.price_final),
            selling_date: t.selling_date.format("%Y-%m-%d").to_string(),
            employee: t.employee,
            payment_method: t.payment_method,
            is_paid: true,
            visits_total: tt.visits,
            visits_left: tt.visits,
            valid_until: valid_until.format("%Y-%m-%d").to_string(),
        }
    }
}
