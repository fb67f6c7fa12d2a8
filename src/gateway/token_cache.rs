//! Tokens already verified, per thread.
//!
//! Every authenticated request carries the same token many times over its
//! life, and checking it costs two base64 decodes, an HMAC and two JSON
//! parses: a measurable share of a cheap read (BENCHMARKS.md, "The gateway
//! over HTTP"). Like Envoy's JWT filter, the gateway remembers the claims
//! of tokens it has verified, and checks only their expiry on the next use.
//!
//! What stays true:
//! - only a token that verified is remembered, under the keys that verified
//!   it (each [`super::jwt::TokenKeys`] has its own id), so another key or
//!   issuer never sees it;
//! - expiry is checked on every use, with the same leeway as a full check;
//! - the cache is bounded: a thread that fills it starts over, so a flood
//!   of distinct tokens costs what it did before, never memory;
//! - it is per thread (each HTTP worker has its own): no lock, and nothing
//!   to share between workers.

use super::jwt::Claims;
use std::cell::RefCell;
use std::collections::HashMap;

/// Most tokens one thread remembers (a few hundred bytes each).
pub const CAPACITY: usize = 4096;

thread_local! {
    /// By token: the id of the keys that verified it, and its claims.
    static VERIFIED: RefCell<HashMap<Box<str>, (u128, Claims)>> = RefCell::new(HashMap::new());
}

/// The claims remembered for `token` under the keys `keys_id`.
pub fn get(keys_id: u128, token: &str) -> Option<Claims> {
    VERIFIED.with(|cache| match cache.borrow().get(token) {
        Some((id, claims)) if *id == keys_id => Some(claims.clone()),
        _ => None,
    })
}

/// Remembers that `token` verified under the keys `keys_id` with `claims`.
pub fn put(keys_id: u128, token: &str, claims: &Claims) {
    VERIFIED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        cache.insert(token.into(), (keys_id, claims.clone()));
    });
}

/// Forgets `token` (it has expired).
pub fn forget(token: &str) {
    VERIFIED.with(|cache| {
        cache.borrow_mut().remove(token);
    });
}

/// Tokens this thread remembers.
pub fn len() -> usize {
    VERIFIED.with(|cache| cache.borrow().len())
}
