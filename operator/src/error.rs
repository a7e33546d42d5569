//! Errors of the reconcile pipeline. Each names the step that failed and the
//! object it was working on, so a log line or an Event is enough to act on.

use std::fmt;

/// `kind namespace/name` of the object a step was working on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectName {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectName {
    pub fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("build: {object}: {reason}")]
    Build { object: ObjectName, reason: String },

    #[error("apply: server-side apply of {object} failed: {source}")]
    Apply {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("status: writing the status of {object} failed: {source}")]
    Status {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("finalizer: {object}: {source}")]
    Finalizer {
        object: ObjectName,
        #[source]
        source: Box<kube::runtime::finalizer::Error<Error>>,
    },

    #[error("object has no {what}: {object}")]
    MissingMetadata { object: String, what: &'static str },

    #[error("serialize: {object}: {source}")]
    Serialize {
        object: ObjectName,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A short, stable label for the `kind` dimension of the error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Build { .. } => "build",
            Error::Apply { .. } => "apply",
            Error::Status { .. } => "status",
            Error::Finalizer { source, .. } => match source.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::MissingMetadata { .. } => "metadata",
            Error::Serialize { .. } => "serialize",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
