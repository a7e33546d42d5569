//! The admin API's request bodies and path parameters (see
//! `docs/runtime-admin-api.md`): `POST /v1/savepoints` and the savepoint ids
//! of `/v1/savepoints/{id}`. The server is the runtime's (`control::admin`).

use serde::Deserialize;

/// The body of `POST /v1/savepoints`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointRequest {
    #[serde(default)]
    pub stop: bool,
    #[serde(default)]
    pub id: Option<String>,
}

/// Parses the body of `POST /v1/savepoints`: empty (only whitespace) asks for
/// the defaults; the error is the message of a 400 answer.
pub fn parse_savepoint_request(body: &[u8]) -> Result<SavepointRequest, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SavepointRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| format!("body: expected {{\"stop\": bool, \"id\": string}}: {e}"))
}

/// Savepoint ids become a directory name in the savepoint location.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The id a request names, or the one it gets (`sp-<now_ms>`), checked; the
/// error is the message of a 400 answer.
pub fn savepoint_id(req: &SavepointRequest, now_ms: i64) -> Result<String, String> {
    let id = req.id.clone().unwrap_or_else(|| format!("sp-{now_ms}"));
    if valid_id(&id) {
        Ok(id)
    } else {
        Err(format!(
            "savepoint id {id:?}: 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoint_ids_are_safe_directory_names() {
        for ok in ["sp-1", "upgrade.7", "A_b-9"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "sp 1", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn an_empty_body_asks_for_the_defaults_and_unknown_fields_are_refused() {
        assert_eq!(
            parse_savepoint_request(b" \n"),
            Ok(SavepointRequest::default())
        );
        let r = parse_savepoint_request(br#"{"stop":true,"id":"up-1"}"#).expect("valid");
        assert!(r.stop);
        assert_eq!(savepoint_id(&r, 5).as_deref(), Ok("up-1"));
        let e = parse_savepoint_request(br#"{"stop":true,"force":1}"#).expect_err("unknown");
        assert!(e.starts_with("body: expected"), "{e}");
        assert_eq!(
            savepoint_id(&SavepointRequest::default(), 7).as_deref(),
            Ok("sp-7")
        );
    }
}
