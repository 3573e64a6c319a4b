//! The services of a compiled zone as a persistent list: shared chunks of services, so a table
//! that changes a few services shares every untouched chunk with the table before it.
//!
//! Owns: indexing and copy-on-write replacement. A lookup is two bounds-checked indexings and
//! one pointer hop to the chunk, the service inline in it (query path: no lock, no allocation,
//! no hop per service: a million-service table showed each hop in CPU per query); replacing
//! `k` services copies the outer vector (one `Arc` per chunk) and the chunks they sit in (the
//! other services of such a chunk are cloned, their counters shared), not the whole list.

use std::sync::Arc;

use super::select::Service;

/// log2 of the services per chunk: 256 keeps the outer vector small (4,096 entries at a
/// million services) and a rewritten chunk cheap to copy.
const CHUNK_BITS: usize = 8;
const CHUNK: usize = 1 << CHUNK_BITS;

/// A zone's services, in file order, in chunks shared between tables that did not change
/// them.
#[derive(Clone, Debug, Default)]
pub struct ServiceList {
    chunks: Vec<Arc<[Service]>>,
    len: usize,
}

impl ServiceList {
    /// The list of `services`, in order.
    pub fn from_vec(services: Vec<Service>) -> Self {
        services.into_iter().collect()
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the zone has no service.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Service `index` (tests compare addresses across tables: a shared service is the same
    /// memory).
    #[inline]
    pub fn get(&self, index: usize) -> Option<&Service> {
        self.chunks
            .get(index >> CHUNK_BITS)?
            .get(index & (CHUNK - 1))
    }

    /// The services, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            chunks: self.chunks.iter(),
            current: [].iter(),
        }
    }

    /// A copy with the services at the given indices replaced (indices past the end are
    /// ignored); every other service and every chunk without a replacement is shared.
    pub fn with_replaced(&self, replacements: Vec<(usize, Service)>) -> Self {
        let mut chunks = self.chunks.clone();
        let mut by_chunk: Vec<(usize, usize, Service)> = replacements
            .into_iter()
            .filter(|(i, _)| *i < self.len)
            .map(|(i, s)| (i >> CHUNK_BITS, i & (CHUNK - 1), s))
            .collect();
        by_chunk.sort_by_key(|(c, o, _)| (*c, *o));
        let mut rest = by_chunk.into_iter().peekable();
        while let Some((chunk, offset, service)) = rest.next() {
            let Some(slot) = chunks.get_mut(chunk) else {
                continue;
            };
            let mut copy: Vec<Service> = slot.to_vec();
            if let Some(s) = copy.get_mut(offset) {
                *s = service;
            }
            while let Some((_, offset, service)) = rest.next_if(|(c, _, _)| *c == chunk) {
                if let Some(s) = copy.get_mut(offset) {
                    *s = service;
                }
            }
            *slot = Arc::from(copy);
        }
        Self {
            chunks,
            len: self.len,
        }
    }
}

/// Builds the chunks as the services come: a zone compile never holds its services twice
/// (a whole list, then its chunks).
impl FromIterator<Service> for ServiceList {
    fn from_iter<I: IntoIterator<Item = Service>>(services: I) -> Self {
        let mut rest = services.into_iter();
        let mut chunks = Vec::new();
        let mut len = 0;
        loop {
            let chunk: Vec<Service> = rest.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            len += chunk.len();
            chunks.push(Arc::from(chunk));
        }
        chunks.shrink_to_fit();
        Self { chunks, len }
    }
}

/// Iterator over a [`ServiceList`], in order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    chunks: std::slice::Iter<'a, Arc<[Service]>>,
    current: std::slice::Iter<'a, Service>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Service;

    fn next(&mut self) -> Option<&'a Service> {
        loop {
            if let Some(s) = self.current.next() {
                return Some(s);
            }
            self.current = self.chunks.next()?.iter();
        }
    }
}

impl<'a> IntoIterator for &'a ServiceList {
    type Item = &'a Service;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl std::ops::Index<usize> for ServiceList {
    type Output = Service;

    /// Panics past the end, like a slice (tests and code that checked the length).
    fn index(&self, index: usize) -> &Service {
        match self.get(index) {
            Some(s) => s,
            None => panic!("service index {index} out of range (len {})", self.len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::select::{CompiledFallback, CompiledPolicy};

    fn service(key: &str) -> Service {
        Service {
            key: key.to_string(),
            ttl: 30,
            answers: 1,
            policy: CompiledPolicy::Weighted,
            regions: Default::default(),
            endpoints: Default::default(),
            fallback: CompiledFallback::None,
            counters: Default::default(),
        }
    }

    #[test]
    fn replacing_shares_every_other_service_and_chunk() {
        let n = CHUNK * 3 + 5;
        let list = ServiceList::from_vec((0..n).map(|i| service(&format!("s{i}"))).collect());
        assert_eq!(list.len(), n);
        assert_eq!(list.iter().count(), n);
        assert_eq!(list.get(n - 1).map(|s| s.key.as_str()), Some("s772"));
        assert!(list.get(n).is_none());
        let next = list.with_replaced(vec![(CHUNK + 1, service("new")), (n + 9, service("x"))]);
        assert_eq!(next.len(), n);
        assert_eq!(next[CHUNK + 1].key, "new");
        for i in (0..n).filter(|i| *i != CHUNK + 1) {
            let (a, b) = (list.get(i).unwrap(), next.get(i).unwrap());
            // Untouched chunks are the same memory; the rewritten chunk holds copies.
            let in_rewritten = i >> CHUNK_BITS == 1;
            assert_eq!(std::ptr::eq(a, b), !in_rewritten, "service {i}");
            assert_eq!(a.key, b.key);
        }
        assert!(Arc::ptr_eq(&list.chunks[0], &next.chunks[0]));
        assert!(!Arc::ptr_eq(&list.chunks[1], &next.chunks[1]));
        assert!(Arc::ptr_eq(&list.chunks[3], &next.chunks[3]));
        let keys: Vec<&str> = next.iter().map(|s| s.key.as_str()).take(3).collect();
        assert_eq!(keys, ["s0", "s1", "s2"]);
    }
}
