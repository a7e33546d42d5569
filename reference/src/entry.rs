//! The emitted entry: its fields, how a set of events aggregates into one, and
//! its canonical bytes (contract, "The emitted entry" and "Canonical bytes").

use std::fmt::Write as _;

use crate::record::{Event, Stream};

/// The field names in the contract's order.
pub const FIELDS: [&str; 12] = [
    "profile_id",
    "title_id",
    "window_start",
    "impressions",
    "plays",
    "first_impression_time",
    "last_impression_time",
    "best_row",
    "best_rank",
    "devices",
    "first_play_time",
    "play_duration_ms",
];

/// One emitted entry. Fields in the contract's order; the derived ordering
/// is therefore by `(profile_id, title_id, window_start, ...)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub profile_id: i64,
    pub title_id: i64,
    pub window_start: i64,
    pub impressions: i64,
    pub plays: i64,
    pub first_impression_time: Option<i64>,
    pub last_impression_time: Option<i64>,
    pub best_row: Option<i64>,
    pub best_rank: Option<i64>,
    /// Distinct, sorted by byte value.
    pub devices: Vec<String>,
    pub first_play_time: Option<i64>,
    pub play_duration_ms: i64,
}

/// `Some(min)` of an optional running minimum and a value.
fn min_of(cur: Option<i64>, v: i64) -> Option<i64> {
    Some(cur.map_or(v, |c| c.min(v)))
}

fn max_of(cur: Option<i64>, v: i64) -> Option<i64> {
    Some(cur.map_or(v, |c| c.max(v)))
}

impl Entry {
    /// The entry of a key that holds exactly `events` (distinct events; any
    /// order). Every field is computed as the table of the contract says.
    /// `None` for no events: an entry always has at least one.
    pub fn aggregate<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Entry> {
        let mut it = events.into_iter().peekable();
        let first = it.peek()?;
        let mut e = Entry {
            profile_id: first.profile_id,
            title_id: first.title_id,
            window_start: first.time,
            impressions: 0,
            plays: 0,
            first_impression_time: None,
            last_impression_time: None,
            best_row: None,
            best_rank: None,
            devices: Vec::new(),
            first_play_time: None,
            play_duration_ms: 0,
        };
        // The smallest (row, rank) pair: the smallest row, then the smallest rank in it.
        let mut best: Option<(i64, i64)> = None;
        for ev in it {
            e.window_start = e.window_start.min(ev.time);
            if !e.devices.iter().any(|d| d == ev.device) {
                e.devices.push(ev.device.to_owned());
            }
            match ev.stream {
                Stream::Impressions => {
                    e.impressions += 1;
                    e.first_impression_time = min_of(e.first_impression_time, ev.time);
                    e.last_impression_time = max_of(e.last_impression_time, ev.time);
                    let pair = (ev.row.unwrap_or_default(), ev.rank.unwrap_or_default());
                    best = Some(best.map_or(pair, |b| b.min(pair)));
                }
                Stream::Plays => {
                    e.plays += 1;
                    e.first_play_time = min_of(e.first_play_time, ev.time);
                    e.play_duration_ms += ev.duration_ms;
                }
            }
        }
        e.devices.sort(); // String's order is byte order
        e.best_row = best.map(|b| b.0);
        e.best_rank = best.map(|b| b.1);
        Some(e)
    }

    /// The canonical JSON: fields in the table's order, no whitespace, `null`
    /// where there is no value.
    pub fn canonical_json(&self) -> String {
        let n = |v: Option<i64>| v.map_or_else(|| "null".to_owned(), |x| x.to_string());
        let devices: Vec<String> = self
            .devices
            .iter()
            .map(|d| serde_json::Value::String(d.clone()).to_string())
            .collect();
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "{{\"profile_id\":{},\"title_id\":{},\"window_start\":{},\"impressions\":{},\
             \"plays\":{},\"first_impression_time\":{},\"last_impression_time\":{},\
             \"best_row\":{},\"best_rank\":{},\"devices\":[{}],\"first_play_time\":{},\
             \"play_duration_ms\":{}}}",
            self.profile_id,
            self.title_id,
            self.window_start,
            self.impressions,
            self.plays,
            n(self.first_impression_time),
            n(self.last_impression_time),
            n(self.best_row),
            n(self.best_rank),
            devices.join(","),
            n(self.first_play_time),
            self.play_duration_ms,
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn ev(
        stream: Stream,
        id: &str,
        time: i64,
        row: i64,
        rank: i64,
        device: &'static str,
    ) -> Event {
        let imp = stream == Stream::Impressions;
        Event {
            stream,
            event_id: id.into(),
            time,
            profile_id: 7,
            title_id: 9,
            row: imp.then_some(row),
            rank: imp.then_some(rank),
            duration_ms: if imp { 0 } else { rank * 1000 },
            device,
        }
    }

    #[test]
    fn an_entry_summarises_its_events_as_the_table_says() {
        let events = [
            ev(Stream::Impressions, "a", 1_000, 3, 9, "tv"),
            ev(Stream::Impressions, "b", 5_000, 2, 30, "web"),
            ev(Stream::Impressions, "c", 3_000, 2, 4, "tv"),
            ev(Stream::Plays, "d", 800, 0, 5, "android"),
            ev(Stream::Plays, "e", 4_000, 0, 7, "tv"),
        ];
        let e = Entry::aggregate(&events).unwrap();
        assert_eq!((e.window_start, e.impressions, e.plays), (800, 3, 2));
        assert_eq!(
            (e.first_impression_time, e.last_impression_time),
            (Some(1_000), Some(5_000))
        );
        // Row 2 is the smallest; rank 4 the smallest within row 2 (not 9, which is row 3).
        assert_eq!((e.best_row, e.best_rank), (Some(2), Some(4)));
        assert_eq!(e.devices, ["android", "tv", "web"]);
        assert_eq!((e.first_play_time, e.play_duration_ms), (Some(800), 12_000));
    }

    #[test]
    fn canonical_bytes_have_the_fields_in_order_and_null_where_nothing_was_summed() {
        let plays_only = Entry::aggregate(&[ev(Stream::Plays, "p", 42, 0, 3, "other")]).unwrap();
        assert_eq!(
            plays_only.canonical_json(),
            r#"{"profile_id":7,"title_id":9,"window_start":42,"impressions":0,"plays":1,"first_impression_time":null,"last_impression_time":null,"best_row":null,"best_rank":null,"devices":["other"],"first_play_time":42,"play_duration_ms":3000}"#
        );
        let imps_only = Entry::aggregate(&[ev(Stream::Impressions, "i", 5, 1, 2, "ios")]).unwrap();
        assert_eq!(
            imps_only.canonical_json(),
            r#"{"profile_id":7,"title_id":9,"window_start":5,"impressions":1,"plays":0,"first_impression_time":5,"last_impression_time":5,"best_row":1,"best_rank":2,"devices":["ios"],"first_play_time":null,"play_duration_ms":0}"#
        );
    }

    #[test]
    fn the_same_events_in_any_order_give_the_same_bytes() {
        let mut events = vec![
            ev(Stream::Impressions, "a", 10, 5, 5, "web"),
            ev(Stream::Plays, "b", 20, 0, 1, "android"),
            ev(Stream::Impressions, "c", 30, 5, 1, "tv"),
        ];
        let one = Entry::aggregate(&events).unwrap().canonical_json();
        events.reverse();
        assert_eq!(Entry::aggregate(&events).unwrap().canonical_json(), one);
        assert!(Entry::aggregate(&[]).is_none());
    }
}
