//! The admin API's request bodies and path ids: the body of
//! `POST /v1/savepoints` and the `{id}` of `/v1/savepoints/{id}`. Parsing
//! never panics, an accepted request reads back identical from its JSON form,
//! and every id the API accepts is one safe directory name (it becomes a
//! directory of the savepoint location).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamjoin_formats::admin::{
    SavepointRequest, parse_savepoint_request, savepoint_id, valid_id,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_savepoint_request(data) {
        let json = serde_json::json!({ "stop": req.stop, "id": req.id });
        let again = parse_savepoint_request(json.to_string().as_bytes())
            .expect("a re-serialised request parses");
        assert_eq!(again, req);
        if let Ok(id) = savepoint_id(&req, 1_700_000_000_000) {
            assert_safe(&id);
            if let Some(asked) = &req.id {
                assert_eq!(&id, asked, "an accepted id is used as given");
            }
        }
        let default = savepoint_id(&SavepointRequest::default(), i64::MIN);
        assert!(default.is_ok(), "a generated id is always valid");
    }
    // A path segment as axum hands it over (percent-decoded text).
    let path = String::from_utf8_lossy(data);
    if valid_id(&path) {
        assert_safe(&path);
    }
});

fn assert_safe(id: &str) {
    assert!(!id.is_empty() && id.len() <= 128, "{id:?}");
    assert!(!id.starts_with('.'), "{id:?}: hidden, `.` or `..`");
    assert!(
        !id.contains(['/', '\\', '\0']),
        "{id:?}: more than one segment"
    );
    assert!(id.is_ascii(), "{id:?}");
}
