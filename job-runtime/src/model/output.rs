//! The canonical output record of an entry (the contract's "Output records"):
//! fields in the table's order, no whitespace, `null` where there is no value,
//! devices sorted by byte value.
//!
//! Its own file because the record is the job's interface: the property test
//! below holds it to the contract's wording for any entry. (A version writing
//! digits eight at a time in a word took more instructions than `itoa` here.)

use crate::model::entry::Entry;
use crate::model::record::{DEVICES, Key};

/// The two key field names of the output, JSON-quoted with their colon, prepared
/// once per shard.
#[derive(Clone, Debug)]
pub struct OutputNames {
    profile: Vec<u8>,
    title: Vec<u8>,
}

impl OutputNames {
    pub fn new(profile: &str, title: &str) -> Self {
        let quoted = |name: &str| {
            let mut out = serde_json::to_vec(name)
                .unwrap_or_else(|e| unreachable!("a string always serialises: {e}"));
            out.push(b':');
            out
        };
        OutputNames {
            profile: quoted(profile),
            title: quoted(title),
        }
    }
}

/// Appends `entry`'s output record (for `key`) to `out`.
pub fn write_json(entry: &Entry, key: Key, names: &OutputNames, out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    let mut int = |out: &mut Vec<u8>, v: i64| out.extend_from_slice(num.format(v).as_bytes());
    out.push(b'{');
    out.extend_from_slice(&names.profile);
    int(out, key.profile);
    out.push(b',');
    out.extend_from_slice(&names.title);
    int(out, key.title);
    out.extend_from_slice(b",\"window_start\":");
    int(out, entry.window_start);
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b",\"impressions\":");
    out.extend_from_slice(num.format(entry.impressions).as_bytes());
    out.extend_from_slice(b",\"plays\":");
    out.extend_from_slice(num.format(entry.plays).as_bytes());
    let mut opt = |out: &mut Vec<u8>, name: &[u8], v: Option<i64>| {
        out.extend_from_slice(name);
        match v {
            Some(v) => out.extend_from_slice(num.format(v).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
    };
    opt(
        out,
        b",\"first_impression_time\":",
        entry.first_impression_time(),
    );
    opt(
        out,
        b",\"last_impression_time\":",
        entry.last_impression_time(),
    );
    let best = entry.best();
    opt(out, b",\"best_row\":", best.map(|b| b.0));
    opt(out, b",\"best_rank\":", best.map(|b| b.1));
    out.extend_from_slice(b",\"devices\":[");
    let mut first = true;
    for (i, d) in DEVICES.iter().enumerate() {
        if entry.devices & (1 << i) != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(d.as_bytes());
            out.push(b'"');
        }
    }
    out.push(b']');
    opt(out, b",\"first_play_time\":", entry.first_play_time());
    out.extend_from_slice(b",\"play_duration_ms\":");
    out.extend_from_slice(num.format(entry.play_duration_ms()).as_bytes());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::entry::test_event as ev;
    use crate::model::record::{Event, EventId, Input};

    fn json(entry: &Entry, key: Key) -> String {
        let mut out = b"kept".to_vec();
        write_json(
            entry,
            key,
            &OutputNames::new("profile_id", "title_id"),
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf8");
        text.strip_prefix("kept")
            .expect("what the buffer held stays")
            .to_owned()
    }

    /// The record as the contract words it, built the slow way.
    fn reference(e: &Entry, key: Key) -> String {
        let opt = |v: Option<i64>| v.map_or("null".to_owned(), |v| v.to_string());
        let devices: Vec<String> = DEVICES
            .iter()
            .enumerate()
            .filter(|(i, _)| e.devices & (1 << i) != 0)
            .map(|(_, d)| format!("\"{d}\""))
            .collect();
        format!(
            "{{\"profile_id\":{},\"title_id\":{},\"window_start\":{},\"impressions\":{},\"plays\":{},\"first_impression_time\":{},\"last_impression_time\":{},\"best_row\":{},\"best_rank\":{},\"devices\":[{}],\"first_play_time\":{},\"play_duration_ms\":{}}}",
            key.profile,
            key.title,
            e.window_start,
            e.impressions,
            e.plays,
            opt(e.first_impression_time()),
            opt(e.last_impression_time()),
            opt(e.best().map(|b| b.0)),
            opt(e.best().map(|b| b.1)),
            devices.join(","),
            opt(e.first_play_time()),
            e.play_duration_ms()
        )
    }

    #[test]
    fn canonical_json_has_contract_order_and_nulls() {
        let e = Entry::open(&ev(Input::Plays, 100, "p", 3), 1000);
        assert_eq!(
            json(
                &e,
                Key {
                    profile: 7,
                    title: 9
                }
            ),
            r#"{"profile_id":7,"title_id":9,"window_start":100,"impressions":0,"plays":1,"first_impression_time":null,"last_impression_time":null,"best_row":null,"best_rank":null,"devices":["tv"],"first_play_time":100,"play_duration_ms":1000}"#
        );
    }

    #[test]
    fn devices_are_sorted_by_byte_value() {
        let mut e = Entry::open(&ev(Input::Impressions, 1, "a", 4), 1000);
        e.fold(&ev(Input::Impressions, 2, "b", 0));
        e.fold(&ev(Input::Impressions, 3, "c", 3));
        let text = json(&e, Key::default());
        assert!(
            text.contains(r#""devices":["android","tv","web"]"#),
            "{text}"
        );
    }

    #[test]
    fn configured_key_names_are_quoted_and_escaped() {
        let e = Entry::open(&ev(Input::Impressions, 5, "a", 0), 1000);
        let mut out = Vec::new();
        write_json(
            &e,
            Key {
                profile: -1,
                title: 0,
            },
            &OutputNames::new("member \"id\"", "title"),
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.starts_with(r#"{"member \"id\"":-1,"title":0,"window_start":5,"#),
            "{text}"
        );
    }

    fn any_event() -> impl Strategy<Value = Event> {
        let time = prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0i64),
            any::<i64>(),
            1_600_000_000_000i64..1_800_000_000_000
        ];
        let small = prop_oneof![any::<i64>(), -200i64..200, Just(i64::MIN), Just(i64::MAX)];
        (
            any::<bool>(),
            time,
            small.clone(),
            small.clone(),
            small,
            0u8..5,
            any::<u32>(),
        )
            .prop_map(|(play, time, row, rank, duration_ms, device, id)| Event {
                input: if play {
                    Input::Plays
                } else {
                    Input::Impressions
                },
                time,
                key: Key::default(),
                id: EventId::new(&format!("{id:08x}")),
                row,
                rank,
                duration_ms,
                device,
            })
    }

    proptest! {
        /// Every digit count, sign, null, device set and a sum beyond an i64.
        #[test]
        fn the_record_is_the_contracts_text_for_any_entry(
            events in prop::collection::vec(any_event(), 1..8),
            profile in any::<i64>(),
            title in any::<i64>(),
        ) {
            let mut e = Entry::open(&events[0], 1000);
            for event in &events[1..] {
                e.fold(event);
            }
            let key = Key { profile, title };
            prop_assert_eq!(json(&e, key), reference(&e, key));
        }
    }
}
