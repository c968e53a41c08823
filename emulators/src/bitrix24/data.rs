//! The emulated portal's data: one [`Table`] per entity (legacy UPPER_SNAKE field names, IDs as
//! strings), plus product rows and contact/company/deal links.
//!
//! Rows are stored as compact [`Cell`] slices laid out against the table's column list, in a
//! `BTreeMap` keyed by numeric ID: a fraction of the memory of one `serde_json::Map` per row,
//! a field lookup is an index, and `>ID` keyset pages are a range scan.

use super::cell::Cell;
use super::schema::{self, FieldDef, FieldKind, MULTI_FIELDS};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeBounds;

/// One row as the API shows it.
pub type Row = Map<String, Value>;

/// Entities the emulator serves.
pub const ENTITIES: [&str; 7] = [
    "contact",
    "deal",
    "company",
    "lead",
    "activity",
    "user",
    "department",
];

/// Rows of one entity.
#[derive(Clone, Debug)]
pub struct Table {
    pub entity: String,
    schema: Vec<FieldDef>,
    columns: Vec<String>,
    kinds: Vec<FieldKind>,
    col_index: HashMap<String, usize>,
    rows: BTreeMap<u64, Box<[Cell]>>,
    next_id: u64,
    /// Matches of recent counted queries (see `filter::page`); emptied by every change.
    pub(crate) matches: MatchCache,
}

/// The full, ordered list of matching IDs of the last few list queries. A batch of offset
/// probes asks the same query at many offsets: each would count every match again. A speed
/// fix only: a cached list is exactly what a fresh scan would give, since any change of the
/// table (every `&mut self` method) empties it.
#[derive(Default, Debug)]
pub(crate) struct MatchCache(std::sync::Mutex<Vec<(String, std::sync::Arc<Vec<u64>>)>>);

impl Clone for MatchCache {
    fn clone(&self) -> MatchCache {
        MatchCache::default()
    }
}

impl MatchCache {
    const ENTRIES: usize = 4;

    /// The IDs for `key`, computed by `scan` when not cached.
    pub(crate) fn get_or(
        &self,
        key: String,
        scan: impl FnOnce() -> Vec<u64>,
    ) -> std::sync::Arc<Vec<u64>> {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, ids)) = entries.iter().find(|(k, _)| *k == key) {
            return ids.clone();
        }
        let ids = std::sync::Arc::new(scan());
        if entries.len() == Self::ENTRIES {
            entries.remove(0);
        }
        entries.push((key, ids.clone()));
        ids
    }

    fn clear(&mut self) {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// ID as stored in rows and parameters ("42" or 42) -> number.
pub fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl Table {
    pub fn new(entity: &str, schema: Vec<FieldDef>) -> Table {
        let mut t = Table {
            entity: entity.to_string(),
            schema: Vec::new(),
            columns: Vec::new(),
            kinds: Vec::new(),
            col_index: HashMap::new(),
            rows: BTreeMap::new(),
            next_id: 1,
            matches: MatchCache::default(),
        };
        for def in schema {
            t.add_field(def);
        }
        t
    }

    /// Declare a field (e.g. a custom `UF_CRM_*`); existing rows simply lack a value.
    pub fn add_field(&mut self, def: FieldDef) {
        self.matches.clear();
        let kind = def.kind();
        let idx = self.ensure_col(&def.name);
        self.kinds[idx] = kind;
        if let Some(pos) = self.schema.iter().position(|d| d.name == def.name) {
            self.schema[pos] = def;
        } else {
            self.schema.push(def);
        }
    }

    pub fn schema(&self) -> &[FieldDef] {
        &self.schema
    }
    pub fn field_def(&self, name: &str) -> Option<&FieldDef> {
        self.schema.iter().find(|d| d.name == name)
    }
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
    pub fn col(&self, name: &str) -> Option<usize> {
        self.col_index.get(name).copied()
    }
    pub fn kind(&self, col: usize) -> FieldKind {
        self.kinds[col]
    }
    /// Kind of a field by name, known or not.
    pub fn kind_of(&self, name: &str) -> FieldKind {
        self.col(name)
            .map_or_else(|| schema::guess_kind(name), |c| self.kinds[c])
    }
    pub fn is_multi_col(&self, col: usize) -> bool {
        self.kinds[col] == FieldKind::Multi
    }

    pub fn ensure_col(&mut self, name: &str) -> usize {
        if let Some(&i) = self.col_index.get(name) {
            return i;
        }
        self.matches.clear();
        let i = self.columns.len();
        self.columns.push(name.to_string());
        self.kinds.push(schema::guess_kind(name));
        self.col_index.insert(name.to_string(), i);
        i
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn contains(&self, id: u64) -> bool {
        self.rows.contains_key(&id)
    }
    pub fn ids(&self) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.rows.keys().copied()
    }
    /// The ID the next `add` will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub(crate) fn raw(&self, id: u64) -> Option<&[Cell]> {
        self.rows.get(&id).map(|b| &**b)
    }
    pub(crate) fn raw_range<R: RangeBounds<u64>>(
        &self,
        r: R,
    ) -> std::collections::btree_map::Range<'_, u64, Box<[Cell]>> {
        self.rows.range(r)
    }
    /// Insert or replace a row. `ID` (string or number) picks the key, else the next free ID is
    /// used; the stored `ID` is always a string. Returns the ID.
    pub fn insert(&mut self, mut row: Row) -> u64 {
        self.matches.clear();
        let id = row.get("ID").and_then(id_of).unwrap_or(self.next_id);
        row.insert("ID".into(), Value::String(id.to_string()));
        let mut vals: Vec<Cell> = Vec::with_capacity(self.columns.len().max(row.len()));
        for (k, v) in row {
            let c = self.ensure_col(&k);
            if vals.len() <= c {
                vals.resize(c + 1, Cell::Absent);
            }
            vals[c] = Cell::from_value(v);
        }
        self.rows.insert(id, vals.into_boxed_slice());
        self.next_id = self.next_id.max(id + 1);
        id
    }

    /// Fast path for generators: store a row already laid out against `columns()`
    /// (see [`Table::ensure_col`]); `vals[ID column]` must hold the string ID.
    pub(crate) fn insert_raw(&mut self, id: u64, vals: Vec<Cell>) {
        self.matches.clear();
        self.rows.insert(id, vals.into_boxed_slice());
        self.next_id = self.next_id.max(id + 1);
    }

    /// All present fields of a row, in column order.
    pub fn get(&self, id: u64) -> Option<Row> {
        let vals = self.rows.get(&id)?;
        Some(
            vals.iter()
                .enumerate()
                .filter_map(|(c, v)| v.to_value().map(|v| (self.columns[c].clone(), v)))
                .collect(),
        )
    }

    /// One field of a row (None if the row or the value is absent).
    pub fn value(&self, id: u64, field: &str) -> Option<Value> {
        let c = self.col(field)?;
        self.rows.get(&id)?.get(c)?.to_value()
    }

    /// Set (or with `None`, unset) one field. False if the row does not exist.
    pub fn set(&mut self, id: u64, field: &str, value: Option<Value>) -> bool {
        self.matches.clear();
        if !self.rows.contains_key(&id) {
            return false;
        }
        let c = self.ensure_col(field);
        let vals = self.rows.get_mut(&id).expect("checked");
        if vals.len() <= c {
            let mut v = std::mem::take(vals).into_vec();
            v.resize(c + 1, Cell::Absent);
            *vals = v.into_boxed_slice();
        }
        vals[c] = Cell::from_opt(value);
        true
    }

    pub fn remove(&mut self, id: u64) -> bool {
        self.matches.clear();
        self.rows.remove(&id).is_some()
    }
}

/// The whole emulated portal.
#[derive(Clone, Debug)]
pub struct Portal {
    /// Portal time zone offset in seconds (+03:00).
    pub offset_secs: i32,
    tables: BTreeMap<String, Table>,
    product_rows: HashMap<u64, Vec<Row>>,
    deal_contacts: HashMap<u64, Vec<Row>>,
    contact_companies: HashMap<u64, Vec<Row>>,
    next_multifield_id: u64,
    next_productrow_id: u64,
    mutations: BTreeMap<String, u64>,
    pub(crate) bizproc: super::bizproc::Bizproc,
    /// `http://127.0.0.1:PORT` once served (public links, download URLs).
    pub(crate) base_url: String,
    /// Drive file contents by file ID (`disk.file.get`'s DOWNLOAD_URL serves them).
    pub(crate) files: HashMap<u64, Vec<u8>>,
}

impl Default for Portal {
    fn default() -> Self {
        Portal::new()
    }
}

impl Portal {
    /// An empty portal with the standard field sets of every entity.
    pub fn new() -> Portal {
        Portal {
            offset_secs: super::dates::DEFAULT_OFFSET_SECS,
            tables: ENTITIES
                .iter()
                .map(|e| (e.to_string(), Table::new(e, schema::for_entity(e))))
                .collect(),
            product_rows: HashMap::new(),
            deal_contacts: HashMap::new(),
            contact_companies: HashMap::new(),
            next_multifield_id: 1000,
            next_productrow_id: 1000,
            mutations: BTreeMap::new(),
            bizproc: Default::default(),
            base_url: "http://127.0.0.1".into(),
            files: HashMap::new(),
        }
    }

    /// Registered actions, waiting actions and the applications' answers.
    pub fn bizproc(&self) -> &super::bizproc::Bizproc {
        &self.bizproc
    }

    pub fn table(&self, entity: &str) -> Option<&Table> {
        self.tables.get(entity)
    }
    /// Table of an entity, created (with only an ID field) if unknown.
    pub fn table_mut(&mut self, entity: &str) -> &mut Table {
        self.tables
            .entry(entity.to_string())
            .or_insert_with(|| Table::new(entity, schema::for_entity(entity)))
    }

    /// Insert a row (see [`Table::insert`]); multi-field elements get IDs and `TYPE_ID`.
    pub fn insert(&mut self, entity: &str, mut row: Row) -> u64 {
        for mf in MULTI_FIELDS {
            if let Some(Value::Array(items)) = row.get_mut(mf) {
                for it in items.iter_mut() {
                    if let Value::Object(o) = it {
                        let id = match o.get("ID").and_then(id_of) {
                            Some(n) => {
                                self.next_multifield_id = self.next_multifield_id.max(n + 1);
                                n
                            }
                            None => {
                                self.next_multifield_id += 1;
                                self.next_multifield_id - 1
                            }
                        };
                        // B24 order: ID, VALUE_TYPE, VALUE, TYPE_ID (then anything else)
                        let mut n = Map::new();
                        n.insert("ID".into(), Value::String(id.to_string()));
                        n.insert(
                            "VALUE_TYPE".into(),
                            o.remove("VALUE_TYPE").unwrap_or_else(|| json!("WORK")),
                        );
                        n.insert(
                            "VALUE".into(),
                            o.remove("VALUE").unwrap_or_else(|| json!("")),
                        );
                        n.insert(
                            "TYPE_ID".into(),
                            o.remove("TYPE_ID").unwrap_or_else(|| json!(mf)),
                        );
                        o.remove("ID");
                        n.append(o);
                        *o = n;
                    }
                }
            }
        }
        self.table_mut(entity).insert(row)
    }

    pub fn get(&self, entity: &str, id: u64) -> Option<Row> {
        self.tables.get(entity)?.get(id)
    }

    pub fn set_field(&mut self, entity: &str, id: u64, field: &str, value: Value) -> bool {
        self.table_mut(entity).set(id, field, Some(value))
    }

    pub fn len(&self, entity: &str) -> usize {
        self.tables.get(entity).map_or(0, Table::len)
    }

    pub fn ids(&self, entity: &str) -> Vec<u64> {
        self.tables
            .get(entity)
            .map_or_else(Vec::new, |t| t.ids().collect())
    }

    /// Declare a custom field on an entity.
    pub fn add_field(&mut self, entity: &str, def: FieldDef) {
        self.table_mut(entity).add_field(def);
    }

    pub(crate) fn alloc_multifield_id(&mut self) -> u64 {
        self.next_multifield_id += 1;
        self.next_multifield_id - 1
    }

    /// Append a product row to a deal; fills ID/OWNER_ID/OWNER_TYPE. Returns the row ID.
    pub fn add_product_row(&mut self, deal_id: u64, mut row: Row) -> u64 {
        let id = row
            .get("ID")
            .and_then(id_of)
            .unwrap_or(self.next_productrow_id);
        self.next_productrow_id = self.next_productrow_id.max(id + 1);
        let mut full = Row::new();
        full.insert("ID".into(), json!(id.to_string()));
        full.insert("OWNER_ID".into(), json!(deal_id.to_string()));
        full.insert("OWNER_TYPE".into(), json!("D"));
        for (k, v) in row.iter_mut() {
            if !matches!(k.as_str(), "ID" | "OWNER_ID" | "OWNER_TYPE") {
                full.insert(k.clone(), v.take());
            }
        }
        self.product_rows.entry(deal_id).or_default().push(full);
        id
    }

    pub fn product_rows(&self, deal_id: u64) -> &[Row] {
        self.product_rows.get(&deal_id).map_or(&[], Vec::as_slice)
    }

    /// Replace all product rows of a deal (crm.deal.productrows.set).
    pub fn set_product_rows(&mut self, deal_id: u64, rows: Vec<Row>) {
        self.product_rows.remove(&deal_id);
        for r in rows {
            self.add_product_row(deal_id, r);
        }
    }

    fn link(map: &mut HashMap<u64, Vec<Row>>, key: &str, from: u64, to: u64, primary: bool) {
        let list = map.entry(from).or_default();
        if list.iter().any(|r| r.get(key).and_then(id_of) == Some(to)) {
            return;
        }
        if primary {
            for r in list.iter_mut() {
                r.insert("IS_PRIMARY".into(), json!("N"));
            }
        }
        let sort = 10 * (list.len() as u64 + 1);
        let mut r = Row::new();
        r.insert(key.into(), json!(to));
        r.insert("SORT".into(), json!(sort));
        r.insert("ROLE_ID".into(), json!(0));
        r.insert(
            "IS_PRIMARY".into(),
            json!(if primary || list.is_empty() { "Y" } else { "N" }),
        );
        list.push(r);
    }

    /// Bind a contact to a deal (crm.deal.contact.items.get shape, int IDs).
    pub fn link_deal_contact(&mut self, deal_id: u64, contact_id: u64, primary: bool) {
        Self::link(
            &mut self.deal_contacts,
            "CONTACT_ID",
            deal_id,
            contact_id,
            primary,
        );
    }
    /// Bind a company to a contact (crm.contact.company.items.get shape, int IDs).
    pub fn link_contact_company(&mut self, contact_id: u64, company_id: u64, primary: bool) {
        Self::link(
            &mut self.contact_companies,
            "COMPANY_ID",
            contact_id,
            company_id,
            primary,
        );
    }
    /// Replace a deal's contacts (`CONTACT_IDS`: «the field is completely replaced»); the
    /// first is primary.
    pub fn set_deal_contacts(&mut self, deal_id: u64, contact_ids: &[u64]) {
        self.deal_contacts.remove(&deal_id);
        for (i, c) in contact_ids.iter().enumerate() {
            self.link_deal_contact(deal_id, *c, i == 0);
        }
    }
    /// Replace a contact's companies (`COMPANY_IDS`); the first is primary.
    pub fn set_contact_companies(&mut self, contact_id: u64, company_ids: &[u64]) {
        self.contact_companies.remove(&contact_id);
        for (i, c) in company_ids.iter().enumerate() {
            self.link_contact_company(contact_id, *c, i == 0);
        }
    }
    /// Replace a company's contacts (`crm.company.contact.items.set`): the company leaves every
    /// contact not named, and joins the named ones.
    pub fn set_company_contacts(&mut self, company_id: u64, contact_ids: &[u64]) {
        for links in self.contact_companies.values_mut() {
            links.retain(|r| r.get("COMPANY_ID").and_then(id_of) != Some(company_id));
        }
        for c in contact_ids {
            self.link_contact_company(*c, company_id, false);
        }
    }
    pub fn deal_contacts(&self, deal_id: u64) -> &[Row] {
        self.deal_contacts.get(&deal_id).map_or(&[], Vec::as_slice)
    }
    pub fn contact_companies(&self, contact_id: u64) -> &[Row] {
        self.contact_companies
            .get(&contact_id)
            .map_or(&[], Vec::as_slice)
    }
    /// Contacts bound to a company (reverse of [`Self::contact_companies`]), ID order.
    pub fn company_contacts(&self, company_id: u64) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .contact_companies
            .iter()
            .filter(|(_, links)| {
                links
                    .iter()
                    .any(|r| r.get("COMPANY_ID").and_then(id_of) == Some(company_id))
            })
            .map(|(c, _)| *c)
            .collect();
        v.sort_unstable();
        v
    }

    /// Successful writes through the API, by method (`crm.contact.update`, ...).
    pub fn mutations(&self, method: &str) -> u64 {
        self.mutations.get(method).copied().unwrap_or(0)
    }
    pub fn total_mutations(&self) -> u64 {
        self.mutations.values().sum()
    }
    pub(crate) fn count_mutation(&mut self, method: &str) {
        *self.mutations.entry(method.to_string()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_basics() {
        let mut p = Portal::new();
        let id = p.insert(
            "contact",
            json!({"NAME": "A", "PHONE": [{"VALUE": "1"}], "X_NEW": 1})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(id, 1);
        let id2 = p.insert(
            "contact",
            json!({"ID": 10, "NAME": "B"}).as_object().unwrap().clone(),
        );
        assert_eq!(id2, 10);
        assert_eq!(p.table("contact").unwrap().next_id(), 11);
        let r = p.get("contact", 1).unwrap();
        assert_eq!(r["ID"], "1");
        assert_eq!(r["PHONE"][0]["TYPE_ID"], "PHONE");
        assert_eq!(r["PHONE"][0]["VALUE_TYPE"], "WORK");
        assert!(r["PHONE"][0]["ID"].is_string());
        assert!(p.set_field("contact", 10, "NAME", json!("C")));
        assert_eq!(p.get("contact", 10).unwrap()["NAME"], "C");
        assert!(!p.set_field("contact", 99, "NAME", json!("C")));
        p.link_deal_contact(5, 1, true);
        p.link_deal_contact(5, 10, false);
        assert_eq!(p.deal_contacts(5)[0]["IS_PRIMARY"], "Y");
        assert_eq!(p.deal_contacts(5)[1]["CONTACT_ID"], 10);
        p.link_contact_company(1, 7, true);
        assert_eq!(p.company_contacts(7), vec![1]);
    }
}
