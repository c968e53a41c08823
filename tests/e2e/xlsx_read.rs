//! Reading generated workbooks back: cell values and types with calamine, sheet settings
//! (frozen header, autofilter, widths, links) from the sheet XML inside the zip.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use calamine::{Data, Reader, open_workbook_auto};

/// A sheet's cells, row by row (the header is row 0).
pub struct Sheet {
    pub name: String,
    pub rows: Vec<Vec<Data>>,
}

impl Sheet {
    pub fn header(&self) -> Vec<String> {
        self.rows[0].iter().map(|c| c.to_string()).collect()
    }

    /// Data rows (without the header).
    pub fn data(&self) -> &[Vec<Data>] {
        &self.rows[1..]
    }

    /// The column with this header.
    pub fn col(&self, title: &str) -> usize {
        self.header()
            .iter()
            .position(|h| h == title)
            .unwrap_or_else(|| panic!("no column {title} in {:?}", self.header()))
    }
}

pub fn sheets(path: &Path) -> Vec<Sheet> {
    let mut wb = open_workbook_auto(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let names = wb.sheet_names();
    names
        .into_iter()
        .map(|name| {
            let range = wb.worksheet_range(&name).unwrap();
            Sheet {
                name,
                rows: range.rows().map(|r| r.to_vec()).collect(),
            }
        })
        .collect()
}

/// The XML of every worksheet, in order (`xl/worksheets/sheetN.xml`).
pub fn sheet_xml(path: &Path) -> Vec<String> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for n in 1.. {
        let Ok(mut f) = zip.by_name(&format!("xl/worksheets/sheet{n}.xml")) else {
            break;
        };
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        out.push(text);
    }
    out
}

/// The link targets of a sheet (from its relationships file), in order.
pub fn links(path: &Path, sheet: usize) -> Vec<String> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let Ok(mut f) = zip.by_name(&format!("xl/worksheets/_rels/sheet{sheet}.xml.rels")) else {
        return Vec::new();
    };
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    text.split("Target=\"")
        .skip(1)
        .map(|t| t.split('"').next().unwrap().replace("&amp;", "&"))
        .collect()
}

/// The one `.xlsx` file in `dir`.
pub fn only_xlsx(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xlsx"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

pub fn assert_frozen_header_and_filter(xml: &str, last_col: char, rows: usize) {
    assert!(
        xml.contains(
            r#"<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>"#
        ),
        "{}",
        &xml[..xml.len().min(800)]
    );
    let filter = format!(r#"<autoFilter ref="A1:{last_col}{}"/>"#, rows.max(1));
    assert!(xml.contains(&filter), "{filter} missing");
    assert!(xml.contains("<cols>"), "column widths missing");
}
