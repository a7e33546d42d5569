//! The operator's admin-token key and the per-job admin tokens derived from it.
//!
//! Each job's token is HMAC-SHA256(key, namespace/name/uid), so the operator never
//! reads a job's token Secret: it only creates it (a `create` answers with what was
//! sent, an `AlreadyExists` with nothing). A re-created Secret of the same job holds
//! the same token, so operator and pods agree without a restart. The key lives in
//! one Secret of the operator's own namespace, read by name (`resourceNames` in the
//! chart) and created with a random key when missing. Design and rotation:
//! docs/operations.md ("The admin token").

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Error as KubeError};
use rand::Rng;

use crate::error::{Error, ObjectName, Result};

/// The key's data key in its Secret.
pub const KEY_DATA: &str = "key";
/// Keys shorter than this are refused (HMAC-SHA256 wants at least 32 bytes).
pub const MIN_KEY_BYTES: usize = 32;
/// Default name of the key Secret (the chart sets `<fullname>-admin-token-key`).
pub const DEFAULT_KEY_SECRET: &str = "streamjoin-operator-admin-token-key";
/// How long a read key is used before the Secret is read again (picks up a rotation).
const KEY_TTL: Duration = Duration::from_secs(30);
/// Separates this use of the key from any other.
const CONTEXT: &[u8] = b"streamjoin.dev/admin-token/v1";

/// A key of at least [`MIN_KEY_BYTES`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(Vec<u8>);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(..)")
    }
}

impl AdminKey {
    pub fn new(bytes: Vec<u8>) -> std::result::Result<Self, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key has {} bytes, at least {MIN_KEY_BYTES} are needed",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// 32 random bytes from the OS-seeded generator.
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::rng().random();
        Self(bytes.to_vec())
    }

    /// The admin token of one job: lowercase hex of the HMAC of the job's identity.
    /// Each field is length-prefixed, so no two identities share an input.
    pub fn token(&self, namespace: &str, name: &str, uid: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(CONTEXT);
        for field in [namespace, name, uid] {
            ctx.update(&(field.len() as u64).to_be_bytes());
            ctx.update(field.as_bytes());
        }
        ctx.sign()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The key Secret holding this key.
    pub fn secret(&self, namespace: &str, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        crate::build::MANAGED_BY.to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some([(KEY_DATA.to_owned(), ByteString(self.0.clone()))].into()),
            ..Secret::default()
        }
    }

    /// The key in a key Secret.
    pub fn from_secret(secret: &Secret) -> std::result::Result<Self, String> {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_DATA))
            .ok_or_else(|| format!("no `{KEY_DATA}` in its data"))?;
        Self::new(data.0.clone())
    }
}

/// Where the key is and the key last read.
pub struct AdminKeys {
    source: Source,
    cached: Mutex<Option<(AdminKey, Instant)>>,
}

enum Source {
    Fixed(AdminKey),
    Secret {
        client: Client,
        namespace: String,
        name: String,
    },
}

impl AdminKeys {
    /// A key that never changes (tests).
    pub fn fixed(key: AdminKey) -> Self {
        Self {
            source: Source::Fixed(key),
            cached: Mutex::new(None),
        }
    }

    /// The key in Secret `namespace/name`, created with a random key when missing.
    pub fn in_secret(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            source: Source::Secret {
                client,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            cached: Mutex::new(None),
        }
    }

    /// The current key: the cached one for [`KEY_TTL`], then the Secret again.
    pub async fn current(&self) -> Result<AdminKey> {
        let (client, namespace, name) = match &self.source {
            Source::Fixed(k) => return Ok(k.clone()),
            Source::Secret {
                client,
                namespace,
                name,
            } => (client, namespace, name),
        };
        if let Some((k, at)) = self.cached.lock().ok().and_then(|c| c.clone())
            && at.elapsed() < KEY_TTL
        {
            return Ok(k);
        }
        let key = read_or_create(client, namespace, name).await?;
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((key.clone(), Instant::now()));
        }
        Ok(key)
    }
}

async fn read_or_create(client: &Client, namespace: &str, name: &str) -> Result<AdminKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let object = ObjectName::new("Secret", namespace, name);
    let err = |source| Error::Apply {
        object: object.clone(),
        source: Box::new(source),
    };
    let found = match api.get_opt(name).await.map_err(err)? {
        Some(s) => s,
        None => {
            let key = AdminKey::random();
            match api
                .create(&PostParams::default(), &key.secret(namespace, name))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %object, "created the admin-token key");
                    return Ok(key);
                }
                // Another replica created it first: use theirs.
                Err(KubeError::Api(e)) if e.code == 409 => api.get(name).await.map_err(err)?,
                Err(e) => return Err(err(e)),
            }
        }
    };
    AdminKey::from_secret(&found).map_err(|reason| Error::Build {
        object,
        reason: format!(
            "the admin-token key Secret is unusable: {reason}; delete it and the operator creates a new key"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> AdminKey {
        AdminKey::new(vec![b; 32]).expect("32 bytes")
    }

    #[test]
    fn a_job_token_is_stable_and_differs_per_job_uid_and_key() {
        let k = key(1);
        let t = k.token("streams", "clicks", "uid-1");
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(t, key(1).token("streams", "clicks", "uid-1"));
        assert_ne!(
            t,
            k.token("streams", "clicks", "uid-2"),
            "a new job of the same name"
        );
        assert_ne!(t, k.token("payments", "clicks", "uid-1"));
        assert_ne!(t, k.token("streams", "views", "uid-1"));
        assert_ne!(
            t,
            key(2).token("streams", "clicks", "uid-1"),
            "a rotated key"
        );
        // Length prefixes: moving a character between fields changes the token.
        assert_ne!(k.token("ab", "c", "u"), k.token("a", "bc", "u"));
    }

    #[test]
    fn the_token_is_the_hmac_sha256_of_the_length_prefixed_identity() {
        // Known answer, computed with Python's hmac: key 32 × 0x07, message CONTEXT
        // then each of "ns", "job", "uid" after its length as a big-endian u64.
        assert_eq!(
            key(7).token("ns", "job", "uid"),
            "eeb7d0ddf8748b1f56f2baf7d79ba445b2cf103c29b5e01ff5ced1a45b2588d9"
        );
    }

    #[test]
    fn short_or_missing_keys_are_refused_and_a_key_secret_round_trips() {
        assert!(AdminKey::new(vec![0; 31]).is_err());
        let k = AdminKey::random();
        assert_ne!(k, AdminKey::random());
        let s = k.secret("ops", "key");
        assert_eq!(s.metadata.namespace.as_deref(), Some("ops"));
        assert_eq!(AdminKey::from_secret(&s), Ok(k));
        assert!(AdminKey::from_secret(&Secret::default()).is_err());
        assert!(
            !format!("{:?}", key(3)).contains('3'),
            "Debug hides the key"
        );
    }
}
