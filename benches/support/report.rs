//! Tables of results: printed as Markdown on stdout and written as CSV files.

use std::io;
use std::path::Path;

/// A titled table of text cells; `n/a` marks what could not be measured.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Heading printed above the table.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
    /// Footnotes printed under the table.
    pub notes: Vec<String>,
}

/// The mark for a value that could not be measured.
pub const NA: &str = "n/a";

impl Table {
    /// An empty table with these columns.
    pub fn new(title: &str, columns: &[&str]) -> Table {
        Table {
            title: title.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            ..Table::default()
        }
    }

    /// Appends a row, padded with `n/a` to the number of columns.
    pub fn row(&mut self, mut cells: Vec<String>) {
        assert!(
            cells.len() <= self.columns.len(),
            "{}: row longer than the header",
            self.title
        );
        cells.resize(self.columns.len(), NA.to_owned());
        self.rows.push(cells);
    }

    /// Adds a footnote.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The cells of column `name` as numbers (`None` for `n/a` or a missing column).
    pub fn numbers(&self, name: &str) -> Vec<Option<f64>> {
        let col = self.columns.iter().position(|c| c == name);
        self.rows
            .iter()
            .map(|r| col.and_then(|i| r[i].parse().ok()))
            .collect()
    }

    /// The table in GitHub Markdown, numbers right-aligned.
    pub fn markdown(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].len())
                    .chain([self.columns[i].len(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let numeric = |i: usize| self.rows.iter().any(|r| r[i].parse::<f64>().is_ok());
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if numeric(i) {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = format!("\n### {}\n\n", self.title);
        out += &line(&self.columns);
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if numeric(i) {
                    format!("{}:", "-".repeat(w + 1))
                } else {
                    "-".repeat(w + 2)
                }
            })
            .collect();
        out += &format!("|{}|\n", rule.join("|"));
        for row in &self.rows {
            out += &line(row);
        }
        for note in &self.notes {
            out += &format!("\n{note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Writes the table as CSV (RFC 4180 quoting) to `path`.
    pub fn write_csv(&self, path: &Path) -> io::Result<()> {
        let quote = |c: &String| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.columns).chain(&self.rows) {
            out += &row.iter().map(quote).collect::<Vec<_>>().join(",");
            out.push('\n');
        }
        std::fs::write(path, out)
    }
}

/// A number with `decimals` digits, or `n/a`.
pub fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| NA.to_owned(), |v| format!("{v:.decimals$}"))
}
