//! The `xlsx` sink: declared columns with Russian titles, real Excel dates and numbers, links,
//! a bold frozen header with an autofilter, widths fitted to the content, optionally a sheet per
//! value of a column. Rows are streamed into the workbook as they come (constant-memory mode:
//! each sheet goes to a temporary file, so memory stays flat for any size); the file itself is
//! written when the run finishes, and the e-mail sink can then attach it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::NaiveDateTime;
use minijinja::value::Value;
use rust_xlsxwriter::{Format, Formula, Url, Workbook, Worksheet, XlsxError};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::config::{BuildCtx, component::SinkConfig};
use crate::expr::Template;
use crate::runtime::{Fatal, Item, RunCtx, SharedFile, Sink, Write};
use crate::table::columns::{parse_datetime, parse_float};

/// Write records as rows of an Excel workbook, one workbook per run.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XlsxSinkConfig {
    /// Where the workbook goes: a template over `settings` and `run` (the directory is created).
    #[schemars(example = "${env:REPORT_OUTPUT_DIR}/Компании без активности {{ run.today }}.xlsx")]
    pub path: Template,
    /// Name of the sheet (default `Отчёт`); with `sheet_by`, the sheet of rows without a value.
    #[serde(default)]
    pub sheet: Option<String>,
    /// A record field whose value names the row's sheet: a sheet per department, say.
    #[serde(default)]
    #[schemars(example = &"DEPARTMENT")]
    pub sheet_by: Option<String>,
    /// The columns, in order.
    pub columns: Vec<XlsxColumn>,
    /// Stream rows to temporary files as they come, so memory stays flat for any number of rows
    /// (default). `false` keeps the workbook in memory until it is saved (smaller files).
    #[serde(default = "yes")]
    pub constant_memory: bool,
}

fn yes() -> bool {
    true
}

/// How a column's values are stored.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Text (lists are joined with ", ").
    #[default]
    Text,
    /// A number (`"19999.99"` is stored as 19999.99).
    Number,
    /// A whole number, shown without decimals.
    Integer,
    /// An Excel date (`dd.mm.yyyy` unless `format` says otherwise).
    Date,
    /// An Excel date and time (`dd.mm.yyyy hh:mm` unless `format` says otherwise).
    Datetime,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XlsxColumn {
    /// The header, as users read it.
    #[schemars(example = &"Компания")]
    pub title: String,
    /// The record field shown in the column.
    #[serde(default)]
    pub field: Option<String>,
    /// A template giving the value instead of a field: `{{ record.LAST_NAME }} {{ record.NAME }}`.
    #[serde(default)]
    pub value: Option<Template>,
    /// `text` (default), `number`, `integer`, `date` or `datetime`.
    #[serde(default, rename = "type")]
    pub kind: CellKind,
    /// Excel number format, e.g. `dd.mm.yyyy` or `#,##0.00`.
    #[serde(default)]
    pub format: Option<String>,
    /// A template giving the URL a text cell links to; the cell is a link only when it has a value
    /// and the URL renders to an absolute http(s) URL (an empty portal URL simply gives no links).
    #[serde(default)]
    #[schemars(example = "{{ settings.portal_url }}/crm/company/details/{{ record.COMPANY_ID }}/")]
    pub link: Option<Template>,
    /// Width in characters (default: fitted to the content, at most 60).
    #[serde(default)]
    pub width: Option<f64>,
}

struct Column {
    title: String,
    field: Option<String>,
    value: Option<Template>,
    kind: CellKind,
    format: Format,
    link: Option<Template>,
    width: Option<f64>,
}

impl SinkConfig for XlsxSinkConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        if self.columns.is_empty() {
            return Err("an xlsx sink needs at least one column".into());
        }
        let mut columns = Vec::new();
        for c in self.columns {
            if c.field.is_some() == c.value.is_some() {
                return Err(format!(
                    "column \"{}\" needs exactly one of `field` or `value`",
                    c.title
                ));
            }
            let default_format = match c.kind {
                CellKind::Date => "dd.mm.yyyy",
                CellKind::Datetime => "dd.mm.yyyy hh:mm",
                CellKind::Integer => "0",
                _ => "",
            };
            let num_format = c
                .format
                .clone()
                .unwrap_or_else(|| default_format.to_string());
            let format = if num_format.is_empty() {
                Format::new()
            } else {
                Format::new().set_num_format(num_format)
            };
            columns.push(Column {
                title: c.title,
                field: c.field,
                value: c.value,
                kind: c.kind,
                format,
                link: c.link,
                width: c.width,
            });
        }
        let label = ctx.id.clone().unwrap_or_else(|| "xlsx".to_string());
        Ok(Arc::new(XlsxSink {
            label,
            path: self.path,
            sheet: self.sheet.unwrap_or_else(|| "Отчёт".to_string()),
            sheet_by: self.sheet_by,
            constant_memory: self.constant_memory,
            columns,
            book: Mutex::new(None),
        }))
    }
}

struct XlsxSink {
    label: String,
    path: Template,
    sheet: String,
    sheet_by: Option<String>,
    constant_memory: bool,
    columns: Vec<Column>,
    book: Mutex<Option<Book>>,
}

struct Book {
    workbook: Workbook,
    /// Sheet name (as asked for) -> sheet state, in creation order.
    sheets: Vec<Sheet>,
    by_name: HashMap<String, usize>,
    header: Format,
    link: Format,
    rows: u64,
    dropped_links: u64,
}

struct Sheet {
    index: usize,
    next_row: u32,
    widths: Vec<usize>,
    links: u32,
}

/// Excel keeps at most this many hyperlinks per sheet; later links become HYPERLINK formulas.
const MAX_LINKS: u32 = 65_530;
const MAX_ROWS: u32 = 1_048_576;
const MAX_TEXT: usize = 32_767;

/// A valid, unique Excel sheet name for `wanted`: at most 31 characters, none of `[]:*?/\`.
pub fn sheet_name(wanted: &str, taken: &[String]) -> String {
    let cleaned: String = wanted
        .chars()
        .map(|c| {
            if "[]:*?/\\".contains(c) || c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_matches('\'').trim();
    let base: String = if cleaned.is_empty() {
        "Лист".to_string()
    } else {
        cleaned.chars().take(31).collect()
    };
    let lower: Vec<String> = taken.iter().map(|t| t.to_lowercase()).collect();
    let mut name = base.clone();
    let mut n = 2;
    while lower.contains(&name.to_lowercase()) || name.eq_ignore_ascii_case("history") {
        let suffix = format!(" ({n})");
        let keep = 31 - suffix.chars().count();
        name = format!("{}{suffix}", base.chars().take(keep).collect::<String>());
        n += 1;
    }
    name
}

fn xlsx_fatal(path: &str, e: impl std::fmt::Display) -> Fatal {
    Fatal::unavailable("xlsx", format!("{path}: {e}"))
}

impl Book {
    fn new(constant_memory: bool) -> Book {
        let _ = constant_memory;
        Book {
            workbook: Workbook::new(),
            sheets: Vec::new(),
            by_name: HashMap::new(),
            header: Format::new().set_bold(),
            link: Format::new().set_hyperlink(),
            rows: 0,
            dropped_links: 0,
        }
    }

    fn sheet(
        &mut self,
        wanted: &str,
        columns: &[Column],
        constant_memory: bool,
    ) -> Result<usize, XlsxError> {
        if let Some(i) = self.by_name.get(wanted) {
            return Ok(*i);
        }
        let taken: Vec<String> = self
            .workbook
            .worksheets()
            .iter()
            .map(|w| w.name())
            .collect();
        let name = sheet_name(wanted, &taken);
        let ws: &mut Worksheet = if constant_memory {
            self.workbook.add_worksheet_with_constant_memory()?
        } else {
            self.workbook.add_worksheet()
        };
        ws.set_name(&name)?;
        let mut widths = Vec::with_capacity(columns.len());
        for (c, column) in columns.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, &column.title, &self.header)?;
            // Bold text plus the filter button.
            widths.push(column.title.chars().count() + 3);
        }
        let index = self.workbook.worksheets().len() - 1;
        self.sheets.push(Sheet {
            index,
            next_row: 1,
            widths,
            links: 0,
        });
        let i = self.sheets.len() - 1;
        self.by_name.insert(wanted.to_string(), i);
        Ok(i)
    }

    fn write_row(
        &mut self,
        sheet: usize,
        cells: &[Json],
        links: &[Json],
        columns: &[Column],
    ) -> Result<bool, XlsxError> {
        let state = &mut self.sheets[sheet];
        if state.next_row >= MAX_ROWS {
            return Ok(false);
        }
        let row = state.next_row;
        state.next_row += 1;
        let ws = self.workbook.worksheet_from_index(state.index)?;
        for (c, column) in columns.iter().enumerate() {
            let col = c as u16;
            let value = cells.get(c).unwrap_or(&Json::Null);
            let link = links
                .get(c)
                .and_then(Json::as_str)
                .filter(|l| l.starts_with("http://") || l.starts_with("https://"));
            let shown = match column.kind {
                CellKind::Number | CellKind::Integer => match parse_float(value) {
                    Some(n) => {
                        ws.write_number_with_format(row, col, n, &column.format)?;
                        Some(format_len(n, column.kind))
                    }
                    None => write_text(ws, row, col, value)?,
                },
                CellKind::Date | CellKind::Datetime => {
                    match value.as_str().and_then(parse_datetime) {
                        Some(dt) => {
                            write_datetime(ws, row, col, dt, column)?;
                            Some(if column.kind == CellKind::Date {
                                10
                            } else {
                                16
                            })
                        }
                        None => write_text(ws, row, col, value)?,
                    }
                }
                CellKind::Text => match link.filter(|_| !text_of(value).is_empty()) {
                    Some(url) => {
                        let text = text_of(value);
                        if state.links < MAX_LINKS {
                            ws.write_url_with_format(
                                row,
                                col,
                                Url::new(url).set_text(&text),
                                &self.link,
                            )?;
                        } else {
                            let formula = format!(
                                "=HYPERLINK(\"{}\",\"{}\")",
                                url.replace('"', "\"\""),
                                text.replace('"', "\"\"")
                            );
                            ws.write_formula_with_format(
                                row,
                                col,
                                Formula::new(formula).set_result(&text),
                                &self.link,
                            )?;
                            self.dropped_links += 1;
                        }
                        state.links += 1;
                        Some(text.chars().count())
                    }
                    None => write_text(ws, row, col, value)?,
                },
            };
            if let Some(len) = shown {
                state.widths[c] = state.widths[c].max(len);
            }
        }
        self.rows += 1;
        Ok(true)
    }

    /// Header frozen, autofilter over the data, widths; then save next to the target and rename.
    fn save(&mut self, path: &std::path::Path, columns: &[Column]) -> Result<(), XlsxError> {
        let last_col = (columns.len() - 1) as u16;
        for sheet in &self.sheets {
            let ws = self.workbook.worksheet_from_index(sheet.index)?;
            ws.set_freeze_panes(1, 0)?;
            ws.autofilter(0, 0, sheet.next_row.saturating_sub(1), last_col)?;
            for (c, column) in columns.iter().enumerate() {
                let width = column
                    .width
                    .unwrap_or_else(|| (sheet.widths[c] + 1).clamp(6, 60) as f64);
                ws.set_column_width(c as u16, width)?;
            }
        }
        let partial = path.with_extension("xlsx.partial");
        self.workbook.save(&partial)?;
        std::fs::rename(&partial, path).map_err(XlsxError::from)
    }
}

fn format_len(n: f64, kind: CellKind) -> usize {
    if kind == CellKind::Integer || n.fract() == 0.0 {
        format!("{n:.0}").len()
    } else {
        format!("{n:.2}").len()
    }
}

fn text_of(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Bool(true) => "Да".into(),
        Json::Bool(false) => "Нет".into(),
        Json::Array(items) => items
            .iter()
            .map(text_of)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn write_text(
    ws: &mut Worksheet,
    row: u32,
    col: u16,
    value: &Json,
) -> Result<Option<usize>, XlsxError> {
    let text = text_of(value);
    if text.is_empty() {
        return Ok(None);
    }
    let text: String = if text.chars().count() > MAX_TEXT {
        text.chars().take(MAX_TEXT).collect()
    } else {
        text
    };
    ws.write_string(row, col, &text)?;
    Ok(Some(
        text.lines().map(|l| l.chars().count()).max().unwrap_or(0),
    ))
}

fn write_datetime(
    ws: &mut Worksheet,
    row: u32,
    col: u16,
    dt: NaiveDateTime,
    column: &Column,
) -> Result<(), XlsxError> {
    if column.kind == CellKind::Date {
        ws.write_datetime_with_format(row, col, dt.date(), &column.format)?;
    } else {
        ws.write_datetime_with_format(row, col, dt, &column.format)?;
    }
    Ok(())
}

impl XlsxSink {
    fn target(&self, ctx: &RunCtx) -> Result<PathBuf, Fatal> {
        let path = self
            .path
            .render(&ctx.run_scope(None))
            .map_err(|e| xlsx_fatal("path", e))?;
        if path.trim().is_empty() {
            return Err(xlsx_fatal("path", "the path template gave an empty path"));
        }
        Ok(PathBuf::from(path))
    }
}

#[async_trait]
impl Sink for XlsxSink {
    fn prepare(&self, item: &Item, scope: &Value) -> Result<Option<Write>, String> {
        let data = item.record.data.as_ref();
        let mut cells = Vec::with_capacity(self.columns.len());
        let mut links = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let value = match (&c.field, &c.value) {
                (Some(f), _) => data.get(f).cloned().unwrap_or(Json::Null),
                (None, Some(t)) => t
                    .eval(scope)
                    .map_err(|e| format!("column \"{}\": {e}", c.title))?,
                (None, None) => Json::Null,
            };
            cells.push(value);
            links.push(match &c.link {
                Some(t) => Json::String(
                    t.render(scope)
                        .map_err(|e| format!("column \"{}\" link: {e}", c.title))?,
                ),
                None => Json::Null,
            });
        }
        let sheet = match &self.sheet_by {
            Some(field) => match data.get(field) {
                Some(v) if !text_of(v).trim().is_empty() => text_of(v),
                _ => self.sheet.clone(),
            },
            None => self.sheet.clone(),
        };
        Ok(Some(Write {
            index: 0,
            key: item.record.key.clone(),
            payload: Arc::new(json!({"sheet": sheet, "cells": cells, "links": links})),
        }))
    }

    async fn write(
        &self,
        writes: &[Write],
        _ctx: &RunCtx,
    ) -> Result<Vec<Result<Json, String>>, Fatal> {
        let mut guard = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let book = guard.get_or_insert_with(|| Book::new(self.constant_memory));
        let mut results = Vec::with_capacity(writes.len());
        for w in writes {
            let sheet_wanted = w.payload["sheet"]
                .as_str()
                .unwrap_or(&self.sheet)
                .to_string();
            let empty = Vec::new();
            let cells = w.payload["cells"].as_array().unwrap_or(&empty);
            let links = w.payload["links"].as_array().unwrap_or(&empty);
            let sheet = book
                .sheet(&sheet_wanted, &self.columns, self.constant_memory)
                .map_err(|e| xlsx_fatal(&self.label, e))?;
            match book.write_row(sheet, cells, links, &self.columns) {
                Ok(true) => results.push(Ok(Json::Null)),
                Ok(false) => results.push(Err(format!(
                    "sheet \"{sheet_wanted}\" is full (Excel's limit of {MAX_ROWS} rows)"
                ))),
                Err(e) => results.push(Err(e.to_string())),
            }
        }
        Ok(results)
    }

    fn describe(&self, w: &Write) -> String {
        format!(
            "row on sheet \"{}\": {}",
            w.payload["sheet"].as_str().unwrap_or_default(),
            w.payload["cells"]
        )
    }

    fn skip_unchanged(&self) -> bool {
        false
    }

    async fn finish(&self, ctx: &RunCtx) -> Result<(), Fatal> {
        let path = self.target(ctx)?;
        let shown = path.display().to_string();
        if ctx.dry_run {
            println!("[dry-run] {}: would write {shown}", self.label);
            return Ok(());
        }
        let saving = std::time::Instant::now();
        let mut guard = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let book = guard.get_or_insert_with(|| Book::new(self.constant_memory));
        if book.sheets.is_empty() {
            // No rows: the report still goes out, with its header and nothing under it.
            book.sheet(&self.sheet, &self.columns, self.constant_memory)
                .map_err(|e| xlsx_fatal(&shown, e))?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| xlsx_fatal(&shown, e))?;
        }
        book.save(&path, &self.columns)
            .map_err(|e| xlsx_fatal(&shown, e))?;
        let rows = book.rows;
        ctx.count(&format!("{}.rows", self.label), rows as i64);
        if book.dropped_links > 0 {
            ctx.log(format!(
                "{}: {} link(s) beyond Excel's {MAX_LINKS} hyperlinks per sheet were written as HYPERLINK formulas",
                self.label, book.dropped_links
            ));
        }
        ctx.log(format!(
            "{}: wrote {shown} ({rows} rows on {} sheet(s), saved in {:.1}s)",
            self.label,
            book.sheets.len(),
            saving.elapsed().as_secs_f64()
        ));
        ctx.shared.add_file(SharedFile {
            producer: self.label.clone(),
            path,
            rows,
        });
        *guard = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_valid_and_unique() {
        assert_eq!(
            sheet_name("Отдел продаж: Москва/Юг", &[]),
            "Отдел продаж  Москва Юг"
        );
        assert_eq!(sheet_name("", &[]), "Лист");
        let long = "Очень длинное название отдела продаж";
        let first = sheet_name(long, &[]);
        assert_eq!(first.chars().count(), 31);
        let second = sheet_name(long, std::slice::from_ref(&first));
        assert!(
            second.ends_with(" (2)") && second.chars().count() == 31,
            "{second}"
        );
        assert_eq!(sheet_name("отчёт", &["Отчёт".into()]), "отчёт (2)");
    }
}
