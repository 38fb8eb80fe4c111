//! Human output: compact lines and tables for listings, peers, alerts and events, dates and
//! durations. (`--json` output is the API's JSON as it came, printed by the commands.)
//!
//! Everything here reads `serde_json::Value`s as the API documents them and never fails: a missing
//! field prints as empty, so a newer node with more or fewer fields still prints something useful.
//! Text that came from the network is cleaned of control characters before it reaches the terminal.

use serde_json::Value;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a Unix time (UTC).
pub fn date(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM` of a Unix time (UTC).
pub fn date_time(secs: u64) -> String {
    let rem = secs % 86_400;
    format!("{} {:02}:{:02} UTC", date(secs), rem / 3600, (rem % 3600) / 60)
}

/// A duration in words: "12 s", "5 min", "3 h", "4 days".
pub fn duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// How long until `until`, from `now`: "12 days left", "expired".
pub fn expiry(until: u64, now: u64) -> String {
    if until <= now { "expired".to_owned() } else { format!("{} left", duration(until - now)) }
}

/// A byte count in words.
pub fn bytes(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{} KiB", n / 1024),
        _ => format!("{} MiB", n / (1024 * 1024)),
    }
}

/// Text from the network, safe for a terminal: control characters become spaces.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') { ' ' } else { c })
        .collect()
}

/// `s` cut to `max` characters (with an ellipsis), cleaned.
pub fn cut(s: &str, max: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= max {
        s
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A string field of a JSON object, or "".
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An unsigned field of a JSON object.
pub fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// The 8-character prefix of a listing id, enough to name it on the command line.
pub fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// "Alice (AbCdEfGh)", or the short id alone.
pub fn author(listing: &Value) -> String {
    let a = listing.get("author").unwrap_or(&Value::Null);
    let short = str_of(a, "short");
    let short = if short.is_empty() { str_of(a, "peer_id").chars().take(8).collect() } else { short.to_owned() };
    match str_of(a, "name") {
        "" => short,
        name => format!("{} ({short})", cut(name, 24)),
    }
}

/// Rows printed as aligned columns (the last column is not padded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One row per listing: short id, kind, title, author, distance, expiry.
pub fn listing_rows(listings: &[Value], now: u64) -> Vec<Vec<String>> {
    listings
        .iter()
        .map(|l| {
            vec![
                short_id(str_of(l, "id")),
                str_of(l, "kind").to_owned(),
                cut(str_of(l, "title"), 40),
                author(l),
                clean(str_of(l, "distance")),
                u64_of(l, "valid_until").map(|u| expiry(u, now)).unwrap_or_default(),
            ]
        })
        .collect()
}

/// One line for one listing (events, confirmations).
pub fn listing_line(l: &Value, now: u64) -> String {
    table(&listing_rows(std::slice::from_ref(l), now)).trim_end().to_owned()
}

/// A listing in full, one field a line.
pub fn listing_detail(l: &Value, now: u64) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |k: &str, v: String| {
        if !v.is_empty() {
            rows.push(vec![format!("{k}:"), v]);
        }
    };
    row("title", clean(str_of(l, "title")));
    row("kind", format!("{} / {}", str_of(l, "kind"), str_of(l, "category")));
    row("id", str_of(l, "id").to_owned());
    row("address", str_of(l, "address").to_owned());
    let revision = u64_of(l, "revision").map(|r| r.to_string()).unwrap_or_default();
    row("revision", revision);
    let mine = if l.get("mine").and_then(Value::as_bool) == Some(true) { " (you)" } else { "" };
    row("author", format!("{}{mine}", author(l)));
    row("community", clean(str_of(l, "community")));
    let place = match (str_of(l, "location"), str_of(l, "distance")) {
        ("", _) => String::new(),
        (loc, "") => loc.to_owned(),
        (loc, d) => format!("{loc} ({})", clean(d)),
    };
    row("location", place);
    let tags: Vec<String> = l
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).map(clean).collect())
        .unwrap_or_default();
    row("tags", tags.join(", "));
    if let Some(terms) = l.get("terms").filter(|t| t.is_object()) {
        if let Some(d) = u64_of(terms, "max_loan_days") {
            row("max loan", format!("{d} days"));
        }
        if let Some(dep) = terms.get("deposit").filter(|d| d.is_object()) {
            let minor = u64_of(dep, "amount_minor").unwrap_or(0);
            row("deposit", format!("{}.{:02} {}", minor / 100, minor % 100, clean(str_of(dep, "currency"))));
        }
        row("conditions", clean(str_of(terms, "conditions")));
        row("availability", clean(str_of(terms, "availability")));
        row("in return", clean(str_of(terms, "in_return")));
        if let Some(h) = u64_of(terms, "hours") {
            row("hours", format!("about {h} h"));
        }
    }
    if let Some(from) = u64_of(l, "available_from") {
        row("available from", date(from));
    }
    if let Some(until) = u64_of(l, "available_until") {
        row("available until", date(until));
    }
    if let Some(created) = u64_of(l, "created_at") {
        row("published", date_time(created));
    }
    if let Some(until) = u64_of(l, "valid_until") {
        row("valid until", format!("{} ({})", date(until), expiry(until, now)));
    }
    let mut out = table(&rows);
    let description = str_of(l, "description");
    if !description.is_empty() {
        out.push('\n');
        for line in description.lines() {
            out.push_str("  ");
            out.push_str(&clean(line));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1000i64, 0, 1, 59, 60, 365, 10_957, 19_782, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_709_164_800), "2024-02-29");
        assert_eq!(date_time(1_709_164_800 + 3600 + 120), "2024-02-29 01:02 UTC");
    }

    #[test]
    fn words() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(600), "10 min");
        assert_eq!(duration(3 * 86_400), "3 days");
        assert_eq!(expiry(10, 20), "expired");
        assert_eq!(expiry(20 + 86_400 * 12, 20), "12 days left");
        assert_eq!(clean("a\u{1b}[31mb\u{202e}"), "a [31mb ");
        assert_eq!(cut("abcdef", 4), "abc…");
    }

    #[test]
    fn listings_print_without_every_field() {
        let l = json!({
            "id": "3fa9c2d1e0", "kind": "lend", "category": "tools", "title": "Cordless drill",
            "author": {"peer_id": "12D3KooWabc", "short": "AbCdEfGh", "name": "Alice"},
            "distance": "about 2 km", "valid_until": 100 + 86_400 * 3,
            "terms": {"deposit": {"amount_minor": 2050, "currency": "EUR"}}
        });
        let line = listing_line(&l, 100);
        assert!(
            line.starts_with("3fa9c2d1  lend  Cordless drill  Alice (AbCdEfGh)  about 2 km  3 days left"),
            "{line}"
        );
        let detail = listing_detail(&l, 100);
        assert!(detail.contains("20.50 EUR"), "{detail}");
        assert!(!listing_line(&json!({}), 0).contains('\n'));
    }
}
