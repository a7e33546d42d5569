//! The savepoint store's credentials as pod environment: each key of
//! `spec.savepoints.credentials.secretRef` becomes a `STREAMJOIN_SAVEPOINT_*`
//! variable through `valueFrom.secretKeyRef`. The operator only names the Secret;
//! it never reads its data (the kubelet does, with the pod's rights).

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use streamjoin_api::SavepointsSpec;

/// (variable, Secret key, optional) per object-store scheme; the runtime's names.
const S3: [(&str, &str, bool); 3] = [
    (
        "STREAMJOIN_SAVEPOINT_AWS_ACCESS_KEY_ID",
        "AWS_ACCESS_KEY_ID",
        false,
    ),
    (
        "STREAMJOIN_SAVEPOINT_AWS_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
        false,
    ),
    (
        "STREAMJOIN_SAVEPOINT_AWS_SESSION_TOKEN",
        "AWS_SESSION_TOKEN",
        true,
    ),
];
const GS: [(&str, &str, bool); 1] = [(
    "STREAMJOIN_SAVEPOINT_GCS_SERVICE_ACCOUNT_KEY",
    "service-account.json",
    false,
)];
const AZ: [(&str, &str, bool); 2] = [
    (
        "STREAMJOIN_SAVEPOINT_AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_NAME",
        false,
    ),
    (
        "STREAMJOIN_SAVEPOINT_AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_ACCOUNT_KEY",
        false,
    ),
];

/// Prefix of every variable this module sets; user env entries with it are dropped
/// so that a pod template cannot shadow the Secret's values.
pub const PREFIX: &str = "STREAMJOIN_SAVEPOINT_";

fn keys_for(location: &str) -> &'static [(&'static str, &'static str, bool)] {
    match location.split_once("://").map(|(scheme, _)| scheme) {
        Some("s3") => &S3,
        Some("gs") => &GS,
        Some("az") => &AZ,
        _ => &[],
    }
}

/// The variables for the spec's store: none without credentials (ambient identity)
/// or for a file location.
pub fn savepoint_env(spec: &SavepointsSpec) -> Vec<EnvVar> {
    let (Some(location), Some(creds)) = (&spec.location, &spec.credentials) else {
        return Vec::new();
    };
    keys_for(location)
        .iter()
        .map(|(var, key, optional)| EnvVar {
            name: (*var).to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: creds.secret_ref.name.clone(),
                    key: (*key).to_owned(),
                    optional: Some(*optional),
                }),
                ..EnvVarSource::default()
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamjoin_api::{LocalSecretRef, SavepointCredentials};

    fn store(location: &str, secret: Option<&str>) -> SavepointsSpec {
        SavepointsSpec {
            location: Some(location.into()),
            credentials: secret.map(|name| SavepointCredentials {
                secret_ref: LocalSecretRef { name: name.into() },
            }),
            ..SavepointsSpec::default()
        }
    }

    fn refs(env: &[EnvVar]) -> Vec<(String, String, String, Option<bool>)> {
        env.iter()
            .map(|e| {
                let r = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.clone())
                    .expect("a secretKeyRef, never a literal value");
                assert!(e.value.is_none());
                (e.name.clone(), r.name, r.key, r.optional)
            })
            .collect()
    }

    #[test]
    fn s3_credentials_come_from_the_secret_with_an_optional_session_token() {
        let env = savepoint_env(&store("s3://bucket/sp", Some("store")));
        let s = |v: &str, k: &str, o| (v.to_owned(), "store".to_owned(), k.to_owned(), Some(o));
        assert_eq!(
            refs(&env),
            [
                s(
                    "STREAMJOIN_SAVEPOINT_AWS_ACCESS_KEY_ID",
                    "AWS_ACCESS_KEY_ID",
                    false
                ),
                s(
                    "STREAMJOIN_SAVEPOINT_AWS_SECRET_ACCESS_KEY",
                    "AWS_SECRET_ACCESS_KEY",
                    false
                ),
                s(
                    "STREAMJOIN_SAVEPOINT_AWS_SESSION_TOKEN",
                    "AWS_SESSION_TOKEN",
                    true
                ),
            ]
        );
    }

    #[test]
    fn gcs_and_azure_get_their_own_keys() {
        let gs = refs(&savepoint_env(&store("gs://b/p", Some("g"))));
        assert_eq!(gs.len(), 1);
        assert_eq!(gs[0].0, "STREAMJOIN_SAVEPOINT_GCS_SERVICE_ACCOUNT_KEY");
        assert_eq!(gs[0].2, "service-account.json");
        let az = refs(&savepoint_env(&store("az://c/p", Some("a"))));
        let keys: Vec<_> = az.iter().map(|r| (r.2.as_str(), r.3)).collect();
        assert_eq!(
            keys,
            [
                ("AZURE_STORAGE_ACCOUNT_NAME", Some(false)),
                ("AZURE_STORAGE_ACCOUNT_KEY", Some(false))
            ]
        );
        assert!(az.iter().all(|r| r.0.starts_with(PREFIX)));
    }

    #[test]
    fn no_credentials_or_a_file_location_sets_nothing() {
        assert!(savepoint_env(&store("s3://bucket/sp", None)).is_empty());
        assert!(savepoint_env(&store("/savepoints", Some("x"))).is_empty());
        assert!(savepoint_env(&SavepointsSpec::default()).is_empty());
    }
}
