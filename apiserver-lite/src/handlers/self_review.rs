//! `authentication.k8s.io/v1` SelfSubjectReview: the server tells a client who it is
//! authenticated as (`kubectl auth whoami`). Nothing is stored.

use axum::Extension;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::json_response;
use crate::auth::authn::UserInfo;
use crate::auth::authz::{self, Attributes, Decision};

pub const PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (the body's content is ignored,
/// as kube-apiserver does: the answer is the caller).
pub async fn create(user: Option<Extension<UserInfo>>) -> Response {
    // No serve() in front (in-process tests): the server itself is the caller.
    let user = user.map(|u| u.0).unwrap_or_else(|| UserInfo::new("system:apiserver", &["system:masters"]));
    let attributes = Attributes {
        user: user.clone(),
        verb: "create".into(),
        api_group: "authentication.k8s.io".into(),
        resource: "selfsubjectreviews".into(),
        path: PATH.into(),
        ..Default::default()
    };
    if let Decision::Deny(why) = authz::authorize(&attributes) {
        return json_response(StatusCode::FORBIDDEN, &authz::forbidden_status(&attributes, &why));
    }
    json_response(StatusCode::CREATED, &review(&user))
}

fn review(user: &UserInfo) -> serde_json::Value {
    json!({
        "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": super::objects::timestamp(super::objects::now())},
        "status": {"userInfo": {"username": user.name, "groups": user.groups}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_names_the_caller() {
        let user = UserInfo::new("system:serviceaccount:a:b", &["system:serviceaccounts", "system:authenticated"]);
        let r = review(&user);
        assert_eq!(r["status"]["userInfo"], json!({"username": "system:serviceaccount:a:b", "groups": ["system:serviceaccounts", "system:authenticated"]}));
        assert_eq!(r["kind"], "SelfSubjectReview");
    }
}
