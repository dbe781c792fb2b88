//! The seed's models checked: property tests over random inputs, and the lifecycle
//! state machine exhaustively.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::collections::{BTreeSet, VecDeque};

use berth_policy::models::capset::{Creds, File, Transition, CAP_SETPCAP};
use berth_policy::models::cgroup::{allocate, edges, le, Node};
use berth_policy::models::idmap::{lookup, valid_by_enumeration, Extent};
use berth_policy::models::lifecycle::{step, Command, State, COMMANDS, STATES};
use proptest::prelude::*;

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

// ---- the lifecycle (§3.1.1), exhaustively ----

#[test]
fn lifecycle_model_properties_hold_in_every_reachable_state() {
    // Breadth-first over every command sequence from `creating`.
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(State::Creating, false)]);
    while let Some((s, started)) = queue.pop_front() {
        if !seen.insert((s, started)) {
            continue;
        }
        // delete --force reaches Gone from everywhere but Gone
        assert_eq!(step(s, Command::DeleteForce).is_some(), s != State::Gone);
        for c in COMMANDS {
            let Some(n) = step(s, c) else { continue };
            // a stopped container never runs again; gone is final
            if s == State::Stopped {
                assert!(
                    matches!(n, State::Stopped | State::Gone),
                    "{s:?} --{c:?}--> {n:?}"
                );
            }
            // start succeeds at most once per container
            if c == Command::Start {
                assert!(!started, "started twice");
            }
            // only start leaves created for running
            if s == State::Created && n == State::Running {
                assert_eq!(c, Command::Start);
            }
            queue.push_back((n, started || c == Command::Start));
        }
    }
    let states: BTreeSet<State> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        states.len(),
        STATES.len(),
        "every state reachable: {states:?}"
    );
}
