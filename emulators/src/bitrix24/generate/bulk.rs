//! Deterministic bulk portals for benchmarks: contacts, deals with product rows, and the
//! activity-report scale.
use super::*;

impl Portal {
    /// `n` contacts (IDs 1..=n) in the demo's field shape, plus the demo users/departments.
    pub fn bulk_contacts(n: usize) -> Portal {
        let mut p = Portal::new();
        p.demo_people();
        p.add_bulk_contacts(n, 42);
        p
    }

    /// `n` deals (IDs 1..=n) with one or two product rows each over `n / 2` contacts.
    pub fn bulk_deals(n: usize) -> Portal {
        let mut p = Portal::new();
        p.demo_people();
        p.add_bulk_contacts((n / 2).max(1), 42);
        p.add_bulk_deals(n, 43, true);
        p
    }

    /// A portal sized for activity-report benchmarks.
    pub fn report_scale(spec: &ReportScale) -> Portal {
        let mut p = Portal::new();
        // One RNG through every section, in this order, so a seed always gives the same portal.
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let users = p.scale_people(spec, &mut rng);
        p.scale_companies(spec, &mut rng, users);
        p.scale_links(spec, &mut rng);
        p.scale_activities(spec, &mut rng, users);
        p
    }

    /// Departments (a root and children) and users; the number of users.
    fn scale_people(&mut self, spec: &ReportScale, rng: &mut StdRng) -> u64 {
        // departments: a root and children
        for d in 1..=spec.departments.max(1) as u64 {
            let mut row =
                obj(json!({"ID": d.to_string(), "NAME": format!("Отдел {d}"), "SORT": 100 * d}));
            if d > 1 {
                row.insert("PARENT".into(), json!(((d - 2) / 3 + 1).to_string()));
            }
            self.insert("department", row);
        }
        let users = spec.users.max(1) as u64;
        for u in 1..=users {
            let dep = if u == 1 {
                1
            } else {
                rng.random_range(1..=spec.departments.max(1) as u64)
            };
            let (first, last) = if u % 2 == 0 {
                (MALE_FIRST[u as usize % 12], LAST[u as usize % 12].0)
            } else {
                (FEMALE_FIRST[u as usize % 12], LAST[u as usize % 12].1)
            };
            self.insert(
                "user",
                obj(json!({"ID": u.to_string(), "ACTIVE": u % 17 != 0, "NAME": first, "LAST_NAME": last, "SECOND_NAME": "",
                    "EMAIL": format!("user{u}@example.ru"), "UF_DEPARTMENT": [dep], "USER_TYPE": "employee", "WORK_POSITION": "Менеджер"})),
            );
        }
        for d in 1..=spec.departments.max(1) as u64 {
            let head = rng.random_range(1..=users);
            self.set_field("department", d, "UF_HEAD", json!(head.to_string()));
        }
        users
    }

    fn scale_companies(&mut self, spec: &ReportScale, rng: &mut StdRng, users: u64) {
        let off = self.offset_secs;
        let companies = spec.companies as u64;
        let t = self.table_mut("company");
        let cols: Vec<usize> = [
            "ID",
            "TITLE",
            "COMPANY_TYPE",
            "ASSIGNED_BY_ID",
            "CREATED_BY_ID",
            "MODIFY_BY_ID",
            "DATE_CREATE",
            "DATE_MODIFY",
            "OPENED",
            "CURRENCY_ID",
        ]
        .iter()
        .map(|c| t.ensure_col(c))
        .collect();
        let t0 = ts("2022-01-01T09:00:00");
        for c in 1..=companies {
            let created = t0 + rng.random_range(0..(2 * 365 * 86_400));
            let vals = [
                num(c),
                Cell::text(&format!("Компания {c}")),
                Cell::text(if c % 4 == 0 { "PARTNER" } else { "CUSTOMER" }),
                num(rng.random_range(1..=users)),
                num(1),
                num(1),
                Cell::Date { ts: created, off },
                Cell::Date {
                    ts: created + rng.random_range(0..90 * 86_400),
                    off,
                },
                Cell::text("Y"),
                Cell::text("RUB"),
            ];
            insert_cols(t, c, &cols, vals);
        }
    }

    /// Contacts and deals, a share of them with a company.
    fn scale_links(&mut self, spec: &ReportScale, rng: &mut StdRng) {
        let companies = spec.companies as u64;
        self.add_bulk_contacts(spec.contacts, spec.seed.wrapping_add(1));
        if companies > 0 {
            for c in 1..=spec.contacts as u64 {
                if rng.random_bool(0.6) {
                    let co = rng.random_range(1..=companies);
                    self.set_field("contact", c, "COMPANY_ID", json!(co.to_string()));
                    self.link_contact_company(c, co, true);
                }
            }
        }
        self.add_bulk_deals(spec.deals, spec.seed.wrapping_add(2), false);
        if companies > 0 {
            for d in 1..=spec.deals as u64 {
                if rng.random_bool(0.3) {
                    self.set_field(
                        "deal",
                        d,
                        "COMPANY_ID",
                        json!(rng.random_range(1..=companies).to_string()),
                    );
                }
            }
        }
    }

    fn scale_activities(&mut self, spec: &ReportScale, rng: &mut StdRng, users: u64) {
        let off = self.offset_secs;
        let companies = spec.companies as u64;
        // activities
        let deals = spec.deals as u64;
        let contacts = spec.contacts as u64;
        let now = spec.now;
        let t = self.table_mut("activity");
        let names = activity_columns();
        let cols: Vec<usize> = names.iter().map(|c| t.ensure_col(c)).collect();
        for a in 1..=spec.activities as u64 {
            let pick = rng.random_range(0..3);
            let (ot, owner) = match pick {
                0 if deals > 0 => (2, rng.random_range(1..=deals)),
                1 if contacts > 0 => (3, rng.random_range(1..=contacts)),
                _ if companies > 0 => (4, rng.random_range(1..=companies)),
                _ => (3, 1),
            };
            let start = now - spec.history_days as i64 * 86_400
                + rng.random_range(0..(spec.history_days as i64 + 14) * 86_400);
            let resp = rng.random_range(1..=users);
            let vals = activity_cells(
                a,
                ot,
                owner,
                rng.random_range(0..1000),
                start,
                resp,
                now,
                off,
            );
            insert_cols(t, a, &cols, vals);
        }
    }

    /// Append `n` contacts (IDs continue after the current maximum), deterministic from `seed`.
    pub fn add_bulk_contacts(&mut self, n: usize, seed: u64) {
        let off = self.offset_secs;
        let mut rng = StdRng::seed_from_u64(seed);
        let first_id = self.table("contact").map_or(1, Table::next_id);
        let mut mf = first_id * 2 + 10_000_000;
        let t = self.table_mut("contact");
        let names = BULK_CONTACT_COLUMNS;
        let cols: Vec<usize> = names.iter().map(|c| t.ensure_col(c)).collect();
        let t0 = ts("2023-01-01T09:00:00");
        let span = 500 * 86_400i64;
        let sellers = ["932", "10390", "12288", "12290"];
        for k in 0..n as u64 {
            let id = first_id + k;
            let i = rng.random_range(0..12usize);
            let female = rng.random_bool(0.7);
            let created = t0 + (k as i64 * span) / (n as i64).max(1) + rng.random_range(0..3600);
            let modified = created
                + if rng.random_bool(0.3) {
                    rng.random_range(0..60 * 86_400)
                } else {
                    rng.random_range(0..3_600)
                };
            let phone = MultiItem::new(mf as i64, "WORK", &phone_formats(id as usize), "PHONE")
                .expect("standard codes");
            let has_email = rng.random_bool(0.5);
            let email = has_email.then(|| {
                MultiItem::new(
                    mf as i64 + 1,
                    "WORK",
                    &format!("{}{id}@example.ru", TRANSLIT[i]),
                    "EMAIL",
                )
                .expect("standard codes")
            });
            mf += 2;
            let child_female = rng.random_bool(0.5);
            let vals = vec![
                num(id),
                Cell::text(if female {
                    FEMALE_FIRST[i]
                } else {
                    MALE_FIRST[i]
                }),
                Cell::text(""),
                Cell::text(if female { LAST[i].1 } else { LAST[i].0 }),
                Cell::text("CLIENT"),
                Cell::text(["CALL", "WEB", "55"][i % 3]),
                Cell::text("Y"),
                Cell::text("Y"),
                Cell::text("Y"),
                Cell::text(if has_email { "Y" } else { "N" }),
                Cell::text(sellers[i % 4]),
                Cell::text(sellers[i % 4]),
                num(1),
                Cell::Date { ts: created, off },
                Cell::Date { ts: modified, off },
                Cell::text(""),
                Cell::text(if child_female {
                    LAST[(i + 3) % 12].1
                } else {
                    LAST[(i + 3) % 12].0
                }),
                Cell::text(CHILD_FIRST[rng.random_range(0..12)]),
                date_cell(
                    days_from_civil(
                        2010 + rng.random_range(0..10),
                        rng.random_range(1..=12),
                        rng.random_range(1..=28),
                    ) * 86_400,
                    0,
                    off,
                ),
                Cell::IntList(Box::new([if rng.random_bool(0.2) { 410 } else { 404 }])),
                Cell::IntList(Box::new([if rng.random_bool(0.25) { 12708 } else { 48 }])),
                Cell::text(""),
                Cell::Multi(Box::new([phone])),
                email.map_or(Cell::Absent, |e| Cell::Multi(Box::new([e]))),
            ];
            insert_cols(t, id, &cols, vals);
        }
    }

    /// Append `n` deals over the existing contacts; with `product_rows`, one or two rows each.
    pub fn add_bulk_deals(&mut self, n: usize, seed: u64, product_rows: bool) {
        let off = self.offset_secs;
        let mut rng = StdRng::seed_from_u64(seed);
        let contacts = self.ids("contact");
        let first_id = self.table("deal").map_or(1, Table::next_id);
        let t = self.table_mut("deal");
        let names = BULK_DEAL_COLUMNS;
        let cols: Vec<usize> = names.iter().map(|c| t.ensure_col(c)).collect();
        let t0 = ts("2023-01-01T10:00:00");
        let span = 500 * 86_400i64;
        let mut links = Vec::with_capacity(n);
        let mut prows = Vec::new();
        for k in 0..n as u64 {
            let id = first_id + k;
            let won = rng.random_bool(0.7);
            let stage = if won {
                "WON"
            } else {
                ["NEW", "PREPARATION", "LOSE"][rng.random_range(0..3)]
            };
            let created = t0 + (k as i64 * span) / (n as i64).max(1) + rng.random_range(0..3600);
            let modified = created + rng.random_range(0..7 * 86_400);
            let contact = if contacts.is_empty() {
                None
            } else {
                Some(contacts[rng.random_range(0..contacts.len())])
            };
            let p1 = rng.random_range(0..PRODUCTS.len());
            let two = rng.random_bool(0.1);
            let price = |p: usize| PRODUCTS[p].2 - PRODUCTS[p].3;
            let opp = price(p1)
                + if two {
                    price((p1 + 1) % PRODUCTS.len())
                } else {
                    0.0
                };
            let vals = vec![
                num(id),
                Cell::text(&format!("Абонемент #{id}")),
                Cell::text("SALE"),
                num(0),
                Cell::text(stage),
                Cell::text(match stage {
                    "WON" => "S",
                    "LOSE" => "F",
                    _ => "P",
                }),
                Cell::text("RUB"),
                Cell::text(&format!("{opp:.2}")),
                contact.map_or(Cell::Null, num),
                Cell::text("Y"),
                Cell::text(if won || stage == "LOSE" { "Y" } else { "N" }),
                Cell::text(["932", "10390", "12288", "12290"][rng.random_range(0..4)]),
                num(1),
                num(1),
                Cell::Date { ts: created, off },
                Cell::Date { ts: modified, off },
                date_cell(created, off, off),
                date_cell(created + 86_400, off, off),
                Cell::IntList(Box::new([if rng.random_bool(0.3) { 12706 } else { 186 }])),
                date_cell(created, off, off),
                Cell::text(if rng.random_bool(0.4) { "450" } else { "452" }),
                Cell::text(""),
            ];
            insert_cols(t, id, &cols, vals);
            if let Some(c) = contact {
                links.push((id, c));
            }
            if product_rows {
                prows.push((id, p1, two));
            }
        }
        for (d, c) in links {
            self.link_deal_contact(d, c, true);
        }
        for (d, p1, two) in prows {
            self.add_product_row(d, product_row(p1, 10));
            if two {
                self.add_product_row(d, product_row(p1 + 1, 20));
            }
        }
    }
}

pub(super) fn insert_cols(
    t: &mut Table,
    id: u64,
    cols: &[usize],
    vals: impl IntoIterator<Item = Cell>,
) {
    let width = cols.iter().max().map_or(0, |m| m + 1);
    let mut raw: Vec<Cell> = vec![Cell::Absent; width];
    for (c, v) in cols.iter().zip(vals) {
        raw[*c] = v;
    }
    t.insert_raw(id, raw);
}

pub(super) fn num(i: u64) -> Cell {
    Cell::IntStr(i as i64)
}

/// A "date" field: midnight UTC of the local day of `ts` (as offset `tz` sees it), printed in `off`.
pub(super) fn date_cell(ts: i64, tz: i32, off: i32) -> Cell {
    Cell::Date {
        ts: (ts + tz as i64).div_euclid(86_400) * 86_400,
        off,
    }
}

pub(super) fn activity_columns() -> Vec<&'static str> {
    vec![
        "ID",
        "OWNER_ID",
        "OWNER_TYPE_ID",
        "TYPE_ID",
        "PROVIDER_ID",
        "PROVIDER_TYPE_ID",
        "SUBJECT",
        "COMPLETED",
        "STATUS",
        "RESPONSIBLE_ID",
        "PRIORITY",
        "DESCRIPTION",
        "DESCRIPTION_TYPE",
        "DIRECTION",
        "CREATED",
        "AUTHOR_ID",
        "LAST_UPDATED",
        "EDITOR_ID",
        "START_TIME",
        "END_TIME",
        "DEADLINE",
    ]
}

#[allow(clippy::too_many_arguments)]
pub(super) fn activity_cells(
    id: u64,
    owner_type: u64,
    owner: u64,
    variant: usize,
    start: i64,
    responsible: u64,
    now: i64,
    off: i32,
) -> Vec<Cell> {
    let type_id = 1 + (variant % 4) as u64;
    let (provider, ptype, subject) = match type_id {
        1 => ("CRM_MEETING", "MEETING", "Встреча"),
        2 => ("VOXIMPLANT_CALL", "CALL", "Звонок"),
        3 => ("CRM_TASKS_TASK", "TASK", "Задача"),
        _ => ("CRM_EMAIL", "EMAIL", "Письмо"),
    };
    let end = start + 1_800 * (1 + (variant % 3) as i64);
    let completed = start < now && !variant.is_multiple_of(5);
    let deadline = if type_id == 3 { end } else { start };
    let direction = match type_id {
        2 | 4 => 1 + (variant % 2) as u64,
        _ => 0,
    };
    // order of activity_columns()
    vec![
        num(id),
        num(owner),
        num(owner_type),
        num(type_id),
        Cell::text(provider),
        Cell::text(ptype),
        Cell::text(&format!("{subject} #{id}")),
        Cell::text(if completed { "Y" } else { "N" }),
        num(if completed { 2 } else { 1 }),
        num(responsible),
        num(2),
        Cell::text(""),
        num(1),
        num(direction),
        Cell::Date {
            ts: start - 86_400,
            off,
        },
        num(responsible),
        Cell::Date {
            ts: if completed { end } else { start - 86_400 },
            off,
        },
        num(responsible),
        Cell::Date { ts: start, off },
        Cell::Date { ts: end, off },
        Cell::Date { ts: deadline, off },
    ]
}

#[allow(clippy::too_many_arguments)]
pub(super) fn activity_row(
    id: u64,
    owner_type: u64,
    owner: u64,
    variant: usize,
    start: i64,
    responsible: u64,
    now: i64,
    off: i32,
) -> Row {
    activity_columns()
        .into_iter()
        .zip(activity_cells(
            id,
            owner_type,
            owner,
            variant,
            start,
            responsible,
            now,
            off,
        ))
        .filter_map(|(k, c)| c.to_value().map(|v| (k.to_string(), v)))
        .collect()
}

/// Columns of a bulk contact, in the order `add_bulk_contacts` fills them.
const BULK_CONTACT_COLUMNS: [&str; 24] = [
    "ID",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "TYPE_ID",
    "SOURCE_ID",
    "OPENED",
    "EXPORT",
    "HAS_PHONE",
    "HAS_EMAIL",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "COMMENTS",
    UF_STUDENT_LAST_NAME,
    UF_STUDENT_FIRST_NAME,
    UF_STUDENT_BIRTHDATE,
    UF_PRODUCT,
    UF_BRANCH,
    UF_SYNC_STATUS,
    "PHONE",
    "EMAIL",
];

/// Columns of a bulk deal, in the order `add_bulk_deals` fills them.
const BULK_DEAL_COLUMNS: [&str; 22] = [
    "ID",
    "TITLE",
    "TYPE_ID",
    "CATEGORY_ID",
    "STAGE_ID",
    "STAGE_SEMANTIC_ID",
    "CURRENCY_ID",
    "OPPORTUNITY",
    "CONTACT_ID",
    "OPENED",
    "CLOSED",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "BEGINDATE",
    "CLOSEDATE",
    UF_BRANCH,
    UF_SALE_DATE,
    UF_PAYMENT_METHOD,
    UF_SYNC_STATUS,
];
