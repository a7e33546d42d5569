//! The record parser: the first byte picks the stream (odd: impressions, even:
//! plays), the rest is the record. It must classify every input as the
//! reference implementation (the project's truth) does, and a record it accepts
//! must come back identical from its JSON form and from the spill encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamjoin_formats::record::{DEVICES, Event, FieldNames, Input, Key, RecordParser};
use streamjoin_reference::record as truth;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, line)) = data.split_first() else {
        return;
    };
    let (input, stream) = if selector & 1 == 1 {
        (Input::Impressions, truth::Stream::Impressions)
    } else {
        (Input::Plays, truth::Stream::Plays)
    };
    let parser = RecordParser::new(input, FieldNames::default());
    let got = parser.parse(line);
    // The reference parses into serde_json's Value, which with the workspace's
    // `raw_value` feature reads an object whose key is this token as the raw
    // JSON text of its value: not the contract, so no truth for such input.
    if !contains(line, RAW_VALUE_TOKEN) {
        let want = truth::parse(line, stream);
        match (&got, &want) {
            (Ok(e), Ok(t)) => same_event(e, t),
            (Err(r), Err(m)) => assert_eq!(r.kind.reason(), m.reason(), "{r:?}"),
            _ => panic!("runtime {got:?}, reference {want:?}"),
        }
    }
    if let Ok(e) = got {
        round_trips(&parser, &e);
    }
});

const RAW_VALUE_TOKEN: &[u8] = b"$serde_json::private::RawValue";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn same_event(e: &Event, t: &truth::Event) {
    assert_eq!(e.id.bytes.as_slice(), t.event_id.as_bytes());
    assert_eq!(
        (e.time, e.key.profile, e.key.title),
        (t.time, t.profile_id, t.title_id)
    );
    assert_eq!((e.row, e.rank), (t.row.unwrap_or(0), t.rank.unwrap_or(0)));
    assert_eq!(e.duration_ms, t.duration_ms);
    assert_eq!(DEVICES[usize::from(e.device)], t.device);
}

fn round_trips(parser: &RecordParser, e: &Event) {
    let id = std::str::from_utf8(&e.id.bytes).expect("an accepted event_id is UTF-8");
    let mut record = serde_json::json!({
        "type": e.input.record_type(),
        "event_id": id,
        "event_time": e.time,
        "profile_id": e.key.profile,
        "title_id": e.key.title,
        "device": DEVICES[usize::from(e.device)],
    });
    match e.input {
        Input::Impressions => {
            record["row"] = e.row.into();
            record["rank"] = e.rank.into();
        }
        Input::Plays => record["duration_ms"] = e.duration_ms.into(),
    }
    let text = serde_json::to_vec(&record).expect("serialise");
    let again = parser.parse(&text).expect("a re-serialised record parses");
    assert_eq!(&again, e);
    assert_eq!(again.content_hash(), e.content_hash());
    let spilled = postcard::to_allocvec(e).expect("spill encoding");
    let back: Event = postcard::from_bytes(&spilled).expect("spill decoding");
    assert_eq!(&back, e);
    assert_eq!(Key::from_bytes(&e.key.to_bytes()), Some(e.key));
}
