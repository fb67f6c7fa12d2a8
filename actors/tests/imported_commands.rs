//! A store rebuilt from events (an import of an export, a restore from the
//! events topic) remembers the commands its events came from: a command
//! delivered again is answered with its first reply, not applied twice.

use ordersaga_actors::aggregate::Aggregate;
use ordersaga_actors::aggregates::Product;
use ordersaga_actors::journal::{index_imported, remember_imported_commands, Import};
use ordersaga_actors::recovery::decode_stored;
use ordersaga_actors::{Execute, Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::{Cents, CommandEnvelope, CommandId, OrderId, Outcome, ProductId, Reply};
use std::collections::BTreeMap;

fn journal() -> Journal {
    Journal::open(JournalConfig::tmp()).expect("open temp journal")
}

/// Copies every event of every `A` stream of `from` into the new store `to`
/// and indexes it, as `ordersaga import` and `ordersaga restore` do (on a
/// thread of their own: an import waits for its writes).
fn rebuild<A: Aggregate>(from: &Journal, to: &Journal) {
    let (from, to) = (from.clone(), to.clone());
    std::thread::spawn(move || copy::<A>(&from, &to))
        .join()
        .expect("the import finished");
}

fn copy<A: Aggregate>(from: &Journal, to: &Journal) {
    let mut import = Import::new(to).unwrap();
    let streams: Vec<_> = from.streams(Some(A::KIND)).map(|s| s.unwrap().0).collect();
    for stream in streams {
        for item in from.read_stream(&stream, 1) {
            let (sequence, bytes) = item.unwrap();
            let envelope = decode_stored::<A>(&stream, sequence, &bytes).unwrap();
            import.push::<A>(&envelope).unwrap();
        }
    }
    import.finish().unwrap();
    index_imported::<A>(to).unwrap();
    remember_imported_commands::<A>(to).unwrap();
}

fn processed(journal: &Journal) -> BTreeMap<CommandId, Vec<u8>> {
    journal.processed_commands().map(|p| p.unwrap()).collect()
}

fn product(id: ProductId) -> InventoryCommand {
    InventoryCommand::AddProduct {
        product_id: id,
        sku: "W-1".into(),
        name: "widget".into(),
        unit_price: Cents(250),
        stock: 10,
    }
}

fn reserve(id: ProductId, quantity: u64) -> CommandEnvelope<InventoryCommand> {
    CommandEnvelope::new(InventoryCommand::Reserve {
        product_id: id,
        order_id: OrderId::new(),
        quantity,
    })
}

#[actix_rt::test]
async fn the_accepted_commands_are_remembered_exactly_as_the_service_wrote_them() {
    // Given a store whose service decided accepted and rejected commands,
    let original = journal();
    let products: Service<Product> = Service::start(original.clone(), ServiceConfig::default());
    let widget = ProductId::new();
    let added = CommandEnvelope::new(product(widget));
    let reserved = reserve(widget, 3);
    let too_many = reserve(widget, 100);
    let restocked = CommandEnvelope::new(InventoryCommand::Restock {
        product_id: widget,
        quantity: 5,
    });
    for command in [&added, &reserved, &too_many, &restocked] {
        products
            .execute(Execute::new(command.clone()))
            .await
            .unwrap();
    }
    products.shutdown().await;

    // when its events are imported into a new store,
    let rebuilt = journal();
    rebuild::<Product>(&original, &rebuilt);

    // then every accepted command has the entry the service wrote, byte for
    // byte (the reservation's price included), and the rejection none.
    let mut expected = processed(&original);
    let rejected = expected.remove(&too_many.command_id).expect("stored");
    let rejected: Reply = ordersaga_events::codec::decode(&rejected).unwrap();
    assert!(matches!(rejected.outcome, Outcome::Rejected(_)));
    assert_eq!(expected.len(), 3);
    assert_eq!(processed(&rebuilt), expected);
}

#[actix_rt::test]
async fn a_command_delivered_again_after_a_rebuild_is_answered_not_applied() {
    let original = journal();
    let products: Service<Product> = Service::start(original.clone(), ServiceConfig::default());
    let widget = ProductId::new();
    let restock = CommandEnvelope::new(InventoryCommand::Restock {
        product_id: widget,
        quantity: 5,
    });
    products.send(product(widget)).await.unwrap();
    let first = products
        .execute(Execute::new(restock.clone()))
        .await
        .unwrap();
    products.shutdown().await;
    let rebuilt = journal();
    rebuild::<Product>(&original, &rebuilt);

    // Given a service on the rebuilt store, when the restock comes again
    // (a consumer resuming before it, with no stored offsets),
    let products: Service<Product> = Service::start(rebuilt.clone(), ServiceConfig::default());
    let again = products
        .execute(Execute::new(restock.clone()))
        .await
        .unwrap();
    // then it gets its first reply and the stock is not restocked twice,
    assert_eq!(again, first);
    let state = products.state(widget.as_uuid()).await.unwrap();
    assert_eq!(state.version, 2);
    // while a new command is decided as usual.
    let next = products
        .send(InventoryCommand::Restock {
            product_id: widget,
            quantity: 1,
        })
        .await
        .unwrap();
    assert_eq!(next.outcome, Outcome::Accepted { sequences: vec![3] });
}
