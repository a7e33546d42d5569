//! README "Try the operator on a local cluster": the commands it quotes
//! (`scripts/local-demo.sh up`, then watching the job) end with the example job
//! Ready. The demo runs in a namespace and on a node of its own, so it can run
//! beside the other cluster tests.

use crate::cluster;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kube::api::Api;
use streamjoin_api::StreamJoinJob;

use cluster::example::JOB;
use cluster::kubelet::release_dir;
use cluster::namespace::namespace_name;
use cluster::operator::repo_path;
use cluster::wait::try_poll;

/// The fenced block of the README's section.
fn readme_commands() -> String {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Try the operator on a local cluster"))
        .expect("README has the section \"Try the operator on a local cluster\"");
    section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```sh block in the section")
        .to_owned()
}

/// `scripts/local-demo.sh down` when the test ends, however it ends.
struct Demo {
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Demo {
    fn run(&self, arg: &str) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(repo_path("scripts/local-demo.sh"))
            .arg(arg)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .map_err(|e| format!("running scripts/local-demo.sh {arg}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/local-demo.sh {arg} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Err(e) = self.run("down") {
            eprintln!("{e}");
        }
    }
}

#[tokio::test]
async fn readme_local_demo_ends_with_the_example_job_ready() {
    const TEST: &str = "readme_local_demo_ends_with_the_example_job_ready";
    let commands = readme_commands();
    for quoted in [
        "scripts/local-demo.sh up",
        "get sjj -n streaming -w",
        "scripts/local-demo.sh down",
    ] {
        assert!(
            commands.contains(quoted),
            "the README's commands lack {quoted:?}:\n{commands}"
        );
    }
    let Some(client) = cluster::client(TEST).await else {
        return;
    };

    let dir = tempfile::Builder::new()
        .prefix("local-demo-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("demo dir")
        .keep();
    let ns = namespace_name("local-demo");
    let release = release_dir();
    let mut env = vec![
        ("STREAMJOIN_DEMO_DIR".to_owned(), dir.display().to_string()),
        ("STREAMJOIN_DEMO_NAMESPACE".to_owned(), ns.clone()),
        ("STREAMJOIN_DEMO_NO_BUILD".to_owned(), "1".to_owned()),
        (
            "STREAMJOIN_DEMO_NODE".to_owned(),
            format!("demo-{}", &ns[ns.len() - 6..]),
        ),
        (
            "STREAMJOIN_DEMO_POD_IPS".to_owned(),
            format!("127.0.{}.0/24", 200 + rand::random::<u32>() % 50),
        ),
    ];
    if let Some(target) = release.parent() {
        env.push(("CARGO_TARGET_DIR".to_owned(), target.display().to_string()));
    }
    let demo = Demo { env, dir };
    demo.run("up").unwrap_or_else(|e| panic!("{e}"));

    // What `kubectl get sjj -w` shows the user: the job reaching Ready.
    let jobs: Api<StreamJoinJob> = Api::namespaced(client, &ns);
    let ready = try_poll(Duration::from_secs(300), || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.get(JOB).await.map_err(|e| e.to_string())?;
            let st = job.status.ok_or("no status")?;
            let ready = st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                Ok(())
            } else {
                Err(format!("{:?}: {:?}", st.phase, st.conditions))
            }
        }
    })
    .await;
    if let Err(last) = ready {
        panic!(
            "the demo's job did not get Ready within 300 s: {last}\noperator log:\n{}\nkubelet log:\n{}",
            demo.log("operator.log"),
            demo.log("kubelet.log")
        );
    }
}
