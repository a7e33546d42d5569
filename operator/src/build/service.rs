//! The headless Service that gives the runtime pods stable DNS names
//! (`<job>-<ordinal>.<job>.<namespace>.svc`), required by the StatefulSet.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{
    ADMIN_PORT, ADMIN_PORT_NAME, JobRef, owned_meta, selector_labels, service_name, stamp,
};
use crate::error::Result;

pub fn build(job: &JobRef<'_>) -> Result<Service> {
    let name = service_name(job.name);
    let object = job.object("Service", &name);
    let svc = Service {
        metadata: owned_meta(job, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Peers must resolve each other while starting (before they are ready).
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(job.name)),
            ports: Some(vec![ServicePort {
                name: Some(ADMIN_PORT_NAME.to_owned()),
                port: ADMIN_PORT,
                target_port: Some(IntOrString::String(ADMIN_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    stamp(svc, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support;

    #[test]
    fn service_is_headless_and_selects_the_job_pods() {
        let job = test_support::job("clicks");
        let svc = build(&JobRef::new(&job).expect("meta")).expect("builds");
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.selector, Some(selector_labels("clicks")));
        let ports = spec.ports.expect("ports");
        assert_eq!(ports[0].port, ADMIN_PORT);
        assert_eq!(ports[0].name.as_deref(), Some("admin"));
    }
}
