//! Whether a plugin's ServiceAccount may do something, asked of the API server with a
//! SubjectAccessReview and remembered for a short while.
//!
//! Everything a plugin reads from a shared store was fetched with the host's identity,
//! so the API server never saw the plugin's. Before such a read is handed to the guest
//! (a store-served `kube.get` or `list`, or a watched object given to `apply`), the host
//! asks the API server whether the plugin's ServiceAccount could have read it itself.
//! Answers are kept for at most [`REVIEW_TTL`], so that a revoked RoleBinding bites
//! within that, and a read whose answer is kept costs a map lookup.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

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

/// Answers kept for at most a time-to-live, at most `capacity` at once.
#[derive(Debug)]
pub struct Answers<K> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, bool)>>,
}

impl<K: std::hash::Hash + Eq> Answers<K> {
    /// Keeps answers for `ttl`, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer to `key` when it was given less than the time-to-live ago.
    pub fn get(&self, key: &K) -> Option<bool> {
        let entries = self.entries.lock().expect("answers poisoned");
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, allowed)| *allowed)
    }

    /// Keeps `allowed` as the answer to `key`.
    pub fn insert(&self, key: K, allowed: bool) {
        let mut entries = self.entries.lock().expect("answers poisoned");
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), allowed));
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("answers poisoned").len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Asks SubjectAccessReviews with the host's identity (which needs `create` on
/// `authorization.k8s.io/subjectaccessreviews`), remembering the answers.
pub struct AccessReviews {
    client: kube::Client,
    answers: Answers<Question>,
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
            answers: Answers::new(REVIEW_TTL, MAX_REVIEWS),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answers_expire_after_their_time_to_live() {
        let answers = Answers::new(Duration::from_secs(10), 100);
        answers.insert("a", true);
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(answers.get(&"a"), Some(true));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(answers.get(&"a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_stay_within_their_capacity() {
        let answers = Answers::new(Duration::from_secs(10), 3);
        for key in 0..3 {
            answers.insert(key, true);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        answers.insert(3, false); // full, none expired: all go
        assert_eq!(answers.len(), 1);
        tokio::time::advance(Duration::from_secs(6)).await;
        answers.insert(4, true);
        answers.insert(5, true);
        tokio::time::advance(Duration::from_secs(5)).await;
        answers.insert(6, true); // full: the expired one (3) goes
        assert_eq!(answers.len(), 3);
        assert_eq!(answers.get(&3), None);
        assert_eq!(answers.get(&4), Some(true));
        for key in 0..10_000 {
            answers.insert(key, true);
        }
        assert!(answers.len() <= 3);
    }
}
