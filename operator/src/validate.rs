//! Step 1 of the pipeline: is this spec one the operator can act on? The shared
//! rules live in `streamjoin_api::validation` (the twins of the CRD's CEL rules);
//! this adds what only matters on a cluster. An invalid spec never reaches the
//! builders: the job is marked Degraded and its last good children stay as they are.

use streamjoin_api::{StreamJoinJob, Violation};

use crate::build::MAX_NAME_LEN;

/// Every reason the spec cannot be acted on, or `Ok` when it can.
pub fn validate(job: &StreamJoinJob) -> Result<(), Vec<Violation>> {
    let mut out = match job.spec.validate() {
        Ok(()) => Vec::new(),
        Err(v) => v.0,
    };
    let mut fail = |field: &str, message: String| {
        out.push(Violation {
            field: field.to_owned(),
            message,
        })
    };
    let spec = &job.spec;
    if job.metadata.name.as_deref().map_or(0, str::len) > MAX_NAME_LEN {
        fail(
            "(metadata.name)",
            format!(
                "the job name must be at most {MAX_NAME_LEN} characters (it names the StatefulSet and its pods)"
            ),
        );
    }
    if spec.image.trim().is_empty() {
        fail("image", "must name a container image".into());
    }
    if spec.kafka.bootstrap_servers.trim().is_empty() {
        fail("kafka.bootstrapServers", "is required on a cluster".into());
    }
    for (field, topic) in [
        ("inputs.impressions.topic", &spec.inputs.impressions.topic),
        ("inputs.plays.topic", &spec.inputs.plays.topic),
        ("output.topic", &spec.output.topic),
        ("deadLetter.topic", &spec.dead_letter.topic),
    ] {
        if topic.is_empty() {
            fail(field, "is required on a cluster".into());
        }
    }
    if spec.parallelism < 0 {
        fail("parallelism", "must not be negative".into());
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// The violations as one message for a condition or an Event.
pub fn message(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support;

    #[test]
    fn a_complete_job_is_valid() {
        assert_eq!(validate(&test_support::job("clicks")), Ok(()));
    }

    #[test]
    fn missing_topics_and_long_names_are_reported_with_their_fields() {
        let mut job = test_support::job(&"x".repeat(60));
        job.spec.output.topic.clear();
        job.spec.kafka.bootstrap_servers.clear();
        let err = validate(&job).unwrap_err();
        let text = message(&err);
        assert!(text.contains("spec.output.topic: is required"), "{text}");
        assert!(text.contains("spec.kafka.bootstrapServers"), "{text}");
        assert!(text.contains("at most 52 characters"), "{text}");
    }

    #[test]
    fn shared_rules_apply_too() {
        let mut job = test_support::job("clicks");
        job.spec.output.topic = "impressions".into();
        let text = message(&validate(&job).unwrap_err());
        assert!(
            text.contains(streamjoin_api::validation::MSG_OUTPUT_TOPIC),
            "{text}"
        );
    }
}
