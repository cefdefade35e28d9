//! The results as a markdown report: one table row per measurement, berthd beside LXD.

use std::fmt::Write;

use crate::stats::Summary;

/// One measured quantity for every daemon in the run.
pub struct Measure {
    pub name: String,
    /// `ms` or `MiB`.
    pub unit: &'static str,
    /// The berthd target (issue 2) the median must not exceed, if there is one.
    pub goal: Option<f64>,
    /// One entry per daemon, in run order (berthd first).
    pub values: Vec<Option<Summary>>,
}

/// Everything the report shows.
pub struct Report {
    pub labels: Vec<&'static str>,
    pub header: Vec<String>,
    pub measures: Vec<Measure>,
    pub notes: Vec<String>,
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn cell(s: Option<Summary>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => num(s.median),
        Some(s) => format!("{} / **{}** / {}", num(s.min), num(s.median), num(s.p90)),
    }
}

impl Report {
    pub fn new(labels: Vec<&'static str>) -> Report {
        Report { labels, header: Vec::new(), measures: Vec::new(), notes: Vec::new() }
    }

    pub fn add(&mut self, name: impl Into<String>, unit: &'static str, goal: Option<f64>, values: Vec<Option<Summary>>) {
        self.measures.push(Measure { name: name.into(), unit, goal, values });
    }

    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    /// Renders the report. Timings show `min / median / p90`; single values plain.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        for h in &self.header {
            let _ = writeln!(o, "- {h}");
        }
        let _ = writeln!(o);
        let mut head = "| measurement | unit |".to_string();
        let mut rule = "|---|---|".to_string();
        for l in &self.labels {
            let _ = write!(head, " {l} |");
            rule.push_str("---:|");
        }
        if self.labels.len() > 1 {
            let _ = write!(head, " {} ÷ {} (median) |", self.labels[1], self.labels[0]);
            rule.push_str("---:|");
        }
        head.push_str(" berthd target (median) |");
        rule.push_str("---|");
        let _ = writeln!(o, "{head}\n{rule}");
        for m in &self.measures {
            let mut row = format!("| {} | {} |", m.name, m.unit);
            for v in &m.values {
                let _ = write!(row, " {} |", cell(*v));
            }
            if self.labels.len() > 1 {
                let ratio = match (m.values.first().copied().flatten(), m.values.get(1).copied().flatten()) {
                    (Some(a), Some(b)) if a.median > 0.0 => format!("{:.1}×", b.median / a.median),
                    _ => "–".into(),
                };
                let _ = write!(row, " {ratio} |");
            }
            let verdict = match (m.goal, m.values.first().copied().flatten()) {
                (Some(g), Some(s)) if s.median <= g => format!("≤ {} ✅ met", num(g)),
                (Some(g), Some(_)) => format!("≤ {} ❌ **missed**", num(g)),
                (Some(g), None) => format!("≤ {} (not measured)", num(g)),
                (None, _) => String::new(),
            };
            let _ = writeln!(row, " {verdict} |");
            o.push_str(&row);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o);
            for n in &self.notes {
                let _ = writeln!(o, "- {n}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_median() {
        let mut r = Report::new(vec!["berthd", "LXD"]);
        let fast = Summary::of(&[1.0, 2.0, 3.0]);
        let slow = Summary::of(&[50.0, 80.0, 90.0]);
        r.add("a", "ms", Some(8.0), vec![fast, slow]);
        r.add("b", "ms", Some(1.0), vec![fast, slow]);
        let md = r.markdown();
        assert!(md.contains("| a | ms | 1.00 / **2.00** / 3.00 | 50.0 / **80.0** / 90.0 | 40.0× | ≤ 8.00 ✅ met |"), "{md}");
        assert!(md.contains("| b | ms |") && md.contains("❌ **missed**"), "{md}");
    }
}
