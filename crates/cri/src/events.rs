//! GetContainerEvents: while someone listens, a watcher compares the containers on
//! disk with what it saw a moment before and sends CREATED, STARTED, STOPPED and DELETED
//! events. Watching the records (rather than hooking the RPCs) also catches a container
//! that exits by itself, one removed with its pod, and changes a restarted server finds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::api;
use crate::Cri;

/// How often the watcher looks.
const PERIOD: Duration = Duration::from_millis(500);

pub(crate) struct Events {
    tx: broadcast::Sender<api::ContainerEventResponse>,
}

/// The last state seen of each container, and its pod.
type Seen = HashMap<String, (api::ContainerState, String)>;

impl Events {
    /// Start the watcher on the current tokio runtime.
    pub fn start(cri: Arc<Cri>) -> Arc<Events> {
        let (tx, _) = broadcast::channel(1024);
        let ev = Arc::new(Events { tx });
        let watcher = ev.clone();
        tokio::spawn(async move {
            let mut seen: Option<Seen> = None;
            loop {
                tokio::time::sleep(PERIOD).await;
                if watcher.tx.receiver_count() == 0 {
                    seen = None;
                    continue;
                }
                let (cri, prev) = (cri.clone(), seen.take());
                let Ok((now, events)) =
                    tokio::task::spawn_blocking(move || diff(&cri, prev.as_ref())).await
                else {
                    continue;
                };
                for e in events {
                    let _ = watcher.tx.send(e);
                }
                seen = Some(now);
            }
        });
        ev
    }

    pub fn subscribe(&self) -> broadcast::Receiver<api::ContainerEventResponse> {
        self.tx.subscribe()
    }
}

/// The current states and the events since `prev` (none on the first look: a new
/// listener hears of changes, not of what already exists).
fn diff(cri: &Cri, prev: Option<&Seen>) -> (Seen, Vec<api::ContainerEventResponse>) {
    use api::ContainerEventType as T;
    use api::ContainerState as S;
    let mut now = Seen::new();
    let mut out = Vec::new();
    let Ok(containers) = cri.layout.containers() else {
        return (prev.cloned().unwrap_or_default(), out);
    };
    let event = |id: &str, pod: &str, t: T| {
        let (status, _) = cri
            .container_status(id, false)
            .map_or((None, ()), |(s, _)| (Some(s), ()));
        api::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: t as i32,
            created_at: crate::meta::now_nanos(),
            pod_sandbox_status: cri.pod_sandbox_status(pod).ok(),
            containers_statuses: status.into_iter().collect(),
        }
    };
    for c in containers {
        let Ok(o) = cri.observe(&c) else { continue };
        if let Some(prev) = prev {
            let before = prev.get(&c.id).map(|(s, _)| *s);
            let steps: &[T] = match (before, o.state) {
                (None, S::ContainerCreated) => &[T::ContainerCreatedEvent],
                (None, S::ContainerRunning) => {
                    &[T::ContainerCreatedEvent, T::ContainerStartedEvent]
                }
                (None, S::ContainerExited) => &[
                    T::ContainerCreatedEvent,
                    T::ContainerStartedEvent,
                    T::ContainerStoppedEvent,
                ],
                (Some(S::ContainerCreated), S::ContainerRunning) => &[T::ContainerStartedEvent],
                (Some(S::ContainerCreated), S::ContainerExited) => {
                    &[T::ContainerStartedEvent, T::ContainerStoppedEvent]
                }
                (Some(S::ContainerRunning), S::ContainerExited) => &[T::ContainerStoppedEvent],
                _ => &[],
            };
            out.extend(steps.iter().map(|t| event(&c.id, &c.pod_id, *t)));
        }
        now.insert(c.id.clone(), (o.state, c.pod_id.clone()));
    }
    if let Some(prev) = prev {
        for (id, (_, pod)) in prev.iter().filter(|(id, _)| !now.contains_key(*id)) {
            out.push(event(id, pod, T::ContainerDeletedEvent));
        }
    }
    (now, out)
}
