//! Which k8s-openapi type describes each group/version/kind. The registry names kinds; this
//! table is where a kind meets its upstream schema. Kinds not listed here still get paths in
//! the documents, but no schema (and `validate_fields` accepts any field for them).

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::{JsonSchema, Schema, SchemaGenerator};

macro_rules! kinds {
    ($( ($group:literal, $version:literal, $kind:literal) => $ty:ty ),* $(,)?) => {
        /// Every kind with a known schema, as (group, version, kind).
        pub const KINDS: &[(&str, &str, &str)] = &[$( ($group, $version, $kind) ),*];

        /// Adds the kind's schema (and everything it refers to) to `generator`'s definitions
        /// and returns the name it is defined under (`io.k8s.api.core.v1.Pod`).
        pub fn define(group: &str, version: &str, kind: &str, generator: &mut SchemaGenerator) -> Option<String> {
            match (group, version, kind) {
                $( ($group, $version, $kind) => Some(define_type::<$ty>(generator)), )*
                _ => None,
            }
        }
    };
}

fn define_type<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    let _: Schema = generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

kinds! {
    ("", "v1", "Binding") => api::core::v1::Binding,
    ("", "v1", "ComponentStatus") => api::core::v1::ComponentStatus,
    ("", "v1", "ConfigMap") => api::core::v1::ConfigMap,
    ("", "v1", "Endpoints") => api::core::v1::Endpoints,
    ("", "v1", "Event") => api::core::v1::Event,
    ("", "v1", "LimitRange") => api::core::v1::LimitRange,
    ("", "v1", "Namespace") => api::core::v1::Namespace,
    ("", "v1", "Node") => api::core::v1::Node,
    ("", "v1", "PersistentVolume") => api::core::v1::PersistentVolume,
    ("", "v1", "PersistentVolumeClaim") => api::core::v1::PersistentVolumeClaim,
    ("", "v1", "Pod") => api::core::v1::Pod,
    ("", "v1", "PodTemplate") => api::core::v1::PodTemplate,
    ("", "v1", "ReplicationController") => api::core::v1::ReplicationController,
    ("", "v1", "ResourceQuota") => api::core::v1::ResourceQuota,
    ("", "v1", "Secret") => api::core::v1::Secret,
    ("", "v1", "Service") => api::core::v1::Service,
    ("", "v1", "ServiceAccount") => api::core::v1::ServiceAccount,
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => api::admissionregistration::v1::MutatingWebhookConfiguration,
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => api::admissionregistration::v1::ValidatingWebhookConfiguration,
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => apiextensions::v1::CustomResourceDefinition,
    ("apps", "v1", "ControllerRevision") => api::apps::v1::ControllerRevision,
    ("apps", "v1", "DaemonSet") => api::apps::v1::DaemonSet,
    ("apps", "v1", "Deployment") => api::apps::v1::Deployment,
    ("apps", "v1", "ReplicaSet") => api::apps::v1::ReplicaSet,
    ("apps", "v1", "StatefulSet") => api::apps::v1::StatefulSet,
    ("authentication.k8s.io", "v1", "SelfSubjectReview") => api::authentication::v1::SelfSubjectReview,
    ("authentication.k8s.io", "v1", "TokenRequest") => api::authentication::v1::TokenRequest,
    ("authentication.k8s.io", "v1", "TokenReview") => api::authentication::v1::TokenReview,
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => api::authorization::v1::SelfSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SubjectAccessReview") => api::authorization::v1::SubjectAccessReview,
    ("autoscaling", "v1", "HorizontalPodAutoscaler") => api::autoscaling::v1::HorizontalPodAutoscaler,
    ("autoscaling", "v1", "Scale") => api::autoscaling::v1::Scale,
    ("autoscaling", "v2", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
    ("batch", "v1", "CronJob") => api::batch::v1::CronJob,
    ("batch", "v1", "Job") => api::batch::v1::Job,
    ("certificates.k8s.io", "v1", "CertificateSigningRequest") => api::certificates::v1::CertificateSigningRequest,
    ("coordination.k8s.io", "v1", "Lease") => api::coordination::v1::Lease,
    ("discovery.k8s.io", "v1", "EndpointSlice") => api::discovery::v1::EndpointSlice,
    ("events.k8s.io", "v1", "Event") => api::events::v1::Event,
    ("networking.k8s.io", "v1", "Ingress") => api::networking::v1::Ingress,
    ("networking.k8s.io", "v1", "IngressClass") => api::networking::v1::IngressClass,
    ("networking.k8s.io", "v1", "NetworkPolicy") => api::networking::v1::NetworkPolicy,
    ("node.k8s.io", "v1", "RuntimeClass") => api::node::v1::RuntimeClass,
    ("policy", "v1", "Eviction") => api::policy::v1::Eviction,
    ("policy", "v1", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole") => api::rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
    ("rbac.authorization.k8s.io", "v1", "Role") => api::rbac::v1::Role,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding") => api::rbac::v1::RoleBinding,
    ("scheduling.k8s.io", "v1", "PriorityClass") => api::scheduling::v1::PriorityClass,
    ("storage.k8s.io", "v1", "CSIDriver") => api::storage::v1::CSIDriver,
    ("storage.k8s.io", "v1", "CSINode") => api::storage::v1::CSINode,
    ("storage.k8s.io", "v1", "StorageClass") => api::storage::v1::StorageClass,
    ("storage.k8s.io", "v1", "VolumeAttachment") => api::storage::v1::VolumeAttachment,
}

/// The `meta/v1` types every document's operations refer to.
pub fn define_meta(generator: &mut SchemaGenerator) -> MetaNames {
    MetaNames {
        delete_options: define_type::<meta::DeleteOptions>(generator),
        status: define_type::<meta::Status>(generator),
        patch: define_type::<meta::Patch>(generator),
        list_meta: define_type::<meta::ListMeta>(generator),
    }
}

pub struct MetaNames {
    pub delete_options: String,
    pub status: String,
    pub patch: String,
    pub list_meta: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    #[test]
    fn every_builtin_kind_and_subresource_kind_with_a_body_has_a_schema() {
        let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        for r in builtin().iter() {
            assert!(define(&r.group, &r.version, &r.kind, &mut generator).is_some(), "{}/{} {}", r.group, r.version, r.kind);
            for s in &r.subresources {
                // Connect options (exec, attach, proxy...) travel as query parameters, not bodies.
                if !s.kind.ends_with("Options") {
                    assert!(define(&s.group, &s.version, &s.kind, &mut generator).is_some(), "{}/{} {}", s.group, s.version, s.kind);
                }
            }
        }
        assert_eq!(define("", "v1", "Pod", &mut generator).as_deref(), Some("io.k8s.api.core.v1.Pod"));
        assert!(generator.definitions().contains_key("io.k8s.api.core.v1.Container"));
        assert!(define("example.com", "v1", "Widget", &mut generator).is_none());
    }
}
