//! Bell-LaPadula NetworkPolicies: the generated policies, read with Kubernetes'
//! NetworkPolicy semantics (a small evaluator below), allow a flow between two workloads
//! iff the model does; the YAML parses back to the same documents (PyYAML) and validates
//! against the Kubernetes API schema (`python3 -m kubernetes_validate --strict`, from PyPI,
//! installed by scripts/setup.sh).
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use berth_policy::blp::{may_flow, network_policies, to_yaml, Lattice, Workload};
use proptest::prelude::*;
use serde_json::Value;

/// A pod as NetworkPolicy sees it.
struct Pod<'a> {
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
}

fn match_labels(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector["matchLabels"].as_object().is_none_or(|m| {
        m.iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    })
}

fn peer_matches(peer: &Value, pod: &Pod) -> bool {
    let ns = BTreeMap::from([(
        "kubernetes.io/metadata.name".to_string(),
        pod.namespace.to_string(),
    )]);
    match_labels(&peer["namespaceSelector"], &ns) && match_labels(&peer["podSelector"], pod.labels)
}

fn selects(policy: &Value, pod: &Pod) -> bool {
    policy["metadata"]["namespace"] == pod.namespace
        && match_labels(&policy["spec"]["podSelector"], pod.labels)
}

/// Does some rule of `direction` ("ingress"/"from" or "egress"/"to") admit `other` (any
/// port)? Policies without that policy type do not isolate the pod in that direction.
fn admitted(
    policies: &[Value],
    pod: &Pod,
    other: &Pod,
    direction: &str,
    peers: &str,
    kind: &str,
) -> bool {
    let applying: Vec<&Value> = policies
        .iter()
        .filter(|p| selects(p, pod))
        .filter(|p| {
            p["spec"]["policyTypes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == kind)
        })
        .collect();
    applying.is_empty()
        || applying.iter().any(|p| {
            p["spec"][direction].as_array().unwrap().iter().any(|rule| {
                rule[peers]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|peer| peer_matches(peer, other))
            })
        })
}

fn allowed(policies: &[Value], from: &Pod, to: &Pod) -> bool {
    admitted(policies, from, to, "egress", "to", "Egress")
        && admitted(policies, to, from, "ingress", "from", "Ingress")
}

fn pod(w: &Workload) -> Pod<'_> {
    Pod {
        namespace: &w.namespace,
        labels: &w.selector,
    }
}

/// Random lattices: up to 4 levels, 3 categories, 6 workloads in 2 namespaces, each
/// selected by a distinct `app` label (so no two overlap).
fn lattice() -> impl Strategy<Value = Lattice> {
    (1usize..=4, 0usize..=3).prop_flat_map(|(nl, nc)| {
        let w = (
            0..nl,
            proptest::collection::btree_set(0..nc.max(1), 0..=nc),
            0..2usize,
        );
        proptest::collection::vec(w, 1..=6).prop_map(move |ws| Lattice {
            levels: (0..nl).map(|i| format!("l{i}")).collect(),
            categories: (0..nc).map(|i| format!("c{i}")).collect(),
            allow_dns: true,
            workloads: ws
                .into_iter()
                .enumerate()
                .map(|(i, (level, cats, ns))| Workload {
                    name: format!("w{i}"),
                    namespace: format!("ns{ns}"),
                    level: format!("l{level}"),
                    categories: cats
                        .into_iter()
                        .filter(|c| *c < nc)
                        .map(|c| format!("c{c}"))
                        .collect(),
                    selector: BTreeMap::from([("app".to_string(), format!("w{i}"))]),
                })
                .collect(),
        })
    })
}

proptest! {
    #[test]
    fn policies_allow_exactly_the_flows_the_model_allows(l in lattice()) {
        let policies = network_policies(&l).unwrap();
        for a in &l.workloads {
            for b in &l.workloads {
                let model = may_flow(&l.label(a), &l.label(b));
                prop_assert_eq!(allowed(&policies, &pod(a), &pod(b)), model, "{} -> {}", a.name, b.name);
                // The model itself: no read up, no write down.
                if model {
                    prop_assert!(l.label(a).level <= l.label(b).level);
                    prop_assert!(l.label(a).categories.is_subset(&l.label(b).categories));
                }
            }
        }
    }
}

fn example() -> Lattice {
    toml::from_str(
        r#"
levels = ["public", "internal", "secret"]
categories = ["payments", "hr"]

[[workload]]
name = "web"
level = "public"
selector = { app = "web" }

[[workload]]
name = "ledger"
namespace = "finance"
level = "secret"
categories = ["payments"]
selector = { app = "ledger", "example.com/tier" = "db" }

[[workload]]
name = "staff"
level = "internal"
categories = ["hr"]
selector = { app = "staff" }
"#,
    )
    .unwrap()
}

#[test]
fn example_flows_up_only() {
    let l = example();
    let p = network_policies(&l).unwrap();
    let [web, ledger, staff] = [&l.workloads[0], &l.workloads[1], &l.workloads[2]];
    assert!(
        allowed(&p, &pod(web), &pod(ledger)),
        "public -> secret{{payments}}"
    );
    assert!(!allowed(&p, &pod(ledger), &pod(web)), "no write down");
    assert!(allowed(&p, &pod(web), &pod(staff)));
    // incomparable categories: neither way
    assert!(!allowed(&p, &pod(staff), &pod(ledger)) && !allowed(&p, &pod(ledger), &pod(staff)));
}

#[test]
fn yaml_parses_back_and_validates_against_the_kubernetes_schema() {
    let docs = network_policies(&example()).unwrap();
    let yaml = to_yaml(&docs);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blp.yaml");
    std::fs::write(&file, &yaml).unwrap();
    // PyYAML reads the same documents back.
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, docs);
    let v = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.30.0"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (pip install kubernetes-validate; scripts/setup.sh does)");
    let text = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "{text}");
    assert_eq!(text.matches("passed").count(), docs.len(), "{text}");
    // A deliberately broken document fails the same validator, so the check can fail.
    let mut broken = docs[0].clone();
    broken["spec"]["ingress"] = serde_json::json!("everyone");
    broken["spec"]["podSelecter"] = serde_json::json!({});
    std::fs::write(&file, to_yaml(&[broken])).unwrap();
    let v = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.30.0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!v.status.success());
}

#[test]
fn bad_lattices_are_refused_with_one_line() {
    let mut l = example();
    l.workloads[1].level = "top".into();
    assert!(network_policies(&l)
        .unwrap_err()
        .to_string()
        .contains("unknown level \"top\""));
    let mut l = example();
    l.workloads[2].selector = BTreeMap::from([("app".to_string(), "web".to_string())]);
    let e = network_policies(&l).unwrap_err().to_string();
    assert!(e.contains("could select the same pod"), "{e}");
    let mut l = example();
    l.workloads[0].selector.clear();
    assert!(network_policies(&l)
        .unwrap_err()
        .to_string()
        .contains("empty selector"));
    let mut l = example();
    l.workloads[0].categories = BTreeSet::from(["nope".to_string()]);
    assert!(network_policies(&l)
        .unwrap_err()
        .to_string()
        .contains("unknown category"));
    let mut l = example();
    l.workloads[0]
        .selector
        .insert("bad key!".into(), "x".into());
    assert!(network_policies(&l)
        .unwrap_err()
        .to_string()
        .contains("not a valid label"));
    let e = network_policies(&l).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    let unknown: Result<Lattice, _> = toml::from_str("levels = [\"a\"]\nbogus = 1\n");
    assert!(unknown.is_err(), "unknown fields are refused");
}
