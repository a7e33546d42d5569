//! A container's environment from `env` and `envFrom`, as the kubelet builds it:
//! image env, then `envFrom` in order, then `env` in order, each `value` expanded
//! against the variables defined before it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::command::expand;

/// The data of the ConfigMaps and Secrets a container refers to (`None`: not found).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

/// Addresses of the pod, for `status.podIP` / `status.hostIP`.
#[derive(Debug, Clone)]
pub struct PodAddrs {
    pub pod_ip: String,
    pub host_ip: String,
}

/// Names of the ConfigMaps and Secrets the container's environment reads.
pub fn referenced(c: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for e in c.env_from.iter().flatten() {
        if let Some(r) = &e.config_map_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &e.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (cms, secrets)
}

/// `metadata.labels['k']` → ("metadata.labels", Some("k")).
fn split_subscript(path: &str) -> (&str, Option<&str>) {
    match path.split_once('[') {
        Some((head, rest)) => {
            let key = rest
                .trim_end_matches(']')
                .trim_matches(|c| c == '\'' || c == '"');
            (head, Some(key))
        }
        None => (path, None),
    }
}

fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a downward-API field path.
pub fn field_value(pod: &Pod, path: &str, addrs: &PodAddrs) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let empty = BTreeMap::new();
    let (head, key) = split_subscript(path);
    let pick = |m: Option<&BTreeMap<String, String>>| -> String {
        let m = m.unwrap_or(&empty);
        match key {
            Some(k) => m.get(k).cloned().unwrap_or_default(),
            None => format_map(m),
        }
    };
    Ok(match head {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => pick(meta.labels.as_ref()),
        "metadata.annotations" => pick(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => addrs.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => addrs.host_ip.clone(),
        other => return Err(format!("unsupported fieldRef fieldPath {other:?}")),
    })
}

struct EnvList {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn as_map(&self) -> HashMap<String, String> {
        self.vars.iter().cloned().collect()
    }
}

fn lookup<'a>(
    kind: &str,
    all: &'a HashMap<String, Option<BTreeMap<String, String>>>,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<&'a BTreeMap<String, String>>, String> {
    match all.get(name).and_then(Option::as_ref) {
        Some(data) => Ok(Some(data)),
        None if optional => Ok(None),
        None => Err(format!("{kind} \"{name}\" not found in namespace {ns}")),
    }
}

/// The container's environment, in definition order. An error is the message of a
/// `CreateContainerConfigError`.
pub fn resolve(
    c: &Container,
    pod: &Pod,
    addrs: &PodAddrs,
    sources: &Sources,
    image_env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut list = EnvList {
        vars: Vec::new(),
        index: HashMap::new(),
    };
    for (k, v) in image_env {
        list.set(k.clone(), v.clone());
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let data = if let Some(r) = &from.config_map_ref {
            let opt = r.optional.unwrap_or(false);
            lookup("configmap", &sources.config_maps, ns, &r.name, opt)?
        } else if let Some(r) = &from.secret_ref {
            let opt = r.optional.unwrap_or(false);
            lookup("secret", &sources.secrets, ns, &r.name, opt)?
        } else {
            None
        };
        for (k, v) in data.into_iter().flatten() {
            list.set(format!("{prefix}{k}"), v.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => Some(expand(e.value.as_deref().unwrap_or(""), &list.as_map())),
            Some(from) => value_from(from, pod, addrs, sources, ns)?,
        };
        if let Some(v) = value {
            list.set(e.name.clone(), v);
        }
    }
    Ok(list.vars)
}

fn value_from(
    from: &k8s_openapi::api::core::v1::EnvVarSource,
    pod: &Pod,
    addrs: &PodAddrs,
    sources: &Sources,
    ns: &str,
) -> Result<Option<String>, String> {
    if let Some(r) = &from.field_ref {
        return field_value(pod, &r.field_path, addrs).map(Some);
    }
    let (kind, all, name, key, optional) = if let Some(r) = &from.secret_key_ref {
        ("secret", &sources.secrets, &r.name, &r.key, r.optional)
    } else if let Some(r) = &from.config_map_key_ref {
        (
            "configmap",
            &sources.config_maps,
            &r.name,
            &r.key,
            r.optional,
        )
    } else if let Some(r) = &from.resource_field_ref {
        return Err(format!(
            "resourceFieldRef {:?} is not supported by the local kubelet",
            r.resource
        ));
    } else {
        return Ok(None);
    };
    let optional = optional.unwrap_or(false);
    match lookup(kind, all, ns, name, optional)? {
        None => Ok(None),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(format!(
                "couldn't find key {key} in {} {ns}/{name}",
                if kind == "secret" {
                    "Secret"
                } else {
                    "ConfigMap"
                }
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector,
        SecretEnvSource, SecretKeySelector,
    };

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "labels": {"app": "join", "tier": "x"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": []}
        }))
        .expect("pod")
    }

    fn addrs() -> PodAddrs {
        PodAddrs {
            pod_ip: "127.0.0.7".into(),
            host_ip: "127.0.0.1".into(),
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from(name: &str, src: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(src),
        }
    }

    fn field(path: &str) -> EnvVarSource {
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }
    }

    fn secret_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
        EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.into(),
                key: key.into(),
                optional,
            }),
            ..EnvVarSource::default()
        }
    }

    fn sources() -> Sources {
        let data = |kv: &[(&str, &str)]| {
            Some(kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())
        };
        Sources {
            config_maps: HashMap::from([("cm".into(), data(&[("A", "from-cm"), ("B", "b")]))]),
            secrets: HashMap::from([
                ("s".into(), data(&[("password", "hunter2")])),
                ("gone".into(), None),
            ]),
        }
    }

    #[test]
    fn env_from_then_env_with_expansion_of_earlier_variables() {
        let c = Container {
            env_from: Some(vec![
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "cm".into(),
                        optional: None,
                    }),
                    ..EnvFromSource::default()
                },
                EnvFromSource {
                    prefix: Some("S_".into()),
                    secret_ref: Some(SecretEnvSource {
                        name: "s".into(),
                        optional: None,
                    }),
                    ..EnvFromSource::default()
                },
            ]),
            env: Some(vec![
                from("POD_IP", field("status.podIP")),
                var("LISTEN", "$(POD_IP):9249"),
                var("A", "override"),
                from("PW", secret_key("s", "password", None)),
                from("APP", field("metadata.labels['app']")),
                var("LATER", "$(UNDEFINED_YET)"),
            ]),
            ..Container::default()
        };
        let env = resolve(&c, &pod(), &addrs(), &sources(), &BTreeMap::new()).expect("resolves");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("override"));
        assert_eq!(get("B"), Some("b"));
        assert_eq!(get("S_password"), Some("hunter2"));
        assert_eq!(get("LISTEN"), Some("127.0.0.7:9249"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("APP"), Some("join"));
        assert_eq!(get("LATER"), Some("$(UNDEFINED_YET)"));
    }

    #[test]
    fn missing_sources_fail_unless_optional() {
        let c = |src| Container {
            env: Some(vec![from("X", src)]),
            ..Container::default()
        };
        let run = |src| resolve(&c(src), &pod(), &addrs(), &sources(), &BTreeMap::new());
        let err = run(secret_key("gone", "k", None)).expect_err("missing secret");
        assert!(err.contains("\"gone\" not found"), "{err}");
        let err = run(secret_key("s", "nokey", Some(false))).expect_err("missing key");
        assert!(
            err.contains("couldn't find key nokey in Secret ns/s"),
            "{err}"
        );
        let env = run(secret_key("gone", "k", Some(true))).expect("optional secret");
        assert!(env.is_empty());
        let env = run(secret_key("s", "nokey", Some(true))).expect("optional key");
        assert!(env.is_empty());
    }

    #[test]
    fn downward_api_fields_resolve() {
        let p = pod();
        let a = addrs();
        let f = |path: &str| field_value(&p, path, &a).expect("field");
        assert_eq!(f("metadata.name"), "p");
        assert_eq!(f("metadata.namespace"), "ns");
        assert_eq!(f("metadata.uid"), "u1");
        assert_eq!(f("spec.nodeName"), "n1");
        assert_eq!(f("spec.serviceAccountName"), "sa");
        assert_eq!(f("status.hostIP"), "127.0.0.1");
        assert_eq!(f("metadata.labels"), "app=\"join\"\ntier=\"x\"");
        assert_eq!(f("metadata.annotations['none']"), "");
        assert!(field_value(&p, "spec.bogus", &a).is_err());
    }
}
