//! Our errors as gRPC statuses: the code says what kind of failure it is (the caller's
//! mistake, missing, not allowed, the registry unreachable, our fault), the message what
//! exactly is wrong.

use images::pull::PullError;
use images::registry::RegistryError;
use tonic::{Code, Status};

use super::image_service::ImageServiceError;
use crate::cri::container::manager as container;
use crate::cri::sandbox;

/// The answer of an RPC kubelet-rs does not implement (yet).
pub(super) fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented yet by kubelet-rs"))
}

impl From<ImageServiceError> for Status {
    fn from(e: ImageServiceError) -> Status {
        let code = match &e {
            ImageServiceError::NoImage { .. } | ImageServiceError::Reference(_) | ImageServiceError::Auth(_) => {
                Code::InvalidArgument
            }
            ImageServiceError::Pull(p) => pull_code(p),
            ImageServiceError::Store(_)
            | ImageServiceError::Config { .. }
            | ImageServiceError::Usage { .. }
            | ImageServiceError::Task(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

fn pull_code(e: &PullError) -> Code {
    let PullError::Registry { source, .. } = e else {
        // The registry's content did not check out, or the store failed.
        return match e {
            PullError::Store { .. } | PullError::Temp { .. } | PullError::Task { .. } => Code::Internal,
            _ => Code::Unknown,
        };
    };
    match source.as_ref() {
        RegistryError::Status { status: 404, .. } => Code::NotFound,
        RegistryError::Status { status: 401 | 403, .. } | RegistryError::Unauthorized { .. } | RegistryError::Token { .. } => {
            Code::Unauthenticated
        }
        RegistryError::Status { status: 429, .. } => Code::ResourceExhausted,
        RegistryError::Http { .. } | RegistryError::Status { .. } | RegistryError::ShortBody { .. } => Code::Unavailable,
        RegistryError::Hosts(_) | RegistryError::Ca { .. } | RegistryError::NoEndpoint { .. } => Code::FailedPrecondition,
        RegistryError::Manifest(_) => Code::NotFound,
        _ => Code::Unknown,
    }
}

/// A sandbox failure: unknown ids are NotFound, bad configs InvalidArgument, a reserved name
/// AlreadyExists, what we cannot do (yet) Unimplemented, the rest our fault.
pub(super) fn sandbox_status(e: sandbox::Error) -> Status {
    let code = match &e {
        sandbox::Error::NotFound { .. } => Code::NotFound,
        sandbox::Error::InvalidConfig { .. } | sandbox::Error::Sysctl(_) => Code::InvalidArgument,
        sandbox::Error::Unsupported(_) => Code::Unimplemented,
        sandbox::Error::Id(sandbox::id::Error::NameReserved { .. }) => Code::AlreadyExists,
        sandbox::Error::Id(sandbox::id::Error::Ambiguous { .. }) => Code::InvalidArgument,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// A container failure: unknown ids NotFound, bad configs InvalidArgument, a missing image
/// NotFound, a reserved name AlreadyExists, the rest (runtime, monitor, mounts) our fault.
pub(super) fn container_status(e: container::Error) -> Status {
    let code = match &e {
        container::Error::NotFound(_) | container::Error::ImageNotFound(_) => Code::NotFound,
        container::Error::Invalid(_) | container::Error::Spec(_) => Code::InvalidArgument,
        container::Error::NameReserved { .. } => Code::AlreadyExists,
        container::Error::StopTimeout { .. } => Code::DeadlineExceeded,
        container::Error::NotRunning { .. } => Code::FailedPrecondition,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use images::reference::Reference;

    #[test]
    fn bad_references_are_invalid_arguments_naming_the_reference() {
        let e: ImageServiceError = Reference::parse("Bad:Image:x").unwrap_err().into();
        let s = Status::from(e);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("Bad:Image:x"), "{}", s.message());
        let s = not_implemented("RunPodSandbox");
        assert_eq!(s.code(), Code::Unimplemented);
        assert_eq!(s.message(), "RunPodSandbox is not implemented yet by kubelet-rs");
    }
}
