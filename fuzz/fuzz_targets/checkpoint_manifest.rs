//! A checkpoint's MANIFEST.json: decoding never panics, refuses formats newer
//! than this release's, and a manifest it accepts reads back identical from
//! what the runtime writes for it (`serde_json::to_vec_pretty`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamjoin_formats::checkpoint::{FORMAT_VERSION, decode_manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = decode_manifest(data) else {
        return;
    };
    assert!(m.format_version <= FORMAT_VERSION);
    let written = serde_json::to_vec_pretty(&m).expect("serialise");
    let back = decode_manifest(&written).expect("a written manifest decodes");
    assert_eq!(back, m);
    let since = m.process_started_ms.unwrap_or(m.created_ms);
    assert!(m.written_since(since));
    if since < i64::MAX {
        assert!(!m.written_since(since + 1));
    }
});
