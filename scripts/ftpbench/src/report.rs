//! Result lines: human-readable (pyftpdlib scripts/ftpbench's `print_bench` layout) as each
//! figure is measured, plus CSV or JSON at the end for scripts/compare.sh.

use std::io::Write;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable machine-readable key, e.g. `retr_mbps`.
    pub key: String,
    /// Human label, e.g. `RETR 1 client, 256 KiB reads`.
    pub label: String,
    /// The value (NaN when the workload is unsupported or failed).
    pub value: f64,
    /// Unit, e.g. `MB/s`, `s`, `ms`, `KiB`, `/s`.
    pub unit: &'static str,
}

/// Output format chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human lines on stdout.
    Human,
    /// Human lines on stderr, `key,value,unit,label` CSV on stdout.
    Csv,
    /// Human lines on stderr, one JSON array on stdout.
    Json,
}

/// Collects figures and prints them.
pub struct Report {
    format: Format,
    /// Appended to every key (`--key-suffix`).
    suffix: String,
    figures: Vec<Figure>,
}

/// One `key,value,unit,label` CSV line.
fn csv_line(key: &str, value: f64, unit: &str, label: &str) -> String {
    let v = if value.is_nan() {
        "nan".to_string()
    } else {
        format!("{value:.4}")
    };
    format!("{key},{v},{unit},\"{}\"", label.replace('"', "'"))
}

impl Report {
    /// A report in `format`, whose keys end in `suffix`.
    pub fn new(format: Format, suffix: String) -> Report {
        if format == Format::Csv {
            println!("key,value,unit,label");
        }
        Report {
            format,
            suffix,
            figures: Vec::new(),
        }
    }

    /// Records and prints one figure.
    pub fn add(&mut self, key: &str, label: &str, value: f64, unit: &'static str) {
        let key = &format!("{key}{}", self.suffix);
        let shown = if value.is_nan() {
            format!("{:>10}", "n/a")
        } else if value.abs() < 10.0 {
            format!("{value:>10.3}")
        } else {
            format!("{value:>10.1}")
        };
        let line = format!("{label:<56} {shown} {unit}");
        match self.format {
            Format::Human => println!("{line}"),
            Format::Csv => {
                eprintln!("{line}");
                // Each CSV line as soon as it is known: a run stopped by a caller's time
                // limit keeps the figures it got.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", csv_line(key, value, unit, label));
                let _ = out.flush();
            }
            Format::Json => eprintln!("{line}"),
        }
        self.figures.push(Figure {
            key: key.to_string(),
            label: label.to_string(),
            value,
            unit,
        });
    }

    /// Prints a note (stderr), e.g. why a figure is n/a.
    pub fn note(&self, msg: &str) {
        eprintln!("ftpbench: {msg}");
    }

    /// Prints the machine-readable output, if any.
    pub fn finish(&self) {
        let mut out = std::io::stdout().lock();
        match self.format {
            // CSV lines went out as the figures came (see `add`).
            Format::Human | Format::Csv => {}
            Format::Json => {
                let items: Vec<String> = self
                    .figures
                    .iter()
                    .map(|f| {
                        let v = if f.value.is_finite() {
                            format!("{:.4}", f.value)
                        } else {
                            "null".to_string()
                        };
                        format!(
                            "{{\"key\":\"{}\",\"value\":{},\"unit\":\"{}\",\"label\":\"{}\"}}",
                            f.key,
                            v,
                            f.unit,
                            f.label.replace('\\', "\\\\").replace('"', "\\\"")
                        )
                    })
                    .collect();
                let _ = writeln!(out, "[\n  {}\n]", items.join(",\n  "));
            }
        }
    }
}
