//! The seed's models checked: property tests over random inputs, and the lifecycle
//! state machine exhaustively.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::collections::BTreeSet;

use berth_policy::models::capset::{Creds, File, Transition, CAP_SETPCAP};
use berth_policy::models::cgroup::{allocate, edges, le, Node};
use berth_policy::models::idmap::{lookup, valid_by_enumeration, Extent};
use berth_policy::models::lifecycle::{step, Command, State, COMMANDS, STATES};
use berth_runtime::lifecycle::{self as runtime_lifecycle, After, Operation};
use proptest::prelude::*;
use stateright::{Checker, Model, Property};

// ---- id maps (§2.4.4): the runtime's validator agrees with the enumerated relation ----

fn extent() -> impl Strategy<Value = Extent> {
    // Small ids so overlaps are frequent; a few near the top of the id space to hit overflow.
    prop_oneof![
        4 => (0u32..40, 0u32..40, 0u32..12).prop_map(|(c, h, s)| Extent { container: c, host: h, size: s }),
        1 => (u32::MAX - 8..=u32::MAX, 0u32..40, 1u32..12).prop_map(|(c, h, s)| Extent { container: c, host: h, size: s }),
    ]
}

fn oci(map: &[Extent]) -> Vec<oci_spec::runtime::LinuxIdMapping> {
    map.iter()
        .map(|e| {
            serde_json::from_value(serde_json::json!({
                "containerID": e.container, "hostID": e.host, "size": e.size
            }))
            .unwrap()
        })
        .collect()
}

proptest! {
    #[test]
    fn runtime_id_map_validation_matches_the_model(map in prop::collection::vec(extent(), 0..5)) {
        // enumeration is only cheap for small extents; the top-of-range ones are tiny too
        let model = valid_by_enumeration(&map);
        let runtime = berth_runtime::config::validate_id_map("uidMappings", &oci(&map)).is_ok();
        prop_assert_eq!(model, runtime, "map {:?}", map);
    }

    #[test]
    fn a_valid_map_is_injective(map in prop::collection::vec(extent(), 0..5)) {
        prop_assume!(valid_by_enumeration(&map));
        let mut seen = BTreeSet::new();
        for id in 0u32..64 {
            if let Some(h) = lookup(&map, id) {
                prop_assert!(seen.insert(h), "two container ids on host id {}", h);
            }
        }
    }
}

// ---- capabilities (§2.4.1, §4.4.2): delegation only removes rights ----

const NCAPS: u32 = 12; // a small universe (CAP_SETPCAP = 8 is inside it)

fn mask() -> impl Strategy<Value = u64> {
    0u64..(1 << NCAPS)
}

fn transition() -> impl Strategy<Value = Transition> {
    prop_oneof![
        (mask(), mask(), mask()).prop_map(|(i, p, e)| Transition::Capset { i, p, e }),
        (0..NCAPS).prop_map(Transition::DropBounding),
        (0..NCAPS).prop_map(Transition::RaiseAmbient),
        (0..NCAPS).prop_map(Transition::LowerAmbient),
        Just(Transition::SetNoNewPrivs),
        (1u32..3).prop_map(Transition::SetuidNonRoot),
        (
            any::<bool>(),
            prop::option::of((mask(), mask(), any::<bool>()))
        )
            .prop_map(|(setuid_root, caps)| Transition::Exec(File { setuid_root, caps })),
    ]
}

/// A process as a container's init starts it: root, permitted = effective = bounding.
fn start() -> impl Strategy<Value = Creds> {
    (mask(), any::<bool>()).prop_map(|(b, nnp)| Creds {
        no_new_privs: nnp,
        ..Creds::root(b | 1 << CAP_SETPCAP)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bounding_never_grows_and_bounds_everything(c0 in start(), ts in prop::collection::vec(transition(), 0..24)) {
        let mut c = c0;
        for t in ts {
            if let Ok(n) = c.apply(t) {
                prop_assert!(n.well_formed(), "{:?} -> {:?}", t, n);
                prop_assert_eq!(n.bounding & !c.bounding, 0, "bounding grew by {:?}", t);
                prop_assert_eq!(n.inheritable & !c0.bounding, 0);
                prop_assert_eq!(n.permitted & !(c0.bounding | c0.inheritable), 0, "{:?} gave more than the bounding set", t);
                c = n;
            }
        }
    }

    #[test]
    fn with_no_new_privs_no_transition_grows_permitted(c0 in start(), ts in prop::collection::vec(transition(), 0..24)) {
        let mut c = Creds { no_new_privs: true, ..c0 };
        for t in ts {
            if let Ok(n) = c.apply(t) {
                prop_assert_eq!(n.permitted & !c.permitted, 0, "{:?} grew permitted", t);
                prop_assert_eq!(n.effective & !c.permitted, 0, "{:?} grew effective", t);
                prop_assert!(n.no_new_privs, "no_new_privs cannot be cleared");
                c = n;
            }
        }
    }
}

#[test]
fn without_no_new_privs_a_setuid_root_exec_regains_rights() {
    // The counterexample that makes no_new_privs a barrier: a non-root process with
    // nothing permitted execs a setuid-root binary and gets the whole bounding set back.
    let c = Creds::root(0b1111)
        .apply(Transition::SetuidNonRoot(1000))
        .unwrap();
    assert_eq!(c.permitted, 0);
    let exec = Transition::Exec(File {
        setuid_root: true,
        caps: None,
    });
    assert_eq!(c.apply(exec).unwrap().permitted, 0b1111);
    let nnp = c.apply(Transition::SetNoNewPrivs).unwrap();
    assert_eq!(nnp.apply(exec).unwrap().permitted, 0);
}

// ---- cgroup trees (§2.2.6, §4.2.1) ----

fn tree() -> impl Strategy<Value = Node> {
    let leaf = (prop::option::of(0u64..1000), 0u64..300, 1u64..100).prop_map(
        |(limit, guarantee, weight)| Node {
            limit,
            guarantee,
            weight,
            children: vec![],
        },
    );
    leaf.prop_recursive(4, 40, 5, |inner| {
        (
            prop::option::of(0u64..1000),
            0u64..300,
            1u64..100,
            prop::collection::vec(inner, 0..5),
        )
            .prop_map(|(limit, guarantee, weight, children)| Node {
                limit,
                guarantee,
                weight,
                children,
            })
    })
}

proptest! {
    #[test]
    fn no_child_exceeds_its_parent(t in tree()) {
        let mut e = Vec::new();
        edges(&t, None, &mut e);
        for (parent, child) in e {
            prop_assert!(le(child, parent), "child {:?} > parent {:?}", child, parent);
        }
    }

    #[test]
    fn allocation_never_overdraws_and_respects_limits_and_guarantees(total in 0u64..5000, t in tree()) {
        let a = allocate(total, &t.children);
        prop_assert!(a.iter().sum::<u64>() <= total, "allocated {:?} of {}", a, total);
        let guaranteed: u64 = t.children.iter().map(|c| c.guarantee.min(c.limit.unwrap_or(u64::MAX))).sum();
        for (c, x) in t.children.iter().zip(&a) {
            prop_assert!(c.limit.is_none_or(|l| *x <= l));
            if guaranteed <= total {
                prop_assert!(*x >= c.guarantee.min(c.limit.unwrap_or(u64::MAX)));
            }
        }
    }
}

#[test]
fn cfs_shares_split_two_to_one() {
    // §7: 1024 vs 512 shares give 2:1 of a contended CPU.
    let n = |w| Node {
        limit: None,
        guarantee: 0,
        weight: w,
        children: vec![],
    };
    assert_eq!(allocate(3000, &[n(1024), n(512)]), vec![2000, 1000]);
}

// ---- the lifecycle (§3.1.1), model-checked, and compared with the runtime's table ----

/// A container as the model checker sees it: its state, and whether it was started.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Container {
    state: State,
    started: bool,
}

struct Lifecycle;

fn runtime_status(s: State) -> Option<berth_runtime::Status> {
    use berth_runtime::Status as R;
    Some(match s {
        State::Creating => R::Creating,
        State::Created => R::Created,
        State::Running => R::Running,
        State::Paused => R::Paused,
        State::Stopped => R::Stopped,
        State::Gone => return None,
    })
}

fn runtime_operation(c: Command) -> Operation {
    match c {
        Command::CreateCompletes => Operation::CreateCompletes,
        Command::Start => Operation::Start,
        Command::Kill => Operation::Kill,
        Command::Pause => Operation::Pause,
        Command::Resume => Operation::Resume,
        Command::Delete => Operation::Delete,
        Command::DeleteForce => Operation::DeleteForce,
        Command::Exec => Operation::Exec,
        Command::Observe => Operation::Observe,
        Command::InitExits => Operation::InitExits,
    }
}

/// The runtime's answer for `c` in `s`, in the model's terms.
fn runtime_step(s: State, c: Command) -> Option<State> {
    let status = runtime_status(s)?;
    Some(
        match runtime_lifecycle::transition(runtime_operation(c), status)? {
            After::Gone => State::Gone,
            After::Status(r) => STATES
                .into_iter()
                .find(|m| runtime_status(*m) == Some(r))
                .unwrap(),
        },
    )
}

impl Model for Lifecycle {
    type State = Container;
    type Action = Command;

    fn init_states(&self) -> Vec<Container> {
        vec![Container {
            state: State::Creating,
            started: false,
        }]
    }

    fn actions(&self, c: &Container, actions: &mut Vec<Command>) {
        actions.extend(
            COMMANDS
                .into_iter()
                .filter(|cmd| step(c.state, *cmd).is_some()),
        );
    }

    fn next_state(&self, c: &Container, cmd: Command) -> Option<Container> {
        Some(Container {
            state: step(c.state, cmd)?,
            started: c.started || cmd == Command::Start,
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut p = vec![
            Property::always(
                "the runtime's table agrees with the model",
                |_, c: &Container| {
                    COMMANDS
                        .into_iter()
                        .all(|cmd| runtime_step(c.state, cmd) == step(c.state, cmd))
                },
            ),
            Property::always("running or paused only after start", |_, c: &Container| {
                !matches!(c.state, State::Running | State::Paused) || c.started
            }),
            Property::always("start is admitted at most once", |_, c: &Container| {
                !(c.started && step(c.state, Command::Start).is_some())
            }),
            Property::always(
                "delete --force reaches gone from anywhere",
                |_, c: &Container| {
                    c.state == State::Gone
                        || step(c.state, Command::DeleteForce) == Some(State::Gone)
                },
            ),
            Property::always(
                "a stopped container never runs again",
                |_, c: &Container| {
                    c.state != State::Stopped
                        || COMMANDS
                            .into_iter()
                            .filter_map(|cmd| step(c.state, cmd))
                            .all(|n| matches!(n, State::Stopped | State::Gone))
                },
            ),
            Property::always("gone is final", |_, c: &Container| {
                c.state != State::Gone
                    || COMMANDS.into_iter().all(|cmd| step(c.state, cmd).is_none())
            }),
            Property::always(
                "kill is refused unless created, running or paused (spec)",
                |_, c: &Container| {
                    step(c.state, Command::Kill).is_some()
                        == matches!(c.state, State::Created | State::Running | State::Paused)
                },
            ),
        ];
        // Every state is reachable (stateright's properties are plain fns: one each).
        p.extend([
            Property::sometimes("created is reachable", |_, c: &Container| {
                c.state == State::Created
            }),
            Property::sometimes("running is reachable", |_, c: &Container| {
                c.state == State::Running
            }),
            Property::sometimes("paused is reachable", |_, c: &Container| {
                c.state == State::Paused
            }),
            Property::sometimes("stopped is reachable", |_, c: &Container| {
                c.state == State::Stopped
            }),
            Property::sometimes("gone is reachable", |_, c: &Container| {
                c.state == State::Gone
            }),
        ]);
        p
    }
}

#[test]
fn lifecycle_model_checked_against_the_runtime_table() {
    let checker = Lifecycle.checker().spawn_bfs().join();
    checker.assert_properties();
    // Every (state, started) pair the machine can reach was explored: 6 states, and
    // started is only possible past created.
    assert!(checker.unique_state_count() >= STATES.len());
}

/// The comparison above only covers reachable states; every state is reachable, and the
/// runtime's table covers all its statuses and operations (no panics, no gaps).
#[test]
fn runtime_table_is_total() {
    for op in Operation::ALL {
        for s in STATES {
            if let Some(status) = runtime_status(s) {
                let admitted = runtime_lifecycle::admit(op, status).is_ok();
                assert_eq!(
                    admitted,
                    runtime_lifecycle::transition(op, status).is_some(),
                    "{op:?} in {status:?}"
                );
            }
        }
    }
}
