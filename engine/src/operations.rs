//! Background operations: 202 + `Location`, status changes pushed as events, `wait`,
//! cancellation, and retention after completion.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::Error;
use crate::events::EventHub;
use crate::model::rfc3339nano;

/// How long a finished operation stays visible (LXD keeps 5 s).
pub const RETENTION: Duration = Duration::from_secs(10);

/// Operation classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Task,
    Websocket,
    Token,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Class::Task => "task",
            Class::Websocket => "websocket",
            Class::Token => "token",
        }
    }
}

/// LXD status codes used by operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Running,
    Cancelling,
    Success,
    Failure,
    Cancelled,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Pending => 105,
            Status::Running => 103,
            Status::Cancelling => 104,
            Status::Success => 200,
            Status::Failure => 400,
            Status::Cancelled => 401,
        }
    }

    /// The display name, as LXD spells it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Running => "Running",
            Status::Cancelling => "Cancelling",
            Status::Success => "Success",
            Status::Failure => "Failure",
            Status::Cancelled => "Cancelled",
        }
    }

    /// Whether the operation has finished.
    pub fn is_final(self) -> bool {
        self.code() >= 200
    }
}

/// What an operation is about, given when it is created.
pub struct OpSpec {
    pub class: Class,
    pub description: String,
    pub project: String,
    /// e.g. `instances` → `["/1.0/instances/c1"]`.
    pub resources: BTreeMap<String, Vec<String>>,
    pub metadata: Value,
    pub may_cancel: bool,
}

impl OpSpec {
    /// A task operation on one resource kind.
    pub fn task(description: &str, project: &str, kind: &str, urls: Vec<String>) -> Self {
        let mut resources = BTreeMap::new();
        resources.insert(kind.to_string(), urls);
        OpSpec {
            class: Class::Task,
            description: description.to_string(),
            project: project.to_string(),
            resources,
            metadata: Value::Null,
            may_cancel: false,
        }
    }
}

struct OpState {
    status: Status,
    updated_at: DateTime<Utc>,
    metadata: Value,
    err: String,
    resources: BTreeMap<String, Vec<String>>,
}

/// One operation.
pub struct Operation {
    pub id: String,
    pub class: Class,
    pub description: String,
    pub project: String,
    created_at: DateTime<Utc>,
    may_cancel: bool,
    state: Mutex<OpState>,
    done: watch::Sender<bool>,
    cancel: watch::Sender<bool>,
    events: EventHub,
}

impl Operation {
    fn lock(&self) -> MutexGuard<'_, OpState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The URL of this operation.
    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// The operation as LXD renders it.
    pub fn render(&self) -> Value {
        let s = self.lock();
        let resources: serde_json::Map<String, Value> =
            s.resources.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        json!({
            "id": self.id,
            "class": self.class.as_str(),
            "description": self.description,
            "created_at": rfc3339nano(&self.created_at),
            "updated_at": rfc3339nano(&s.updated_at),
            "status": s.status.name(),
            "status_code": s.status.code(),
            "resources": if resources.is_empty() { Value::Null } else { Value::Object(resources) },
            "metadata": if s.metadata.is_null() { json!({}) } else { s.metadata.clone() },
            "may_cancel": self.may_cancel && !s.status.is_final(),
            "err": s.err,
            "location": "none",
        })
    }

    fn emit(&self) {
        self.events.send("operation", &self.project, self.render());
    }

    fn set_status(&self, status: Status, err: Option<String>) {
        {
            let mut s = self.lock();
            if s.status.is_final() {
                return;
            }
            s.status = status;
            s.updated_at = Utc::now();
            if let Some(e) = err {
                s.err = e;
            }
        }
        self.emit();
        if status.is_final() {
            // send_replace: `send` drops the value when nobody is subscribed yet, and a
            // later `wait` on a synchronously completed operation would then hang.
            self.done.send_replace(true);
        }
    }

    /// Replaces the metadata and pushes an event (progress reporting).
    pub fn set_metadata(&self, metadata: Value) {
        {
            let mut s = self.lock();
            s.metadata = metadata;
            s.updated_at = Utc::now();
        }
        self.emit();
    }

    /// Merges keys into the metadata object and pushes an event.
    pub fn merge_metadata(&self, extra: Value) {
        {
            let mut s = self.lock();
            if !s.metadata.is_object() {
                s.metadata = json!({});
            }
            if let (Some(m), Value::Object(e)) = (s.metadata.as_object_mut(), extra) {
                m.extend(e);
            }
            s.updated_at = Utc::now();
        }
        self.emit();
    }

    /// The current metadata.
    pub fn metadata(&self) -> Value {
        self.lock().metadata.clone()
    }

    /// Sets the resources (used when a generated name is known only later).
    pub fn set_resources(&self, resources: BTreeMap<String, Vec<String>>) {
        self.lock().resources = resources;
    }

    /// Waits until the operation finishes or the timeout passes.
    pub async fn wait(&self, timeout: Option<Duration>) {
        let mut rx = self.done.subscribe();
        let fut = rx.wait_for(|d| *d);
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, fut).await;
            }
            None => {
                let _ = fut.await;
            }
        }
    }

    /// A receiver that turns true when the client cancels.
    pub fn cancelled(&self) -> watch::Receiver<bool> {
        self.cancel.subscribe()
    }

    /// Requests cancellation (`DELETE /1.0/operations/<id>`).
    pub fn cancel(&self) -> Result<(), Error> {
        if self.status().is_final() {
            return Err(Error::bad("Only running operations can be cancelled"));
        }
        if !self.may_cancel {
            return Err(Error::bad("This operation can't be cancelled"));
        }
        let _ = self.cancel.send(true);
        if self.class == Class::Token {
            self.set_status(Status::Cancelled, Some("Operation cancelled".into()));
        }
        Ok(())
    }

    /// Finishes a long-lived operation (tokens, websockets) from outside its task.
    pub fn finish(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.set_status(Status::Success, None),
            Err(e) => self.set_status(Status::Failure, Some(e)),
        }
    }
}

/// The registry of operations.
#[derive(Clone)]
pub struct Operations {
    ops: Arc<Mutex<HashMap<String, Arc<Operation>>>>,
    events: EventHub,
}

impl Operations {
    /// An empty registry publishing to `events`.
    pub fn new(events: EventHub) -> Self {
        Operations { ops: Arc::new(Mutex::new(HashMap::new())), events }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Operation>>> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an operation without running anything (tokens, websockets).
    pub fn register(&self, spec: OpSpec) -> Arc<Operation> {
        let now = Utc::now();
        let (done, _) = watch::channel(false);
        let (cancel, _) = watch::channel(false);
        let op = Arc::new(Operation {
            id: uuid::Uuid::new_v4().to_string(),
            class: spec.class,
            description: spec.description,
            project: spec.project,
            created_at: now,
            may_cancel: spec.may_cancel,
            state: Mutex::new(OpState {
                status: Status::Running,
                updated_at: now,
                metadata: spec.metadata,
                err: String::new(),
                resources: spec.resources,
            }),
            done,
            cancel,
            events: self.events.clone(),
        });
        self.map().insert(op.id.clone(), op.clone());
        op.emit();
        let this = self.clone();
        let weak = Arc::downgrade(&op);
        tokio::spawn(async move {
            let Some(op) = weak.upgrade() else { return };
            op.wait(None).await;
            let id = op.id.clone();
            drop(op);
            tokio::time::sleep(RETENTION).await;
            this.map().remove(&id);
        });
        op
    }

    /// Starts `f` as a task operation; its result becomes Success or Failure.
    pub fn start<F, Fut>(&self, spec: OpSpec, f: F) -> Arc<Operation>
    where
        F: FnOnce(Arc<Operation>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let op = self.register(spec);
        let task_op = op.clone();
        tokio::spawn(async move {
            let res = f(task_op.clone()).await;
            task_op.finish(res.map_err(|e| e.to_string()));
        });
        op
    }

    /// Registers an operation whose work was already done synchronously.
    pub fn completed(&self, spec: OpSpec) -> Arc<Operation> {
        let op = self.register(spec);
        op.finish(Ok(()));
        op
    }

    /// Looks an operation up.
    pub fn get(&self, id: &str) -> Option<Arc<Operation>> {
        self.map().get(id).cloned()
    }

    /// Every known operation, optionally of one project.
    pub fn list(&self, project: Option<&str>) -> Vec<Arc<Operation>> {
        let mut v: Vec<_> =
            self.map().values().filter(|o| project.is_none_or(|p| o.project == p)).cloned().collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn task_success_and_failure_are_final_and_evented() {
        let hub = EventHub::new();
        let mut rx = hub.subscribe();
        let ops = Operations::new(hub);
        let op = ops.start(OpSpec::task("t", "default", "instances", vec![]), |_| async { Ok(()) });
        op.wait(Some(Duration::from_secs(5))).await;
        assert_eq!(op.status(), Status::Success);
        let first = rx.recv().await.unwrap();
        assert_eq!(first.kind, "operation");
        let op2 = ops.start(OpSpec::task("t", "default", "instances", vec![]), |_| async {
            Err(Error::bad("boom"))
        });
        op2.wait(Some(Duration::from_secs(5))).await;
        assert_eq!(op2.status(), Status::Failure);
        assert_eq!(op2.render()["err"], "boom");
        assert!(ops.get(&op2.id).is_some());
    }

    #[tokio::test]
    async fn wait_on_a_completed_operation_returns_at_once() {
        let ops = Operations::new(EventHub::new());
        let op = ops.completed(OpSpec::task("t", "default", "instances", vec![]));
        let t = std::time::Instant::now();
        op.wait(Some(Duration::from_secs(5))).await;
        assert!(t.elapsed() < Duration::from_secs(1), "wait took {:?}", t.elapsed());
        assert_eq!(op.status(), Status::Success);
    }

    #[tokio::test]
    async fn tokens_cancel_and_tasks_refuse() {
        let ops = Operations::new(EventHub::new());
        let mut spec = OpSpec::task("tok", "default", "certificates", vec![]);
        spec.class = Class::Token;
        spec.may_cancel = true;
        let op = ops.register(spec);
        op.cancel().unwrap();
        assert_eq!(op.status(), Status::Cancelled);
        assert!(op.cancel().is_err());
        let op2 = ops.register(OpSpec::task("t", "default", "x", vec![]));
        assert!(op2.cancel().is_err());
    }
}
