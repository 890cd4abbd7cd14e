//! Whether a plugin's ServiceAccount may do something, asked of the API server with a
//! SubjectAccessReview and remembered for a short while.
//!
//! Everything a plugin reads from a shared store was fetched with the host's identity,
//! so the API server never saw the plugin's. Before such a read is handed to the guest
//! (a store-served `kube.get` or `list`, or a watched object given to `apply`), the host
//! asks the API server whether the plugin's ServiceAccount could have read it itself.
//! Answers are kept for at most [`REVIEW_TTL`], so that a revoked RoleBinding bites
//! within that, and a read whose answer is kept costs a map lookup.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::expiring::Expiring;

/// How long an answer is kept.
pub const REVIEW_TTL: Duration = Duration::from_secs(10);
/// Most answers kept at once; past it, expired ones go, and if none has expired, all do.
pub const MAX_REVIEWS: usize = 10_000;

/// One question: may `user` do `verb` on `resource` (plural, `/subresource` allowed) in
/// `group`, in `namespace` (`None`: cluster-wide), to the object `name` (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// The Kubernetes user name (`system:serviceaccount:NS:NAME`).
    pub user: String,
    /// An RBAC verb.
    pub verb: &'static str,
    /// The API group.
    pub group: String,
    /// The resource, as RBAC names it.
    pub resource: String,
    /// The namespace.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: Option<String>,
}

/// Asks SubjectAccessReviews with the host's identity (which needs `create` on
/// `authorization.k8s.io/subjectaccessreviews`), remembering the answers.
pub struct AccessReviews {
    client: kube::Client,
    answers: Expiring<Question, bool>,
}

impl std::fmt::Debug for AccessReviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessReviews")
            .field("answers", &self.answers.len())
            .finish_non_exhaustive()
    }
}

impl AccessReviews {
    /// Reviews asked with `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            answers: Expiring::new(REVIEW_TTL, MAX_REVIEWS),
        }
    }

    /// Whether the API server allows `question`.
    pub async fn allowed(&self, question: Question) -> Result<bool, kube::Error> {
        if let Some(allowed) = self.answers.get(&question) {
            return Ok(allowed);
        }
        let (resource, subresource) = match question.resource.split_once('/') {
            Some((resource, sub)) => (resource.to_string(), Some(sub.to_string())),
            None => (question.resource.clone(), None),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(question.user.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(question.verb.to_string()),
                    group: Some(question.group.clone()),
                    resource: Some(resource),
                    subresource,
                    namespace: question.namespace.clone(),
                    name: question.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let allowed = answered.status.is_some_and(|status| status.allowed);
        self.answers.insert(question, allowed);
        Ok(allowed)
    }
}
