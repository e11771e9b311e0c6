//! A bounded cache of values every listener woken by the same position
//! shares: the first caller for a key computes the value, callers arriving
//! meanwhile wait for that computation instead of repeating it, and later
//! callers read it. Keys carry the positions the value is for, so an entry
//! never goes stale; the oldest entries are dropped past the capacity. A
//! failed computation is not kept: the next caller tries again.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    sync::{Arc, Mutex},
};

use tokio::sync::OnceCell;

pub struct Shared<K, V> {
    capacity: usize,
    entries: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    cells: HashMap<K, Arc<OnceCell<Arc<V>>>>,
    /// Insertion order, for dropping the oldest.
    order: VecDeque<K>,
}

impl<K: Clone + Eq + Hash, V> Shared<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), entries: Mutex::new(Entries { cells: HashMap::new(), order: VecDeque::new() }) }
    }

    /// The value for `key`, computed by `load` if no caller has computed it yet.
    pub async fn get<E>(&self, key: K, load: impl AsyncFnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match entries.cells.get(&key) {
                Some(cell) => cell.clone(),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    entries.cells.insert(key.clone(), cell.clone());
                    entries.order.push_back(key);
                    while entries.order.len() > self.capacity {
                        if let Some(oldest) = entries.order.pop_front() {
                            entries.cells.remove(&oldest);
                        }
                    }
                    cell
                }
            }
        };
        cell.get_or_try_init(|| async move { load().await.map(Arc::new) }).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::Shared;

    #[tokio::test]
    async fn one_computation_per_key_and_the_oldest_dropped() {
        let cache: Shared<u32, u32> = Shared::new(2);
        let calls = AtomicUsize::new(0);
        let load = |value: u32| {
            let calls = &calls;
            async move || {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(value * 10)
            }
        };
        let (a, b) = tokio::join!(cache.get(1, load(1)), cache.get(1, load(1)));
        assert_eq!((*a.unwrap(), *b.unwrap()), (10, 10));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.get(2, load(2)).await.unwrap();
        cache.get(3, load(3)).await.unwrap();
        assert_eq!(*cache.get(1, load(1)).await.unwrap(), 10);
        assert_eq!(calls.load(Ordering::SeqCst), 4, "key 1 was dropped for key 3 and computed again");
        assert!(cache.get(9, async || Err::<u32, ()>(())).await.is_err());
        assert_eq!(*cache.get(9, load(9)).await.unwrap(), 90, "a failure is not kept");
    }
}
