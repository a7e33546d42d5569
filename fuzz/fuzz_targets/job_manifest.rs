//! A StreamJoinJob manifest (YAML or JSON), as the runtime reads it from a
//! file and the operator from the API: parsing never panics, validation never
//! panics on any spec that parses, and the YAML the operator writes for a job
//! (its ConfigMap) reads back, writing the same text again; so does its JSON
//! (the API server's form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamjoin_api::StreamJoinJob;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(job) = StreamJoinJob::from_yaml(text) else {
        return;
    };
    let _ = job.spec.validate();
    let yaml = serde_norway::to_string(&job).expect("serialise");
    let back = StreamJoinJob::from_yaml(&yaml)
        .unwrap_or_else(|e| panic!("the written job does not read back: {e}\n{yaml}"));
    let _ = back.spec.validate();
    let again = serde_norway::to_string(&back).expect("serialise again");
    assert_eq!(again, yaml, "a second write differs");
    // JSON has no NaN or infinity (`maxLateRatio: .nan` is written `null` and
    // reads back unset), so the JSON form is checked once normalised: it reads
    // back and then writes the same text.
    let json = serde_json::to_string(&job).expect("json");
    let once = from_json(&json);
    let normalised = serde_json::to_string(&once).expect("json");
    let twice = from_json(&normalised);
    assert_eq!(serde_json::to_string(&twice).expect("json"), normalised);
});

fn from_json(json: &str) -> StreamJoinJob {
    StreamJoinJob::from_yaml(json)
        .unwrap_or_else(|e| panic!("the job's JSON does not read back: {e}\n{json}"))
}
