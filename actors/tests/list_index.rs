//! A user's orders as a list index over a real sled store: newest first,
//! every order once across pages of a thousand, pages that stay stable while
//! new orders arrive, and the same list after a restart. (Each entry is
//! written in its event's transaction, so a crash cannot split them: see the
//! kill cases of `replay_properties.rs` for the transaction itself.)

use ordersaga_actors::aggregates::{Order, USER_ORDERS};
use ordersaga_actors::{Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::{OrderId, ProductId, UserId};
use std::collections::HashSet;
use std::path::Path;
use uuid::Uuid;

fn open(dir: &Path) -> Journal {
    Journal::open(JournalConfig::new(dir.join("orders"))).expect("open")
}

async fn place(orders: &Service<Order>, user_id: UserId) -> OrderId {
    let order_id = OrderId::new();
    let reply = orders
        .send(OrderCommand::Place {
            order_id,
            user_id,
            lines: vec![OrderLine {
                product_id: ProductId::new(),
                quantity: 1,
            }],
        })
        .await
        .expect("answered");
    assert!(reply.outcome.is_accepted(), "{reply:?}");
    order_id
}

/// Every page of `user`'s orders, in order, `size` at a time.
fn pages(journal: &Journal, user: UserId, size: usize) -> Vec<Vec<Uuid>> {
    let mut pages = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = journal
            .list(
                USER_ORDERS,
                user.as_uuid().as_bytes(),
                cursor.as_deref(),
                size,
            )
            .unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().cloned();
        pages.push(
            page.iter()
                .map(|entry| Uuid::from_slice(&entry[8..24]).unwrap())
                .collect(),
        );
    }
    pages
}

#[actix_rt::test]
async fn a_thousand_orders_page_newest_first_each_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (user, other) = (UserId::new(), UserId::new());
    let mut placed = Vec::new();
    {
        let orders = Service::<Order>::start(open(dir.path()), ServiceConfig::default());
        for i in 0..1_000 {
            // The list is ordered by the millisecond of placing, and the
            // event's time lies between these two.
            let before = chrono::Utc::now().timestamp_millis();
            let id = place(&orders, user).await.as_uuid();
            placed.push((id, before, chrono::Utc::now().timestamp_millis()));
            if i % 100 == 0 {
                place(&orders, other).await;
            }
        }
        // The store closes once every actor has let go of it.
        let journal = orders.journal().clone();
        orders.shutdown().await;
        drop(orders);
        while journal.handles() > 1 {
            tokio::task::yield_now().await;
        }
    }
    let journal = open(dir.path());
    let all = pages(&journal, user, 100);
    assert_eq!(all.len(), 10);
    let listed: Vec<Uuid> = all.concat();
    // Every order once, none of the other user's, newest first (orders of
    // one millisecond may come in either order).
    assert_eq!(listed.len(), 1_000);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 1_000);
    let position = |id: &Uuid| placed.iter().position(|p| p.0 == *id).unwrap();
    // A neighbour listed first although it was placed in an earlier
    // millisecond than the next one breaks the order; two placed within
    // the same millisecond may come either way.
    let out_of_order = listed
        .windows(2)
        .filter(|w| {
            let (a, b) = (&placed[position(&w[0])], &placed[position(&w[1])]);
            position(&w[0]) < position(&w[1]) && a.2 < b.1
        })
        .count();
    assert_eq!(
        out_of_order, 0,
        "{out_of_order} neighbours out of order across milliseconds: the list is not newest first"
    );
    assert!(position(&listed[0]) > 900 && position(&listed[999]) < 100);

    // A page taken, then new orders, then the next page: nothing repeated,
    // nothing skipped.
    let first = journal
        .list(USER_ORDERS, user.as_uuid().as_bytes(), None, 10)
        .unwrap();
    drop(journal);
    // Reopened: the list is read from the store, not from memory.
    let orders = Service::<Order>::start(open(dir.path()), ServiceConfig::default());
    let newer = place(&orders, user).await;
    let rest = orders
        .journal()
        .list(
            USER_ORDERS,
            user.as_uuid().as_bytes(),
            first.last().map(Vec::as_slice),
            2_000,
        )
        .unwrap();
    assert_eq!(
        first.len() + rest.len(),
        1_000,
        "the new order is before the cursor"
    );
    let again = pages(orders.journal(), user, 100).concat();
    assert_eq!(again[0], newer.as_uuid(), "the newest order comes first");
    assert_eq!(again.len(), 1_001);
    orders.shutdown().await;
}

#[actix_rt::test]
async fn a_missing_list_entry_is_reported_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new();
    let order = {
        let orders = Service::<Order>::start(open(dir.path()), ServiceConfig::default());
        let order = place(&orders, user).await;
        let journal = orders.journal().clone();
        orders.shutdown().await;
        drop(orders);
        while journal.handles() > 1 {
            tokio::task::yield_now().await;
        }
        order
    };
    let stream = ordersaga_actors::recovery::stream_of::<Order>(order.as_uuid());
    let journal = open(dir.path());
    let whole = ordersaga_actors::recovery::index_differences::<Order>(&journal, &stream).unwrap();
    assert!(whole.is_empty(), "{whole:?}");
    drop(journal);
    // Given the entry lost from the store's lists,
    {
        let db = sled::open(dir.path().join("orders")).unwrap();
        let lists = db.open_tree("lists").unwrap();
        lists.clear().unwrap();
        db.flush().unwrap();
    }
    // then the check against the log names the event.
    let journal = open(dir.path());
    let found = ordersaga_actors::recovery::index_differences::<Order>(&journal, &stream).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("#1 has no entry in its list index"),
        "{found:?}"
    );
}
