//! Opening hours (`[[hours]]`): a time zone, weekly open spans and closed dates.
//! [`Hours::is_open`] answers for any instant, so callers pass the time in (tests
//! use any clock). Time zones come from the tz database bundled into the binary, so
//! a machine without tzdata behaves like one with it.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::time::SystemTime;

/// One weekly span: on `days`, from `start` to `end` minutes after midnight; an
/// `end` at or before `start` runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    days: [bool; 7],
    start: u16,
    end: u16,
}

/// Parsed, validated hours.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    spans: Vec<Span>,
    closed: Vec<Date>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Result<usize, String> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| format!("`{s}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

fn minutes(s: &str) -> Result<u16, String> {
    let bad = || format!("`{s}` is not a time (HH:MM, 00:00 to 24:00)");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) || s.trim().len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `mon-fri 08:00-18:00`, `sat 09:00-12:00`, `mon,wed 10:00-12:00`,
/// `fri 22:00-02:00` (until Saturday 02:00), `daily 00:00-24:00`.
fn parse_span(s: &str) -> Result<Span, String> {
    let (days_s, times) = s
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("`{s}`: expected DAYS HH:MM-HH:MM"))?;
    let mut days = [false; 7];
    if days_s.eq_ignore_ascii_case("daily") {
        days = [true; 7];
    } else {
        for part in days_s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day_index(a)?, day_index(b)?);
                    let mut d = a;
                    loop {
                        days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day_index(part)?] = true,
            }
        }
    }
    let (a, b) = times
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("`{s}`: expected HH:MM-HH:MM"))?;
    let (start, end) = (minutes(a)?, minutes(b)?);
    if start == 24 * 60 {
        return Err(format!("`{s}`: a span cannot start at 24:00"));
    }
    Ok(Span { days, start, end })
}

impl Hours {
    /// Parse a `[[hours]]` entry; the error says which part is wrong.
    pub fn parse(timezone: &str, open: &[String], closed: &[String]) -> Result<Hours, String> {
        let tz = TimeZone::get(timezone)
            .map_err(|_| format!("`{timezone}` is not a time zone of the tz database"))?;
        let spans = open
            .iter()
            .map(|s| parse_span(s))
            .collect::<Result<Vec<_>, _>>()?;
        let closed = closed
            .iter()
            .map(|d| {
                d.trim()
                    .parse::<Date>()
                    .map_err(|_| format!("`{d}` is not a date (YYYY-MM-DD)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Hours { tz, spans, closed })
    }

    /// Whether the hours are open at `at`. A closed date closes the whole local
    /// day, including what an overnight span of the day before would carry into it.
    pub fn is_open(&self, at: SystemTime) -> bool {
        let Ok(ts) = Timestamp::try_from(at) else {
            return false;
        };
        let z = ts.to_zoned(self.tz.clone());
        let date = z.date();
        if self.closed.contains(&date) {
            return false;
        }
        let day = z.weekday().to_monday_zero_offset() as usize;
        let yesterday = (day + 6) % 7;
        let now = z.hour() as u16 * 60 + z.minute() as u16;
        self.spans.iter().any(|s| {
            let overnight = s.end <= s.start;
            let today = s.days[day] && now >= s.start && (overnight || now < s.end);
            let carried = overnight && s.days[yesterday] && now < s.end;
            today || carried
        })
    }
}

#[cfg(test)]
#[path = "hours_tests.rs"]
mod tests;
