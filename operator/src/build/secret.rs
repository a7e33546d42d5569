//! The per-job Secret holding the runtime admin API token. Created once by the
//! operator (never rewritten, so the token the pods read stays valid), mounted into
//! the pods, and used by the operator for the admin API's mutating calls.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;

use super::meta::{JobRef, admin_secret_name, owned_meta};
use crate::build::statefulset::ADMIN_TOKEN_KEY;

/// A fresh random token: 32 bytes from the OS-seeded generator, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn build(job: &JobRef<'_>, token: &str) -> Secret {
    Secret {
        metadata: owned_meta(job, admin_secret_name(job.name)),
        type_: Some("Opaque".to_owned()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The token stored in a Secret built by [`build`].
pub fn token_of(secret: &Secret) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(ADMIN_TOKEN_KEY)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support;

    #[test]
    fn tokens_are_random_and_the_secret_is_owned_immutable_and_readable() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let s = build(&r, &a);
        assert_eq!(s.metadata.name.as_deref(), Some("clicks-admin-token"));
        assert_eq!(s.immutable, Some(true));
        assert_eq!(s.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(token_of(&s).as_deref(), Some(a.as_str()));
    }
}
