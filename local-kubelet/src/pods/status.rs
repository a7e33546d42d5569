//! Pod status from the facts of its containers, as the kubelet computes it.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

/// What the kubelet knows of one container.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: State,
    pub last: Option<Terminated>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

impl Facts {
    pub fn waiting(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: String::new(),
            container_id: None,
            state: State::Waiting {
                reason: reason.to_owned(),
                message: None,
            },
            last: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }
}

pub struct PodFacts<'a> {
    pub restart_policy: &'a str,
    pub init: &'a [Facts],
    pub main: &'a [Facts],
    /// Addresses assigned and volumes made.
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: &'a str,
    pub start_time: Timestamp,
    pub now: Timestamp,
}

/// The pod phase (kubelet `getPhase`).
pub fn phase(policy: &str, init: &[Facts], main: &[Facts]) -> &'static str {
    let init_failed = init.iter().any(|f| {
        matches!(&f.state, State::Terminated(t) if t.exit_code != 0)
            || (matches!(f.state, State::Waiting { .. })
                && f.last.as_ref().is_some_and(|t| t.exit_code != 0))
    });
    if init_failed && policy == "Never" {
        return "Failed";
    }
    if !init.iter().all(Facts::succeeded) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for f in main {
        match &f.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if f.last.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

fn ts(t: Timestamp) -> Time {
    Time(t)
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(ts),
        finished_at: Some(ts(t.finished_at)),
        container_id: t.container_id.clone(),
    }
}

pub fn container_status(f: &Facts) -> ContainerStatus {
    let state = match &f.state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(ts(*started_at)),
            }),
            ..ContainerState::default()
        },
        State::Terminated(t) => ContainerState {
            terminated: Some(terminated(t)),
            ..ContainerState::default()
        },
    };
    ContainerStatus {
        name: f.name.clone(),
        image: f.image.clone(),
        image_id: f.image_id.clone(),
        container_id: f.container_id.clone(),
        ready: f.ready,
        started: Some(f.started),
        restart_count: f.restart_count,
        state: Some(state),
        last_state: Some(f.last.as_ref().map_or_else(ContainerState::default, |t| {
            ContainerState {
                terminated: Some(terminated(t)),
                ..ContainerState::default()
            }
        })),
        ..ContainerStatus::default()
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: (!ok).then(|| reason.map(str::to_owned)).flatten(),
        message: (!ok).then_some(message).flatten(),
        ..PodCondition::default()
    }
}

fn names(fs: &[Facts], pred: impl Fn(&Facts) -> bool) -> Vec<String> {
    fs.iter()
        .filter(|f| pred(f))
        .map(|f| f.name.clone())
        .collect()
}

/// The pod conditions; transition times kept from `previous` when unchanged.
pub fn conditions(
    facts: &PodFacts<'_>,
    phase: &str,
    previous: &[PodCondition],
) -> Vec<PodCondition> {
    let terminal = phase == "Succeeded" || phase == "Failed";
    let uninit = names(facts.init, |f| !f.succeeded());
    let unready = names(facts.main, |f| !f.ready);
    let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let (ready, reason) = if terminal {
        (false, "PodCompleted")
    } else {
        (
            unready.is_empty() && uninit.is_empty(),
            "ContainersNotReady",
        )
    };
    let mut out = vec![
        condition("PodReadyToStartContainers", facts.sandbox_ready, None, None),
        condition(
            "Initialized",
            uninit.is_empty() || terminal,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                uninit.join(" ")
            )),
        ),
        condition("Ready", ready, Some(reason), Some(unready_msg.clone())),
        condition("ContainersReady", ready, Some(reason), Some(unready_msg)),
        condition("PodScheduled", true, None, None),
    ];
    for c in &mut out {
        let prev = previous.iter().find(|p| p.type_ == c.type_);
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(ts(facts.now)),
        };
    }
    out
}

pub fn pod_status(facts: &PodFacts<'_>, previous: &[PodCondition]) -> PodStatus {
    let phase = phase(facts.restart_policy, facts.init, facts.main);
    let ips = facts.pod_ip.clone().map(|ip| vec![PodIP { ip }]);
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions(facts, phase, previous)),
        container_statuses: Some(facts.main.iter().map(container_status).collect()),
        init_container_statuses: (!facts.init.is_empty())
            .then(|| facts.init.iter().map(container_status).collect()),
        pod_ip: facts.pod_ip.clone(),
        pod_ips: ips,
        host_ip: Some(facts.host_ip.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: facts.host_ip.to_owned(),
        }]),
        start_time: Some(ts(facts.start_time)),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("ts")
    }

    fn running(name: &str, ready: bool) -> Facts {
        Facts {
            state: State::Running { started_at: now() },
            ready,
            started: true,
            ..Facts::waiting(name, "img", "")
        }
    }

    fn exited(name: &str, code: i32) -> Terminated {
        let _ = name;
        Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Some(now()),
            finished_at: now(),
            container_id: Some("local://1".into()),
        }
    }

    fn done(name: &str, code: i32) -> Facts {
        Facts {
            state: State::Terminated(exited(name, code)),
            ..Facts::waiting(name, "img", "")
        }
    }

    fn crash_looping(name: &str, code: i32) -> Facts {
        Facts {
            last: Some(exited(name, code)),
            restart_count: 2,
            ..Facts::waiting(name, "img", "CrashLoopBackOff")
        }
    }

    #[test]
    fn phases_follow_the_kubelet_rules() {
        let w = Facts::waiting("a", "img", "ContainerCreating");
        assert_eq!(phase("Always", &[], std::slice::from_ref(&w)), "Pending");
        assert_eq!(phase("Always", &[], &[running("a", false)]), "Running");
        assert_eq!(phase("Always", &[], &[crash_looping("a", 1)]), "Running");
        assert_eq!(
            phase("Never", &[], &[done("a", 0), done("b", 0)]),
            "Succeeded"
        );
        assert_eq!(phase("Never", &[], &[done("a", 0), done("b", 2)]), "Failed");
        assert_eq!(phase("OnFailure", &[], &[done("a", 0)]), "Succeeded");
        assert_eq!(phase("OnFailure", &[], &[crash_looping("a", 1)]), "Running");
        assert_eq!(phase("Always", &[], &[done("a", 0)]), "Running");
        let one = std::slice::from_ref(&w);
        assert_eq!(phase("Always", one, one), "Pending");
        assert_eq!(phase("Never", &[done("i", 1)], one), "Failed");
        assert_eq!(
            phase("Always", &[done("i", 0)], &[running("a", true)]),
            "Running"
        );
    }

    #[test]
    fn ready_needs_every_container_ready_and_keeps_transition_times() {
        let main = [running("a", true), running("b", false)];
        let facts = PodFacts {
            restart_policy: "Always",
            init: &[],
            main: &main,
            sandbox_ready: true,
            pod_ip: Some("127.0.0.2".into()),
            host_ip: "127.0.0.1",
            start_time: now(),
            now: now(),
        };
        let status = pod_status(&facts, &[]);
        let conds = status.conditions.expect("conditions");
        let get = |t: &str| {
            conds
                .iter()
                .find(|c| c.type_ == t)
                .expect("condition")
                .clone()
        };
        assert_eq!(get("Ready").status, "False");
        assert_eq!(
            get("Ready").message.as_deref(),
            Some("containers with unready status: [b]")
        );
        assert_eq!(get("Initialized").status, "True");
        assert_eq!(get("PodReadyToStartContainers").status, "True");
        assert_eq!(status.pod_ips.expect("ips")[0].ip, "127.0.0.2");

        let earlier = Timestamp::from_second(1_700_000_000).expect("ts");
        let mut prev = get("Initialized");
        prev.last_transition_time = Some(Time(earlier));
        let again = conditions(&facts, "Running", &[prev]);
        let init = again
            .iter()
            .find(|c| c.type_ == "Initialized")
            .expect("init");
        assert_eq!(init.last_transition_time, Some(Time(earlier)));
    }

    #[test]
    fn container_status_carries_state_and_last_state() {
        let cs = container_status(&crash_looping("a", 3));
        let waiting = cs.state.and_then(|s| s.waiting).expect("waiting");
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = cs.last_state.and_then(|s| s.terminated).expect("last");
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
        assert_eq!(cs.restart_count, 2);
    }
}
