//! The per-job Secret holding the runtime admin API token, derived from the
//! operator's key (`admin_key.rs`). Created by the operator (create only: it never
//! reads it back), mounted into the pods, and used by the operator for the admin
//! API's mutating calls.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::meta::{JobRef, admin_secret_name, owned_meta};
use crate::build::statefulset::ADMIN_TOKEN_KEY;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support;

    #[test]
    fn the_secret_is_owned_immutable_and_holds_the_token() {
        let a = "0123abcd";
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let s = build(&r, a);
        assert_eq!(s.metadata.name.as_deref(), Some("clicks-admin-token"));
        assert_eq!(s.immutable, Some(true));
        assert_eq!(s.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        let data = s.data.as_ref().and_then(|d| d.get(ADMIN_TOKEN_KEY));
        assert_eq!(data.map(|b| b.0.as_slice()), Some(a.as_bytes()));
    }
}
