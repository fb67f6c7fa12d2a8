//! Tests of [`super`] (`ratelimit.rs`), kept apart so the module stays readable.
use super::*;
use actix_web::test::{call_service, init_service, read_body_json, TestRequest};
use actix_web::{web, App, HttpResponse};
use governor::clock::FakeRelativeClock;
use std::net::Ipv6Addr;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// Users: 10/s, burst 5. IPs: 1/s, burst 3.
fn limiter() -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let config = RateLimitConfig {
        user_per_second: nz(10),
        user_burst: nz(5),
        ip_per_second: nz(1),
        ip_burst: nz(3),
    };
    (Limiter::with_clock(config, clock.clone()), clock)
}

fn ip(n: u128) -> Caller {
    Caller::Ip(IpAddr::V6(Ipv6Addr::from(n)))
}

#[test]
fn a_burst_passes_then_is_refused_until_the_clock_moves() {
    // Given an IP with a burst of 3 at 1/s
    let (l, clock) = limiter();
    let caller = Caller::Ip(Ipv4Addr::LOCALHOST.into());
    // When it sends 3 requests at once, then a 4th
    for _ in 0..3 {
        assert_eq!(l.check(&caller), Ok(()));
    }
    let wait = l.check(&caller).expect_err("over the burst");
    // Then the 4th is refused for about one emission interval
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    assert_eq!(l.refused(), 1);
    // When that wait passes, it is allowed again (once)
    clock.advance(wait);
    assert_eq!(l.check(&caller), Ok(()));
    assert!(l.check(&caller).is_err());
    assert_eq!(l.refused(), 2);
}

#[test]
fn users_and_ips_are_limited_independently() {
    // Given an IP that spent its burst
    let (l, _) = limiter();
    let addr = Caller::Ip(Ipv4Addr::LOCALHOST.into());
    while l.check(&addr).is_ok() {}
    // Then a user (even one calling from that IP) has its own budget,
    // with the user burst, not the IP one
    let alice = Caller::User("alice".into());
    for _ in 0..5 {
        assert_eq!(l.check(&alice), Ok(()));
    }
    assert!(l.check(&alice).is_err());
    // And the user limit did not touch the IP's
    assert!(l.check(&addr).is_err());
}

#[test]
fn one_users_flood_does_not_limit_another() {
    // Given alice flooding
    let (l, _) = limiter();
    let alice = Caller::User("alice".into());
    for _ in 0..1_000 {
        let _ = l.check(&alice);
    }
    assert!(l.check(&alice).is_err());
    // Then bob still gets his whole burst
    let bob = Caller::User("bob".into());
    for _ in 0..5 {
        assert_eq!(l.check(&bob), Ok(()));
    }
}

#[test]
fn idle_keys_are_evicted() {
    // Given 10,000 distinct callers seen once
    let (l, clock) = limiter();
    for n in 0..5_000 {
        let _ = l.check(&ip(n));
        let _ = l.check(&Caller::User(format!("user-{n}")));
    }
    assert!(l.keys() > 9_000, "{}", l.keys());
    // When their budgets have fully replenished
    clock.advance(Duration::from_secs(10));
    // Then eviction forgets all of them
    assert_eq!(l.evict_idle(), 0);
    assert_eq!(l.keys(), 0);
}

#[test]
fn recent_keys_survive_eviction() {
    // Given an IP that just spent its burst
    let (l, _) = limiter();
    let caller = Caller::Ip(Ipv4Addr::LOCALHOST.into());
    while l.check(&caller).is_ok() {}
    // When idle keys are evicted
    l.evict_idle();
    // Then it is still tracked, and still refused
    assert_eq!(l.keys(), 1);
    assert!(l.check(&caller).is_err());
}

#[test]
fn periodic_eviction_inside_check_bounds_the_table() {
    // Given a stream of 20,000 distinct IPs, one every 10 ms (each key
    // is idle again after about 2 s at 1/s)
    let (l, clock) = limiter();
    let mut largest = 0;
    for n in 0..20_000 {
        let _ = l.check(&ip(n));
        clock.advance(Duration::from_millis(10));
        largest = largest.max(l.keys());
    }
    // Then the table never held much more than the keys of the last
    // few seconds plus one eviction period
    assert!(largest < 2 * EVICT_EVERY as usize, "{largest} keys");
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn app_limiter() -> (Arc<Limiter<FakeRelativeClock>>, FakeRelativeClock) {
    let (l, clock) = limiter();
    (Arc::new(l), clock)
}

macro_rules! app {
    ($limiter:expr, $identify:expr) => {
        init_service(
            App::new()
                .wrap(RateLimit::new($limiter, $identify))
                .route("/orders", web::get().to(ok))
                .route("/health", web::get().to(ok)),
        )
        .await
    };
}

fn from(path: &str) -> actix_web::test::TestRequest {
    TestRequest::get()
        .uri(path)
        .peer_addr("127.0.0.1:40000".parse().expect("socket address"))
}

#[actix_web::test]
async fn the_middleware_answers_429_with_retry_after_and_a_problem() {
    // Given an anonymous client with a burst of 3
    let (limiter, _) = app_limiter();
    let app = app!(limiter.clone(), Arc::new(peer_ip));
    // When it sends 3 requests, they pass
    for _ in 0..3 {
        let res = call_service(&app, from("/orders").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Then the 4th is refused with Retry-After and a problem body
    let res = call_service(&app, from("/orders").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("retry-after").as_deref(), Some("1"));
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: serde_json::Value = read_body_json(res).await;
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["status"], 429);
    assert_eq!(
        body["detail"],
        "more than 1 requests/s (burst 3) from 127.0.0.1; retry in 1 s"
    );
    assert_eq!(limiter.refused(), 1);
}

#[actix_web::test]
async fn health_is_never_limited() {
    // Given a client that spent its burst
    let (limiter, _) = app_limiter();
    let app = app!(limiter.clone(), Arc::new(peer_ip));
    for _ in 0..3 {
        call_service(&app, from("/orders").to_request()).await;
    }
    // Then /health still answers, however often it is polled
    for _ in 0..100 {
        let res = call_service(&app, from("/health").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(limiter.refused(), 0);
    assert_eq!(
        call_service(&app, from("/orders").to_request())
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[actix_web::test]
async fn users_are_limited_by_subject_and_the_token_is_never_echoed() {
    // Given an identify that maps a bearer token to its subject, as
    // the gateway's JWT check does
    let identify: Identify = Arc::new(|req: &ServiceRequest| {
        match req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some("Bearer secret-token-of-alice") => Caller::User("alice".into()),
            _ => peer_ip(req),
        }
    });
    let (limiter, _) = app_limiter();
    let app = app!(limiter, identify);
    let as_alice = || {
        from("/orders")
            .insert_header(("authorization", "Bearer secret-token-of-alice"))
            .to_request()
    };
    // When alice spends her burst of 5
    for _ in 0..5 {
        assert_eq!(
            call_service(&app, as_alice()).await.status(),
            StatusCode::OK
        );
    }
    // Then she is refused, told her limit, and not shown her token
    let res = call_service(&app, as_alice()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = read_body_json(res).await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("10 requests/s") && detail.contains("user alice"),
        "{detail}"
    );
    assert!(!detail.contains("secret"), "{detail}");
    // And anonymous requests from the same address still pass
    let res = call_service(&app, from("/orders").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn exempt_paths_are_configurable() {
    // Given /orders made exempt instead of the defaults
    let (limiter, _) = app_limiter();
    let app = init_service(
        App::new()
            .wrap(RateLimit::new(limiter, Arc::new(peer_ip)).exempt(["/orders"]))
            .route("/orders", web::get().to(ok))
            .route("/health", web::get().to(ok)),
    )
    .await;
    // Then /orders is never limited and /health now is
    for _ in 0..10 {
        let res = call_service(&app, from("/orders").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            call_service(&app, from("/health").to_request())
                .await
                .status(),
        );
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
}

#[test]
fn peer_ip_folds_mapped_addresses_and_defaults_to_unspecified() {
    let mapped = TestRequest::get()
        .peer_addr("[::ffff:10.0.0.7]:1234".parse().expect("socket address"))
        .to_srv_request();
    assert_eq!(
        peer_ip(&mapped),
        Caller::Ip("10.0.0.7".parse().expect("ip"))
    );
    let none = TestRequest::get().to_srv_request();
    assert_eq!(peer_ip(&none), Caller::Ip(Ipv4Addr::UNSPECIFIED.into()));
}
