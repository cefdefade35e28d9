//! Schedules and expiries: `snapshots.schedule` (LXD `IsCron`, robfig/cron standard
//! fields) and `snapshots.expiry` (LXD `GetSnapshotExpiry`).

/// LXD `IsCron`: lowercased, `, `-separated triggers, each an alias or 5 cron fields.
pub fn cron(value: &str, aliases: &[&str]) -> Result<(), String> {
    let lower = value.to_lowercase();
    for trigger in lower.split(", ") {
        if aliases.contains(&trigger) {
            continue;
        }
        let fields: Vec<&str> = trigger.split(' ').collect();
        if fields.len() != 5 {
            return Err("Schedule must be of the form: <minute> <hour> <day-of-month> <month> <day-of-week>".into());
        }
        const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
        const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let bounds: [(u32, u32, &[&str], u32); 5] =
            [(0, 59, &[], 0), (0, 23, &[], 0), (1, 31, &[], 0), (1, 12, MONTHS, 1), (0, 6, DAYS, 0)];
        for (field, (min, max, names, name_base)) in fields.iter().zip(bounds) {
            cron_field(field, min, max, names, name_base)
                .map_err(|e| format!("Error parsing schedule: {e}"))?;
        }
    }
    Ok(())
}

fn cron_field(field: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Result<(), String> {
    let num = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| *n == s) {
            return Ok(i as u32 + name_base);
        }
        let n = s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}"))?;
        if n < min || n > max {
            return Err(format!("end of range ({n}) above maximum ({max}) or below minimum ({min}): {s}"));
        }
        Ok(n)
    };
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(step) = step {
            let s = step.parse::<u32>().map_err(|_| format!("failed to parse int from {step}"))?;
            if s == 0 {
                return Err(format!("step of range should be a positive number: {part}"));
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("beginning of range ({a}) beyond end of range ({b}): {part}"));
                }
            }
            None => {
                num(range)?;
            }
        }
    }
    Ok(())
}

/// LXD `GetSnapshotExpiry` syntax check.
pub fn expiry(value: &str) -> Result<(), String> {
    let expr = value.trim();
    if expr.is_empty() {
        return Ok(());
    }
    let mut seen = [0u64; 6];
    for token in expr.split(' ') {
        let unit = token.chars().last().unwrap_or(' ');
        let idx = "MHdwmy".find(unit).ok_or("Invalid expiry expression")?;
        let digits = &token[..token.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("Invalid expiry expression".into());
        }
        let n = digits.parse::<u64>().map_err(|_| "Invalid expiry expression")?;
        // LXD only refuses a repeated unit when the earlier value was non-zero.
        if seen[idx] > 0 {
            return Err("Invalid expiry expression".into());
        }
        seen[idx] = n;
    }
    Ok(())
}
