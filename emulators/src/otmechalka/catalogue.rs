//! What the emulated otmechalka account knows: courses (направления), branch offices (филиалы) and
//! ticket types (типы абонементов). Courses and branch offices are referred to by exact name or by
//! numeric ID (a string "10985" or a number 10985); ticket types by exact name only, as the seed says
//! ("по ID не получится"). Names are matched exactly: " 6 КМС индивидуальные 45 мин" with the
//! leading space that B24 product names carry is *not* a known ticket type.

use serde::Serialize;
use serde_json::Value;

/// A course or a branch office.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Named {
    pub id: u64,
    pub name: String,
}

/// A ticket type: how many visits, for how long, which courses its groups belong to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TicketType {
    pub id: u64,
    pub name: String,
    pub visits: u32,
    pub valid_days: u32,
    /// Course IDs; a ticket joins the groups of these courses in its selling branch office.
    pub courses: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Catalogue {
    pub courses: Vec<Named>,
    pub branchoffices: Vec<Named>,
    pub ticket_types: Vec<TicketType>,
}

pub const COURSE_ONLINE_GROUP: u64 = 10985;
pub const COURSE_ONLINE_INDIVIDUAL: u64 = 10986;
pub const COURSE_GROUP: u64 = 10987;
pub const COURSE_INDIVIDUAL: u64 = 10988;
pub const BRANCH_ONLINE: u64 = 2633;
pub const BRANCH_CDSH: u64 = 2634;
pub const BRANCH_SKOLKOVO: u64 = 2635;

fn named(id: u64, name: &str) -> Named {
    Named {
        id,
        name: name.to_string(),
    }
}

fn ticket(id: u64, name: &str, visits: u32, valid_days: u32, courses: &[u64]) -> TicketType {
    TicketType {
        id,
        name: name.to_string(),
        visits,
        valid_days,
        courses: courses.to_vec(),
    }
}

impl Default for Catalogue {
    /// The account described in seed 001: 10985/10986 and 2633 are the IDs the seed shows, the
    /// other IDs are ours.
    fn default() -> Self {
        Self {
            courses: vec![
                named(COURSE_ONLINE_GROUP, "Он-лайн Групповое"),
                named(COURSE_ONLINE_INDIVIDUAL, "Он-лайн индивидуальные"),
                named(COURSE_GROUP, "Групповые занятия"),
                named(COURSE_INDIVIDUAL, "Индивидуальные занятия"),
            ],
            branchoffices: vec![
                named(BRANCH_ONLINE, "+Он-лайн `МСК"),
                named(BRANCH_CDSH, "+ ЦДШ `МСК"),
                named(BRANCH_SKOLKOVO, "+ СКОЛКОВО `МСК *"),
            ],
            ticket_types: vec![
                ticket(
                    501,
                    "6 КМС индивидуальные 45 мин",
                    6,
                    60,
                    &[COURSE_INDIVIDUAL],
                ),
                ticket(502, "4 индивидуальных занятия", 4, 30, &[COURSE_INDIVIDUAL]),
                ticket(503, "8 индивидуальных занятий", 8, 60, &[COURSE_INDIVIDUAL]),
                ticket(504, "4 групповых занятия", 4, 30, &[COURSE_GROUP]),
                ticket(505, "8 групповых занятий", 8, 30, &[COURSE_GROUP]),
                ticket(
                    506,
                    "8 он-лайн групповых занятий",
                    8,
                    30,
                    &[COURSE_ONLINE_GROUP],
                ),
                ticket(
                    507,
                    "4 он-лайн индивидуальных занятия",
                    4,
                    30,
                    &[COURSE_ONLINE_INDIVIDUAL],
                ),
                ticket(
                    508,
                    "Разовое занятие",
                    1,
                    7,
                    &[COURSE_GROUP, COURSE_INDIVIDUAL],
                ),
                // The products the Bitrix24 emulator's demo portal sells, so that the sandbox
                // runs the whole way through.
                ticket(509, "12 групповых занятий", 12, 45, &[COURSE_GROUP]),
                ticket(
                    510,
                    "Онлайн групповое 4 занятия",
                    4,
                    30,
                    &[COURSE_ONLINE_GROUP],
                ),
                ticket(
                    511,
                    "Онлайн индивидуальное 45 мин",
                    1,
                    30,
                    &[COURSE_ONLINE_INDIVIDUAL],
                ),
            ],
        }
    }
}

/// Finds an entry by exact name or by ID given as a decimal string or a JSON integer.
fn lookup<'a>(items: &'a [Named], v: &Value) -> Option<&'a Named> {
    match v {
        Value::String(s) => items.iter().find(|n| n.name == *s).or_else(|| {
            s.parse::<u64>()
                .ok()
                .and_then(|id| items.iter().find(|n| n.id == id))
        }),
        Value::Number(n) => n.as_u64().and_then(|id| items.iter().find(|x| x.id == id)),
        _ => None,
    }
}

fn known(items: &[Named]) -> String {
    items
        .iter()
        .map(|n| format!("{} \"{}\"", n.id, n.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Catalogue {
    pub fn course(&self, v: &Value) -> Option<&Named> {
        lookup(&self.courses, v)
    }
    pub fn branchoffice(&self, v: &Value) -> Option<&Named> {
        lookup(&self.branchoffices, v)
    }
    pub fn ticket_type(&self, name: &str) -> Option<&TicketType> {
        self.ticket_types.iter().find(|t| t.name == name)
    }
    pub fn course_by_id(&self, id: u64) -> Option<&Named> {
        self.courses.iter().find(|n| n.id == id)
    }
    pub fn branchoffice_by_id(&self, id: u64) -> Option<&Named> {
        self.branchoffices.iter().find(|n| n.id == id)
    }
    /// `10985 "Он-лайн Групповое", ...` for error messages.
    pub fn known_courses(&self) -> String {
        known(&self.courses)
    }
    pub fn known_branchoffices(&self) -> String {
        known(&self.branchoffices)
    }
    pub fn known_ticket_types(&self) -> String {
        self.ticket_types
            .iter()
            .map(|t| format!("\"{}\"", t.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// The group a client or ticket joins for a course in a branch office.
    pub fn group_name(&self, course: u64, branchoffice: u64) -> String {
        let c = self.course_by_id(course).map_or("?", |n| n.name.as_str());
        let b = self
            .branchoffice_by_id(branchoffice)
            .map_or("?", |n| n.name.as_str());
        format!("{c} / {b}")
    }
}
