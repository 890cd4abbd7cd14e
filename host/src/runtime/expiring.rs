//! A map whose entries expire: answers from the API server that are worth keeping for a
//! while, and no longer (access reviews, kinds the API server does not serve).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Values kept for at most a time-to-live, at most `capacity` at once: past it, expired
/// entries go, and if none has expired, all do (a guest that floods the map with
/// distinct keys only flushes it).
#[derive(Debug)]
pub struct Expiring<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Expiring<K, V> {
    /// Keeps values for `ttl`, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value of `key` when it was kept less than the time-to-live ago.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().expect("expiring map poisoned");
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    /// Keeps `value` for `key`.
    pub fn insert(&self, key: K, value: V) {
        let mut entries = self.entries.lock().expect("expiring map poisoned");
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("expiring map poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_time_to_live() {
        let map = Expiring::new(Duration::from_secs(10), 100);
        map.insert("a", true);
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(map.get("a"), Some(true));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(map.get("a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_stay_within_their_capacity() {
        let map = Expiring::new(Duration::from_secs(10), 3);
        for key in 0..3 {
            map.insert(key, true);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        map.insert(3, false); // full, none expired: all go
        assert_eq!(map.len(), 1);
        tokio::time::advance(Duration::from_secs(6)).await;
        map.insert(4, true);
        map.insert(5, true);
        tokio::time::advance(Duration::from_secs(5)).await;
        map.insert(6, true); // full: the expired one (3) goes
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&3), None);
        assert_eq!(map.get(&4), Some(true));
        for key in 0..10_000 {
            map.insert(key, true);
        }
        assert!(map.len() <= 3);
    }
}
