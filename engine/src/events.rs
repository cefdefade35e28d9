//! The event hub behind `/1.0/events`: operation, lifecycle and logging events.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// One event as sent on the websocket.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: String,
    pub metadata: Value,
    pub location: String,
    pub project: String,
}

/// Fan-out of events to every connected listener. Slow listeners lose old events
/// rather than slowing the daemon down.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// A hub with a bounded backlog per listener.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        EventHub { tx }
    }

    /// Sends an event to every listener (none is fine).
    pub fn send(&self, kind: &'static str, project: &str, metadata: Value) {
        let ev = Event {
            kind,
            timestamp: crate::model::rfc3339nano(&chrono::Utc::now()),
            metadata,
            location: "none".into(),
            project: project.to_string(),
        };
        let _ = self.tx.send(Arc::new(ev));
    }

    /// A lifecycle event such as `instance-created` for `/1.0/instances/c1`.
    pub fn lifecycle(&self, project: &str, action: &str, source: &str, context: Value) {
        self.send(
            "lifecycle",
            project,
            json!({"action": action, "source": source, "context": context, "requestor": null}),
        );
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// How many listeners are connected (used by the logging layer to stay cheap).
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// A tracing layer that turns log records into `logging` events.
pub struct LoggingLayer {
    hub: EventHub,
}

impl LoggingLayer {
    /// A layer feeding `hub`.
    pub fn new(hub: EventHub) -> Self {
        LoggingLayer { hub }
    }
}

struct MessageVisitor {
    message: String,
    context: serde_json::Map<String, Value>,
}

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.context.insert(field.name().to_string(), Value::String(format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.context.insert(field.name().to_string(), Value::String(value.to_string()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LoggingLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        if self.hub.listeners() == 0 {
            return;
        }
        let mut v = MessageVisitor { message: String::new(), context: serde_json::Map::new() };
        event.record(&mut v);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        self.hub
            .send("logging", "", json!({"message": v.message, "level": level, "context": v.context}));
    }
}
