//! Coalesced single-entity reads.
//!
//! Every proxied read (`GET /products/{id}` and the like) is a second HTTP
//! exchange, and on one machine that exchange costs as much as the
//! client's own (`ordersaga bench http` measures a trivial proxy at about
//! half a trivial handler). So when reads for one instance arrive while a
//! call to it is in flight, they wait for that call to end and then go
//! together as one `POST /reads` (see `http/reads.rs`): the DataLoader
//! pattern, or group commit applied to reads.
//!
//! What a direct `GET` promises still holds. Each read is answered by the
//! owning instance, from its live aggregate, in a call that started after
//! the read arrived, so it never sees state older than its own arrival. The
//! breaker guards every call, one permit each. With one read at a time
//! nothing waits and nothing changes: the call is the plain `GET`.
//!
//! One coalescer per server worker: awc's client is not `Send`, and the
//! bookkeeping needs no lock on its worker's thread.

use super::downstream::{Answer, Downstream, DownstreamError, Target};
use crate::http::reads::MAX_READS;
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use ordersaga_events::topics::Service as ServiceName;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::sync::oneshot;

/// A read's answer, or why there is none.
type Outcome = Result<Answer, DownstreamError>;

/// The reads waiting for each instance that has a call in flight. Cheap to
/// clone; clones share the waiting reads.
#[derive(Clone, Default)]
pub struct Coalescer {
    /// By instance address. An address is present exactly while a call to
    /// it is in flight.
    lanes: Rc<RefCell<HashMap<String, Vec<Waiter>>>>,
}

/// A read waiting for the next call.
struct Waiter {
    path: String,
    answer: oneshot::Sender<Outcome>,
}

impl Coalescer {
    /// Joins `address`'s lane: `None` when no call was in flight (the
    /// caller now makes one), or where the answer will come.
    fn join(&self, address: &str, path: &str) -> Option<oneshot::Receiver<Outcome>> {
        let mut lanes = self.lanes.borrow_mut();
        match lanes.get_mut(address) {
            None => {
                lanes.insert(address.to_owned(), Vec::new());
                None
            }
            Some(waiting) => {
                let (answer, receiver) = oneshot::channel();
                waiting.push(Waiter {
                    path: path.to_owned(),
                    answer,
                });
                Some(receiver)
            }
        }
    }

    /// The reads the next call to `address` carries, at most [`MAX_READS`];
    /// with none waiting, the lane is idle again.
    fn next(&self, address: &str) -> Option<Vec<Waiter>> {
        let mut lanes = self.lanes.borrow_mut();
        let waiting = lanes.get_mut(address)?;
        if waiting.is_empty() {
            lanes.remove(address);
            return None;
        }
        let n = waiting.len().min(MAX_READS);
        Some(waiting.drain(..n).collect())
    }

    /// Reads waiting over every instance.
    pub fn waiting(&self) -> usize {
        self.lanes.borrow().values().map(Vec::len).sum()
    }
}

/// The two calls coalescing makes to an instance: one read on its own,
/// and several together. [`ServiceCalls`] makes them over HTTP; the tests
/// make them through gates.
pub(super) trait Calls: Clone + 'static {
    /// `GET path` on `address`.
    async fn one(&self, address: &str, path: &str) -> Outcome;
    /// `paths` on `address` together: one outcome per path, in order.
    async fn many(&self, address: &str, paths: Vec<String>) -> Vec<Outcome>;
}

/// The one call in flight to an instance. However it ends, even dropped
/// with its request, the reads that piled up behind it are then sent.
struct Lead<C: Calls> {
    calls: C,
    reads: Coalescer,
    address: String,
}

impl<C: Calls> Drop for Lead<C> {
    fn drop(&mut self) {
        let Some(first) = self.reads.next(&self.address) else {
            return;
        };
        let (calls, reads) = (self.calls.clone(), self.reads.clone());
        let address = std::mem::take(&mut self.address);
        actix_rt::spawn(async move {
            let mut batch = Some(first);
            while let Some(waiters) = batch {
                reads_per_call(waiters.len());
                let outcomes = match waiters.as_slice() {
                    [one] => vec![calls.one(&address, &one.path).await],
                    _ => {
                        let paths = waiters.iter().map(|w| w.path.clone()).collect();
                        calls.many(&address, paths).await
                    }
                };
                for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                    // A read whose request went away no longer listens.
                    let _ = waiter.answer.send(outcome);
                }
                batch = reads.next(&address);
            }
        });
    }
}

/// `path` on `address` through `calls`, coalesced through `reads` with the
/// other reads for that instance (see the module).
pub(super) async fn read<C: Calls>(
    calls: &C,
    reads: &Coalescer,
    address: String,
    path: &str,
    dropped: impl FnOnce(String) -> DownstreamError,
) -> Outcome {
    if let Some(answer) = reads.join(&address, path) {
        return answer.await.unwrap_or_else(|_| Err(dropped(address)));
    }
    let _lead = Lead {
        calls: calls.clone(),
        reads: reads.clone(),
        address: address.clone(),
    };
    reads_per_call(1);
    calls.one(&address, path).await
}

/// Counts a downstream read call that carried `n` reads.
fn reads_per_call(n: usize) {
    super::metrics::gateway_metrics()
        .reads_per_call
        .observe(n as f64);
}

/// [`Calls`] over HTTP to an instance of `service`, guarded by its breaker.
#[derive(Clone)]
pub(super) struct ServiceCalls {
    downstream: Downstream,
    client: awc::Client,
    service: ServiceName,
}

impl Calls for ServiceCalls {
    async fn one(&self, address: &str, path: &str) -> Outcome {
        self.downstream
            .send(&self.client, self.service, address, Method::GET, path, None)
            .await
    }

    async fn many(&self, address: &str, paths: Vec<String>) -> Vec<Outcome> {
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.downstream
            .batch(&self.client, self.service, address, &paths)
            .await
    }
}

/// The body of a `POST /reads` answer.
#[derive(Deserialize)]
struct Answers<'a> {
    #[serde(borrow)]
    answers: Vec<Item<'a>>,
}

/// One read's status and body in it.
#[derive(Deserialize)]
struct Item<'a> {
    status: u16,
    #[serde(borrow)]
    body: &'a RawValue,
}

impl Downstream {
    /// `GET path` on the `target` instance of `service`, coalesced through
    /// `reads` with the other reads for that instance (see the module).
    pub async fn read(
        &self,
        client: &awc::Client,
        reads: &Coalescer,
        service: ServiceName,
        target: Target,
        path: &str,
    ) -> Outcome {
        let address = self.resolve(service, target)?;
        let calls = ServiceCalls {
            downstream: self.clone(),
            client: client.clone(),
            service,
        };
        read(&calls, reads, address, path, |address| {
            self.failed(
                service,
                &address,
                "the batched read was dropped (the gateway is stopping)".into(),
            )
        })
        .await
    }

    /// `POST /reads` of `paths` on `address`: one outcome per path, under
    /// one permit of the breaker (a failure when the call fails or any read
    /// answered 5xx). An instance without that route (an older version) is
    /// asked each path on its own.
    async fn batch(
        &self,
        client: &awc::Client,
        service: ServiceName,
        address: &str,
        paths: &[&str],
    ) -> Vec<Outcome> {
        let each = |err: DownstreamError| paths.iter().map(|_| Err(err.clone())).collect();
        let permit = match self.permit(service) {
            Ok(permit) => permit,
            Err(open) => return each(open),
        };
        let body = serde_json::json!({ "paths": paths });
        let answer = self
            .exchange(client, address, Method::POST, "/reads", Some(&body))
            .await;
        if let Ok(answer) = &answer {
            if matches!(
                answer.status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) {
                permit.success();
                let singles = paths
                    .iter()
                    .map(|path| self.send(client, service, address, Method::GET, path, None));
                return futures_util::future::join_all(singles).await;
            }
        }
        let outcomes = answer.and_then(|answer| split(&answer, paths.len()));
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(cause) => {
                permit.failure(&cause);
                return each(self.failed(service, address, cause));
            }
        };
        let failure = outcomes.iter().find(|(status, _)| status.is_server_error());
        match failure {
            Some((status, _)) => permit.failure(&format!("a read answered {status}")),
            None => permit.success(),
        }
        outcomes
            .into_iter()
            .map(|(status, body)| {
                if status.is_server_error() {
                    Err(self.failed(service, address, format!("answered {status}")))
                } else {
                    Ok(Answer { status, body })
                }
            })
            .collect()
    }
}

/// The `n` statuses and bodies of a `POST /reads` answer, or what is wrong
/// with it.
fn split(answer: &Answer, n: usize) -> Result<Vec<(StatusCode, Bytes)>, String> {
    if !answer.status.is_success() {
        return Err(format!("POST /reads answered {}", answer.status));
    }
    let parsed: Answers = serde_json::from_slice(&answer.body)
        .map_err(|err| format!("POST /reads answered unreadable JSON: {err}"))?;
    if parsed.answers.len() != n {
        return Err(format!(
            "POST /reads answered {} of {n} reads",
            parsed.answers.len()
        ));
    }
    parsed
        .answers
        .into_iter()
        .map(|item| {
            let status = StatusCode::from_u16(item.status)
                .map_err(|_| format!("POST /reads answered status {}", item.status))?;
            Ok((status, Bytes::copy_from_slice(item.body.get().as_bytes())))
        })
        .collect()
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
