//! Cranelift's incremental compilation cache, in memory: a reloaded component whose
//! functions are mostly unchanged (an edit, a rebuild) compiles only what changed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

/// Upper bound on the cached machine code; past it the cache starts over.
const CAPACITY_BYTES: usize = 256 << 20;

/// Compiled functions keyed by Cranelift's cache key.
#[derive(Debug, Default)]
pub struct FunctionCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let entries = self.entries.lock().expect("function cache poisoned");
        entries.map.get(key).map(|value| Cow::Owned(value.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut entries = self.entries.lock().expect("function cache poisoned");
        let size = key.len() + value.len();
        if entries.bytes + size > CAPACITY_BYTES {
            entries.map.clear();
            entries.bytes = 0;
        }
        entries.bytes += size;
        entries.map.insert(key.to_vec(), value);
        true
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::CacheStore;

    use super::*;

    #[test]
    fn stores_and_returns_entries() {
        let cache = FunctionCache::default();
        assert!(cache.get(b"k").is_none());
        assert!(cache.insert(b"k", vec![1, 2, 3]));
        assert_eq!(cache.get(b"k").as_deref(), Some(&[1u8, 2, 3][..]));
    }
}
