//! The S3-compatible store that `scripts/s3.sh up` starts (versitygw on 127.0.0.1):
//! its address and credentials from `STREAMJOIN_S3_*`, one `AmazonS3` per bucket,
//! and bucket creation, for which object_store has no call (a SigV4-signed
//! `PUT /bucket`, signed by object_store's own `AwsAuthorizer`); the savepoint
//! store's settings for it, and bytes to fill objects with.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use streamjoin_api::SavepointsSpec;
use streamjoin_runtime::durability::location::{ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY};
use streamjoin_runtime::durability::savepoint::StoreSettings;

/// Where the store is and who the tests are to it.
pub struct S3Env {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

const HOW_TO_START: &str = "run `scripts/s3.sh up && eval \"$(scripts/s3.sh env)\"` first";

impl S3Env {
    /// The store from the environment. Outside CI a missing store skips the test
    /// (None, with a SKIPPED line); under `CI=true` it fails it.
    pub fn from_env(test: &str) -> Option<Self> {
        let Some(endpoint) = std::env::var("STREAMJOIN_S3_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: STREAMJOIN_S3_ENDPOINT is unset under CI=true; {HOW_TO_START}");
            }
            eprintln!("SKIPPED {test}: STREAMJOIN_S3_ENDPOINT is unset; {HOW_TO_START}");
            return None;
        };
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{test}: STREAMJOIN_S3_ENDPOINT is set but {name} is not")
            })
        };
        Some(Self {
            endpoint,
            access_key_id: var("STREAMJOIN_S3_ACCESS_KEY_ID"),
            secret_access_key: var("STREAMJOIN_S3_SECRET_ACCESS_KEY"),
            region: std::env::var("STREAMJOIN_S3_REGION")
                .unwrap_or_else(|_| "us-east-1".to_owned()),
        })
    }

    /// A client of `bucket` as the runtime would configure one for a local
    /// endpoint: path-style requests over plain HTTP, static credentials.
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        // Client options first: setting them replaces the whole set, allow_http included.
        AmazonS3Builder::new()
            .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(60)))
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region(&self.region)
            .with_bucket_name(bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            // A failing server shows within seconds, not after the default three minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
            })
    }

    pub fn store(&self, bucket: &str) -> AmazonS3 {
        self.builder(bucket)
            .build()
            .unwrap_or_else(|e| panic!("building the S3 client of bucket {bucket}: {e}"))
    }

    /// Savepoint store settings as the runtime builds them from a spec with this
    /// store's `endpoint` and `region` and `pathStyle: true`, with the
    /// credential variables looked up in `vars`.
    pub fn savepoint_settings_with(&self, vars: HashMap<&'static str, String>) -> StoreSettings {
        StoreSettings::from_spec(&SavepointsSpec {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            path_style: Some(true),
            ..SavepointsSpec::default()
        })
        .with_env(move |name| vars.get(name).cloned())
    }

    /// The savepoint store settings with this store's key pair.
    pub fn savepoint_settings(&self) -> StoreSettings {
        self.savepoint_settings_with(self.savepoint_env())
    }

    /// This store's key pair in the variables a pod gets from its Secret.
    pub fn savepoint_env(&self) -> HashMap<&'static str, String> {
        savepoint_keys(&self.access_key_id, &self.secret_access_key)
    }

    /// A new bucket of its own for one test: `sj-<tag>-<pid>-<time>-<n>`.
    pub fn new_bucket(&self, tag: &str) -> String {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "sj-{tag}-{}-{:x}-{}",
            std::process::id(),
            nanos % (1 << 40),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        assert!(
            name.len() <= 63,
            "bucket name {name} is longer than S3 allows"
        );
        self.create_bucket(&name);
        name
    }

    /// `PUT /<bucket>` (CreateBucket), signed with SigV4.
    pub fn create_bucket(&self, bucket: &str) {
        let url = format!("{}/{bucket}", self.endpoint.trim_end_matches('/'));
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = "PUT".parse().expect("PUT is a method");
        *request.uri_mut() = url
            .parse()
            .unwrap_or_else(|e| panic!("bucket URL {url}: {e}"));
        let credential = AwsCredential {
            key_id: self.access_key_id.clone(),
            secret_key: self.secret_access_key.clone(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .unwrap_or_else(|e| panic!("signing the creation of bucket {bucket}: {e}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut put = agent.put(&url);
        for (name, value) in request.headers() {
            let value = value.to_str().expect("SigV4 headers are ASCII");
            put = put.header(name.as_str(), value);
        }
        let mut response = put
            .send_empty()
            .unwrap_or_else(|e| panic!("creating bucket {bucket} at {url}: {e}"));
        let status = response.status();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        assert!(
            status.is_success(),
            "creating bucket {bucket}: HTTP {status}: {body}"
        );
    }
}

/// The whole object at `path`, as a test reads it back.
/// The keys under `prefix` of `bucket`, listed from the server, sorted.
pub async fn keys(s3: &S3Env, bucket: &str, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let prefix = object_store::path::Path::from(prefix);
    let mut keys: Vec<String> = s3
        .store(bucket)
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("listing {bucket}/{prefix}: {e}"));
    keys.sort();
    keys
}

pub async fn read_back(store: &AmazonS3, path: &object_store::path::Path) -> Vec<u8> {
    use object_store::ObjectStoreExt;
    let got = store.get(path).await.expect("get");
    got.bytes().await.expect("reading the body").to_vec()
}

/// The credential variables of a pod with key `id` and secret `secret`.
pub fn savepoint_keys(id: &str, secret: &str) -> HashMap<&'static str, String> {
    HashMap::from([
        (ENV_S3_ACCESS_KEY_ID, id.to_owned()),
        (ENV_S3_SECRET_ACCESS_KEY, secret.to_owned()),
    ])
}

/// `len` bytes that differ from seed to seed and along each run (xorshift), so
/// a part or file stored twice, out of order or cut short shows.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (seed + 1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
