//! A gateway in front of a test [`Shop`]: fixed signing key, a configured
//! administrator, a manual breaker clock, and an HTTP client that speaks
//! JSON with bearer tokens.

use super::http::{request_with, Answer};
use super::shop::Shop;
use super::TestBroker;
use ordersaga::gateway::admin::AdminAccount;
use ordersaga::gateway::breaker::ManualClock;
use ordersaga::gateway::jwt::TokenKeys;
use ordersaga::gateway::{self, GatewayOptions, RunningGateway};
use std::sync::Arc;
use std::time::Duration;

/// The administrator every test gateway is configured with.
pub const ADMIN_EMAIL: &str = "admin@shop.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "the admin's long password";
/// The signing key of every test gateway.
pub const KEY: &str = "test-signing-key-of-at-least-32-bytes";

/// A running gateway.
pub struct Gateway {
    /// The gateway.
    pub running: RunningGateway,
    /// Its token keys (tests forge expired tokens with them).
    pub keys: TokenKeys,
    /// The breakers' clock.
    pub clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway named `id` on `shop`'s cluster; `tune` adjusts the
    /// options first.
    pub async fn start(
        broker: &TestBroker,
        shop: &Shop,
        id: &str,
        tune: impl FnOnce(&mut GatewayOptions),
    ) -> Gateway {
        let topics = gateway::server::topics(id);
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        broker.create_topics(&shop.kafka, &topics).await;
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::new(
            KEY.as_bytes(),
            "test",
            "ordersaga-test",
            Duration::from_secs(600),
        )
        .unwrap();
        let clock = ManualClock::new();
        let mut options =
            GatewayOptions::new(shop.kafka.clone(), "127.0.0.1:0", dir.path(), keys.clone());
        options.instance_id = id.to_string();
        options.admin = Some(AdminAccount {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        });
        options.breaker_clock = Arc::new(clock.clone());
        // Generous limits: a slow broker must not turn a test's steps into
        // 202s, and the flood test sets its own rate limits.
        options.limits.command_timeout = super::PATIENCE;
        tune(&mut options);
        let running = gateway::start(options).await.expect("start the gateway");
        Gateway {
            running,
            keys,
            clock,
            _dir: dir,
        }
    }

    /// `method path` with an optional bearer `token`, extra `headers` and a
    /// JSON `body`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Answer {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(bearer) = &bearer {
            all.push(("Authorization", bearer));
        }
        let body = body.map(|b| b.to_string());
        request_with(self.running.address, method, path, &all, body.as_deref()).await
    }

    /// Registers an account; returns its id.
    pub async fn register(&self, email: &str, password: &str) -> String {
        let answer = self
            .call(
                "POST",
                "/users",
                None,
                &[],
                Some(serde_json::json!({"email": email, "username": "shopper", "password": password})),
            )
            .await;
        assert_eq!(answer.status, 201, "register {email}: {}", answer.body);
        answer.json()["user_id"].as_str().unwrap().to_string()
    }

    /// Logs in; returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let answer = self
            .call(
                "POST",
                "/auth/token",
                None,
                &[],
                Some(serde_json::json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(answer.status, 200, "login {email}: {}", answer.body);
        answer.json()["access_token"].as_str().unwrap().to_string()
    }

    /// A new account with `funds` cents deposited; returns its token.
    pub async fn shopper(&self, funds: u64) -> String {
        let email = format!("{}@shop.test", uuid::Uuid::new_v4().simple());
        self.register(&email, "a long password").await;
        let token = self.login(&email, "a long password").await;
        if funds > 0 {
            let answer = self
                .call(
                    "POST",
                    "/users/me/deposits",
                    Some(&token),
                    &[],
                    Some(serde_json::json!({"amount": funds})),
                )
                .await;
            assert_eq!(answer.status, 200, "deposit: {}", answer.body);
        }
        token
    }

    /// A product added by the administrator; returns its id.
    pub async fn product(&self, admin: &str, price: u64, stock: u64) -> String {
        let sku = format!("SKU-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let answer = self
            .call(
                "POST",
                "/products",
                Some(admin),
                &[],
                Some(serde_json::json!({"sku": sku, "name": "a thing", "unit_price": price, "stock": stock})),
            )
            .await;
        assert_eq!(answer.status, 201, "add a product: {}", answer.body);
        answer.json()["product_id"].as_str().unwrap().to_string()
    }

    /// Places an order of `lines` and waits for it to settle; returns the
    /// answer.
    pub async fn order(&self, token: &str, lines: &[(&str, u64)]) -> Answer {
        let lines: Vec<serde_json::Value> = lines
            .iter()
            .map(|(p, q)| serde_json::json!({"product_id": p, "quantity": q}))
            .collect();
        self.call(
            "POST",
            "/orders?wait=60s",
            Some(token),
            &[],
            Some(serde_json::json!({ "lines": lines })),
        )
        .await
    }
}

/// Lets a rebuilt read model and a live one read their topics to the same
/// offsets (a projector follows the rebuilt one meanwhile). A rebuild stops
/// at the ends the cluster reported when it began, and Tansu 0.6 reports an
/// end short of a partition's last batch, so the two are compared only
/// once both have read the same records.
pub async fn converge(
    kafka: &ordersaga::kafka::KafkaConfig,
    live: &ordersaga::gateway::readmodel::ReadModel,
    rebuilt: &ordersaga::gateway::readmodel::ReadModel,
) {
    let follower = ordersaga::gateway::readmodel::Projector::start(kafka, rebuilt.clone())
        .await
        .expect("follow the rebuilt read model");
    for _ in 0..20 {
        let (a, b) = (live.offsets().unwrap(), rebuilt.offsets().unwrap());
        if a == b {
            follower.stop().await;
            return;
        }
        let mut targets = a.clone();
        for (partition, next) in b {
            let entry = targets.entry(partition).or_insert(next);
            *entry = (*entry).max(next);
        }
        assert!(
            live.wait_for_offsets(&targets, super::PATIENCE).await,
            "live reaches {targets:?}"
        );
        assert!(
            rebuilt.wait_for_offsets(&targets, super::PATIENCE).await,
            "rebuilt reaches {targets:?}"
        );
    }
    panic!("the live and rebuilt read models never read the same records");
}
