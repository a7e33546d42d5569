//! One namespace per test, deleted when the test ends (kept when it failed and
//! `STREAMJOIN_KEEP_NAMESPACES=1`, to look at afterwards).

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use super::kubectl::Kubectl;

pub struct TestNamespace {
    pub name: String,
    kubectl: Kubectl,
}

/// A DNS label from a test name: lower case, `-` for anything else, a random suffix.
pub fn namespace_name(test: &str) -> String {
    let mut base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(40);
    let base = base.trim_matches('-');
    format!("{base}-{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

impl TestNamespace {
    pub async fn create(client: &Client, kubectl: &Kubectl, test: &str) -> TestNamespace {
        let name = namespace_name(test);
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("streamjoin.dev/test".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace {
            name,
            kubectl: kubectl.clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking()
            && std::env::var("STREAMJOIN_KEEP_NAMESPACES").is_ok_and(|v| v == "1")
        {
            eprintln!("namespace kept: {}", self.name);
            return;
        }
        // The operator of the test is gone by now: a job it never finalized would
        // keep the namespace Terminating for ever.
        if let Ok(names) = self
            .kubectl
            .try_run(&["get", "sjj", "-n", &self.name, "-o", "name"], None)
        {
            for job in names.lines().filter(|l| !l.is_empty()) {
                let _ = self.kubectl.try_run(
                    &[
                        "patch",
                        job,
                        "-n",
                        &self.name,
                        "--type",
                        "merge",
                        "-p",
                        r#"{"metadata":{"finalizers":null}}"#,
                    ],
                    None,
                );
            }
        }
        // Not waited for: the namespace controller finishes in the background.
        if let Err(e) = self.kubectl.try_run(
            &[
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ],
            None,
        ) {
            eprintln!("deleting namespace {}: {e}", self.name);
        }
    }
}
