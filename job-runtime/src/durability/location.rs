//! Where savepoints go: a location (`/path`, `file:///path`, `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`) opened as an `object_store`
//! client with the settings of `spec.savepoints` (endpoint, region, path style)
//! and credentials from the environment.
//!
//! Credentials: the operator passes the keys of `savepoints.credentials.secretRef`
//! to the pods as the `STREAMJOIN_SAVEPOINT_*` variables below. Without them
//! each client falls back to its standard environment (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`) and then to the pod's ambient identity (IRSA web identity,
//! Workload Identity / the GCE metadata server, Azure managed identity, EC2
//! instance metadata). Secrets never leave the client: they are not in
//! [`StoreSettings`]' `Debug` and not in any error this module builds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use streamjoin_api::SavepointsSpec;

/// s3://: the access key pair (and an optional session token).
pub const ENV_S3_ACCESS_KEY_ID: &str = "STREAMJOIN_SAVEPOINT_AWS_ACCESS_KEY_ID";
pub const ENV_S3_SECRET_ACCESS_KEY: &str = "STREAMJOIN_SAVEPOINT_AWS_SECRET_ACCESS_KEY";
pub const ENV_S3_SESSION_TOKEN: &str = "STREAMJOIN_SAVEPOINT_AWS_SESSION_TOKEN";
/// gs://: the content of a service-account key file (JSON).
pub const ENV_GCS_SERVICE_ACCOUNT_KEY: &str = "STREAMJOIN_SAVEPOINT_GCS_SERVICE_ACCOUNT_KEY";
/// az://: the storage account and its key.
pub const ENV_AZURE_ACCOUNT_NAME: &str = "STREAMJOIN_SAVEPOINT_AZURE_STORAGE_ACCOUNT_NAME";
pub const ENV_AZURE_ACCOUNT_KEY: &str = "STREAMJOIN_SAVEPOINT_AZURE_STORAGE_ACCOUNT_KEY";

/// A failing store shows within seconds: a refused or unreachable endpoint is
/// retried at most this often and for at most `RETRY_TIMEOUT`.
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, a multipart part included (parts are 8 MiB).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The store settings of `spec.savepoints`, and where credentials are read from.
#[derive(Clone)]
pub struct StoreSettings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    env: EnvLookup,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            path_style: false,
            env: Arc::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
        }
    }
}

impl std::fmt::Debug for StoreSettings {
    // Without the environment: it holds the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl StoreSettings {
    pub fn from_spec(spec: &SavepointsSpec) -> Self {
        Self {
            endpoint: spec.endpoint.clone(),
            region: spec.region.clone(),
            path_style: spec.path_style.unwrap_or(false),
            ..Self::default()
        }
    }

    /// Credentials looked up in `env` instead of the process environment.
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(env);
        self
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }
}

/// An opened location: the client, the prefix inside it, and the location as
/// it may be shown (never with credentials).
pub struct Opened {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: StorePath,
    pub shown: String,
}

/// Why a location cannot be opened, with the location as it may be shown.
#[derive(Debug)]
pub struct OpenError {
    pub shown: String,
    pub reason: String,
}

/// Opens `location` with `settings`. No request is made: a wrong bucket,
/// endpoint or credential shows at the first read or write.
pub fn open(location: &str, settings: &StoreSettings) -> Result<Opened, OpenError> {
    let shown = location.trim_end_matches('/').to_owned();
    let err = |shown: &str, reason: String| OpenError {
        shown: shown.to_owned(),
        reason,
    };
    if !location.contains("://") {
        let path = Path::new(location);
        if !path.is_absolute() {
            return Err(err(
                &shown,
                "a filesystem location must be an absolute path".into(),
            ));
        }
        return open_dir(path, shown);
    }
    let url = url::Url::parse(location).map_err(|e| err(&shown, e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        let mut clean = url.clone();
        // Setting them on a URL that has them cannot fail.
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        return Err(err(
            clean.as_str().trim_end_matches('/'),
            "credentials in the location are refused (they would show in status and logs); use savepoints.credentials".into(),
        ));
    }
    let bucket = url.host_str().unwrap_or_default();
    let prefix = StorePath::from_url_path(url.path()).map_err(|e| err(&shown, e.to_string()))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|()| err(&shown, "not a local file URL".into()))?;
            return open_dir(&dir, shown);
        }
        "s3" | "gs" | "az" if bucket.is_empty() => {
            return Err(err(&shown, "the URL names no bucket".into()));
        }
        "s3" => Arc::new(
            s3(bucket, settings)
                .build()
                .map_err(|e| err(&shown, e.to_string()))?,
        ),
        "gs" => Arc::new(
            gcs(bucket, settings)
                .build()
                .map_err(|e| err(&shown, e.to_string()))?,
        ),
        "az" => Arc::new(
            azure(bucket, settings)
                .build()
                .map_err(|e| err(&shown, e.to_string()))?,
        ),
        other => {
            return Err(err(
                &shown,
                format!(
                    "the {other}:// scheme is not supported; use s3://, gs://, az://, file:// or an absolute path"
                ),
            ));
        }
    };
    if url.scheme() != "s3" && (settings.endpoint.is_some() || settings.region.is_some()) {
        return Err(err(
            &shown,
            "savepoints.endpoint and savepoints.region apply to s3:// locations only".into(),
        ));
    }
    Ok(Opened {
        store,
        prefix,
        shown,
    })
}

fn open_dir(dir: &Path, shown: String) -> Result<Opened, OpenError> {
    let fail = |reason: String| OpenError {
        shown: shown.clone(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    // Cleanup: a deleted savepoint leaves no empty directories behind.
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| fail(e.to_string()))?
        .with_automatic_cleanup(true);
    Ok(Opened {
        store: Arc::new(store),
        prefix: StorePath::default(),
        shown,
    })
}

fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(3),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
}

fn s3(bucket: &str, settings: &StoreSettings) -> AmazonS3Builder {
    // Client options first: setting them replaces the whole set, allow_http included.
    let mut b = AmazonS3Builder::from_env()
        .with_client_options(client_options())
        .with_retry(retry())
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(!settings.path_style);
    if let Some(endpoint) = &settings.endpoint {
        b = b
            .with_endpoint(endpoint)
            // Plain HTTP only when the endpoint says so explicitly.
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &settings.region {
        b = b.with_region(region);
    }
    if let (Some(id), Some(secret)) = (
        settings.var(ENV_S3_ACCESS_KEY_ID),
        settings.var(ENV_S3_SECRET_ACCESS_KEY),
    ) {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(token) = settings.var(ENV_S3_SESSION_TOKEN) {
            b = b.with_token(token);
        }
    }
    b
}

fn gcs(bucket: &str, settings: &StoreSettings) -> GoogleCloudStorageBuilder {
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_client_options(client_options())
        .with_retry(retry())
        .with_bucket_name(bucket);
    if let Some(key) = settings.var(ENV_GCS_SERVICE_ACCOUNT_KEY) {
        b = b.with_service_account_key(key);
    }
    b
}

fn azure(container: &str, settings: &StoreSettings) -> MicrosoftAzureBuilder {
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_client_options(client_options())
        .with_retry(retry())
        .with_container_name(container);
    if let Some(account) = settings.var(ENV_AZURE_ACCOUNT_NAME) {
        b = b.with_account(account);
    }
    if let Some(key) = settings.var(ENV_AZURE_ACCOUNT_KEY) {
        b = b.with_access_key(key);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &'static [(&'static str, &'static str)]) -> StoreSettings {
        StoreSettings::default().with_env(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn cloud_locations_open_with_their_bucket_and_prefix() {
        let s = settings(&[
            (ENV_AZURE_ACCOUNT_NAME, "acct"),
            (ENV_AZURE_ACCOUNT_KEY, "a2V5"),
        ]);
        for (loc, prefix) in [
            ("s3://bucket/a/b/", "a/b"),
            ("s3://bucket", ""),
            ("gs://bucket/sp", "sp"),
            ("az://container/x/y", "x/y"),
        ] {
            let o = open(loc, &s).unwrap_or_else(|e| panic!("{loc}: {}", e.reason));
            assert_eq!(o.prefix.as_ref(), prefix, "{loc}");
            assert_eq!(o.shown, loc.trim_end_matches('/'));
        }
    }

    #[test]
    fn bad_locations_are_refused_with_a_reason_and_no_credentials() {
        let s = StoreSettings::default();
        for (loc, says) in [
            ("relative/dir", "absolute path"),
            ("http://host/x", "not supported"),
            ("s3:///x", "no bucket"),
        ] {
            let e = open(loc, &s)
                .err()
                .unwrap_or_else(|| panic!("{loc} opened"));
            assert!(e.reason.contains(says), "{loc}: {}", e.reason);
            assert!(e.shown.contains(loc.trim_end_matches('/')), "{}", e.shown);
        }
        let e = open("s3://AKID:the-secret@bucket/x", &s)
            .err()
            .expect("credentials in the URL are refused");
        assert!(!e.shown.contains("the-secret") && !e.reason.contains("the-secret"));
        assert!(!e.shown.contains("AKID"), "{}", e.shown);
    }

    #[test]
    fn s3_settings_on_another_scheme_are_refused() {
        let s = StoreSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..settings(&[])
        };
        let e = open("gs://bucket/sp", &s).err().expect("refused");
        assert!(e.reason.contains("s3:// locations only"), "{}", e.reason);
    }

    #[test]
    fn settings_debug_shows_no_credentials() {
        let s = settings(&[(ENV_S3_SECRET_ACCESS_KEY, "the-secret")]);
        assert!(!format!("{s:?}").contains("the-secret"));
    }
}
