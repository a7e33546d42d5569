//! The CEL rules of a StreamJoinJob spec and their messages, defined once: the
//! schema ([`crate::schema`]) puts them into the CRD as `x-kubernetes-validations`,
//! and [`crate::validation`] checks the same rules in Rust with the same messages.

/// One CEL rule with the message shown to the user when it fails.
#[derive(Clone, Copy, Debug)]
pub struct CelRule {
    pub rule: &'static str,
    pub message: &'static str,
}

pub const POSITIVE_DURATION: CelRule = CelRule {
    rule: "!self.matches('^(0+(ms|s|m|h|d))+$')",
    message: "must be a positive duration such as 30s or 4h; zero is not allowed here",
};

pub const MSG_OUTPUT_TOPIC: &str =
    "output.topic must differ from both input topics, or the job would read its own output";
pub const MSG_DEAD_LETTER_TOPIC: &str =
    "deadLetter.topic must differ from the input topics and from output.topic";
pub const MSG_LATE_TOPIC: &str = "lateOutput.topic must differ from the input topics, from output.topic and from deadLetter.topic";
pub const MSG_INPUT_TOPICS: &str = "inputs.impressions.topic and inputs.plays.topic must differ";
pub const MSG_KEY_FIELDS: &str =
    "join.keyFields must name exactly two different fields: the member field, then the title field";
pub const MSG_SASL: &str =
    "kafka.sasl is required when kafka.securityProtocol is SASL_PLAINTEXT or SASL_SSL";
pub const MSG_TLS: &str = "kafka.tls is only used with securityProtocol SSL or SASL_SSL; set the protocol or remove kafka.tls";
pub const MSG_AUTOSCALER_BOUNDS: &str =
    "autoscaler.minParallelism must not exceed autoscaler.maxParallelism";
pub const MSG_AUTOSCALER_ENABLED: &str = "autoscaler.minParallelism and autoscaler.maxParallelism are required when the autoscaler is enabled";
pub const MSG_JOIN_RATIO: &str = "audit.minJoinRatio must not exceed audit.maxJoinRatio";
pub const MSG_RECOVERY_TIMESTAMP: &str =
    "recovery.fromTimestamp is required when recovery.onMissingCheckpoint is timestamp";
pub const MSG_SAVEPOINT_LOCATION: &str = "savepoints.location is required for periodic (savepoints.interval) or manual (savepoints.triggerNonce) savepoints";

pub const SPEC_RULES: &[CelRule] = &[
    CelRule {
        rule: "self.output.topic != self.inputs.impressions.topic && self.output.topic != self.inputs.plays.topic",
        message: MSG_OUTPUT_TOPIC,
    },
    CelRule {
        rule: "self.deadLetter.topic != self.inputs.impressions.topic && self.deadLetter.topic != self.inputs.plays.topic && self.deadLetter.topic != self.output.topic",
        message: MSG_DEAD_LETTER_TOPIC,
    },
    CelRule {
        rule: "!has(self.lateOutput) || (self.lateOutput.topic != self.inputs.impressions.topic && self.lateOutput.topic != self.inputs.plays.topic && self.lateOutput.topic != self.output.topic && self.lateOutput.topic != self.deadLetter.topic)",
        message: MSG_LATE_TOPIC,
    },
];

pub const INPUTS_RULES: &[CelRule] = &[CelRule {
    rule: "self.impressions.topic != self.plays.topic",
    message: MSG_INPUT_TOPICS,
}];

pub const JOIN_RULES: &[CelRule] = &[CelRule {
    rule: "size(self.keyFields) == 2 && self.keyFields[0] != self.keyFields[1]",
    message: MSG_KEY_FIELDS,
}];

pub const KAFKA_RULES: &[CelRule] = &[
    CelRule {
        rule: "!(self.securityProtocol in ['SASL_PLAINTEXT', 'SASL_SSL']) || has(self.sasl)",
        message: MSG_SASL,
    },
    CelRule {
        rule: "!has(self.tls) || self.securityProtocol in ['SSL', 'SASL_SSL']",
        message: MSG_TLS,
    },
];

pub const AUTOSCALER_RULES: &[CelRule] = &[
    CelRule {
        rule: "!has(self.minParallelism) || !has(self.maxParallelism) || self.minParallelism <= self.maxParallelism",
        message: MSG_AUTOSCALER_BOUNDS,
    },
    CelRule {
        rule: "!self.enabled || (has(self.minParallelism) && has(self.maxParallelism))",
        message: MSG_AUTOSCALER_ENABLED,
    },
];

pub const AUDIT_RULES: &[CelRule] = &[CelRule {
    rule: "!has(self.minJoinRatio) || !has(self.maxJoinRatio) || self.minJoinRatio <= self.maxJoinRatio",
    message: MSG_JOIN_RATIO,
}];

pub const RECOVERY_RULES: &[CelRule] = &[CelRule {
    rule: "self.onMissingCheckpoint != 'timestamp' || has(self.fromTimestamp)",
    message: MSG_RECOVERY_TIMESTAMP,
}];

pub const MSG_SAVEPOINT_SCHEME: &str = "savepoints.location must be an absolute path or a file:///, s3://<bucket>, gs://<bucket> or az://<container> URL, without credentials in it";
pub const MSG_SAVEPOINT_S3_ONLY: &str =
    "savepoints.endpoint, savepoints.region and savepoints.pathStyle apply to s3:// locations only";
pub const MSG_SAVEPOINT_CREDENTIALS: &str =
    "savepoints.credentials apply to s3://, gs:// and az:// locations only";

pub const SAVEPOINTS_RULES: &[CelRule] = &[
    CelRule {
        rule: "has(self.location) || (!has(self.interval) && !has(self.triggerNonce))",
        message: MSG_SAVEPOINT_LOCATION,
    },
    CelRule {
        rule: "!has(self.location) || (self.location.matches('^(/|file:///|(s3|gs|az)://[^/@:]+(/|$))') && !self.location.contains('@'))",
        message: MSG_SAVEPOINT_SCHEME,
    },
    CelRule {
        rule: "(!has(self.endpoint) && !has(self.region) && !(has(self.pathStyle) && self.pathStyle)) || (has(self.location) && self.location.startsWith('s3://'))",
        message: MSG_SAVEPOINT_S3_ONLY,
    },
    CelRule {
        rule: "!has(self.credentials) || (has(self.location) && self.location.matches('^(s3|gs|az)://'))",
        message: MSG_SAVEPOINT_CREDENTIALS,
    },
];

/// Volume names the operator gives the runtime pods (a user volume or mount must not
/// reuse them).
pub const OPERATOR_VOLUMES: [&str; 5] = ["data", "config", "tmp", "admin-token", "kafka-tls"];
/// Where the operator mounts them: no user mount may sit at or below these paths.
pub const OPERATOR_MOUNT_PATHS: [&str; 5] = [
    "/var/lib/streamjoin",
    "/etc/streamjoin",
    "/tmp",
    "/var/run/secrets/streamjoin/admin",
    "/var/run/secrets/streamjoin/kafka-tls",
];
pub const MSG_POD_VOLUME_NAMES: &str = "podTemplate.volumes and podTemplate.volumeMounts must not use the operator's volume names data, config, tmp, admin-token, kafka-tls";
pub const MSG_POD_MOUNT_PATHS: &str = "podTemplate.volumeMounts must not mount at or below the operator's paths /var/lib/streamjoin, /etc/streamjoin, /tmp, /var/run/secrets/streamjoin/admin, /var/run/secrets/streamjoin/kafka-tls";
pub const MSG_POD_MOUNT_VOLUME: &str =
    "every podTemplate.volumeMounts entry must name a volume of podTemplate.volumes";

pub const POD_TEMPLATE_RULES: &[CelRule] = &[
    CelRule {
        rule: "(!has(self.volumes) || self.volumes.all(v, !(v.name in ['data', 'config', 'tmp', 'admin-token', 'kafka-tls']))) && (!has(self.volumeMounts) || self.volumeMounts.all(m, !(m.name in ['data', 'config', 'tmp', 'admin-token', 'kafka-tls'])))",
        message: MSG_POD_VOLUME_NAMES,
    },
    CelRule {
        rule: "!has(self.volumeMounts) || self.volumeMounts.all(m, ['/var/lib/streamjoin', '/etc/streamjoin', '/tmp', '/var/run/secrets/streamjoin/admin', '/var/run/secrets/streamjoin/kafka-tls'].all(p, m.mountPath != p && !m.mountPath.startsWith(p + '/')))",
        message: MSG_POD_MOUNT_PATHS,
    },
    CelRule {
        rule: "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
        message: MSG_POD_MOUNT_VOLUME,
    },
];
