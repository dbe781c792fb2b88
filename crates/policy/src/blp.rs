//! Bell-LaPadula for pod networks (seed 7.2): workloads carry a security label (a level
//! and a set of categories); information may flow from A to B only when B's label
//! dominates A's. A connection carries data both ways, so "no read up" (B reads A only if
//! B dominates A) and "no write down" (A writes to B only if B dominates A) are the same
//! rule for a flow A -> B, and the generated Kubernetes NetworkPolicies allow exactly
//! those flows: each workload gets one policy selecting its pods, whose ingress admits
//! the workloads it dominates and whose egress reaches the workloads that dominate it.
//!
//! Invariants (property-tested in `tests/blp.rs` against a NetworkPolicy evaluator):
//! * The policies allow a flow between two workloads iff the model allows it.
//! * No pod is selected by two workloads' policies: NetworkPolicies are additive, so an
//!   overlap would grant one workload the other's flows. Two workloads in one namespace
//!   must differ in the value of some selector key; otherwise the input is refused.
//! * Every policy has both policy types, so a workload with no allowed peers is isolated
//!   in that direction (default deny), never left open.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// A `LEVELS.toml` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lattice {
    /// Levels from lowest to highest (e.g. `["public", "internal", "secret"]`).
    pub levels: Vec<String>,
    /// The categories (compartments) workloads may carry.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Let every workload resolve names (egress to port 53 of pods labelled
    /// `k8s-app: kube-dns` in any namespace). DNS answers carry no workload's data.
    #[serde(default = "yes")]
    pub allow_dns: bool,
    #[serde(rename = "workload", default)]
    pub workloads: Vec<Workload>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Names the generated policy (`blp-NAME`).
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub level: String,
    #[serde(default)]
    pub categories: BTreeSet<String>,
    /// The pod labels that select this workload's pods (a NetworkPolicy `matchLabels`).
    pub selector: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".into()
}

/// A security label: a level index and a set of categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub level: usize,
    pub categories: BTreeSet<String>,
}

impl Label {
    /// `self` dominates `other`: at least its level, and every one of its categories.
    pub fn dominates(&self, other: &Label) -> bool {
        self.level >= other.level && self.categories.is_superset(&other.categories)
    }
}

/// Bell-LaPadula's rule for a flow from `from` to `to` (simple security: the receiver
/// reads no higher than itself; *-property: the sender writes no lower than itself).
pub fn may_flow(from: &Label, to: &Label) -> bool {
    to.dominates(from)
}

fn bad(why: impl Into<String>) -> Error {
    Error::Policy {
        path: "LEVELS".into(),
        why: why.into(),
    }
}

/// RFC 1123 label rules, as Kubernetes checks names and namespaces (max 63).
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label value: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name as a value but
/// non-empty.
fn label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(dns_label));
    prefix_ok && !name.is_empty() && label_value(name)
}

impl Lattice {
    /// Read and check a `LEVELS.toml`.
    pub fn load(path: &Path) -> Result<Lattice> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let l: Lattice = toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            why: e.message().to_string(),
        })?;
        l.validate().map_err(|e| match e {
            Error::Policy { why, .. } => Error::Policy {
                path: path.to_path_buf(),
                why,
            },
            e => e,
        })?;
        Ok(l)
    }

    /// Refuse what would make the generated policies wrong or invalid.
    pub fn validate(&self) -> Result<()> {
        if self.levels.is_empty() {
            return Err(bad("levels: at least one level is needed"));
        }
        let unique = |v: &[String], what: &str| -> Result<()> {
            let mut seen = BTreeSet::new();
            for x in v {
                if !seen.insert(x) {
                    return Err(bad(format!("{what} {x:?} is listed twice")));
                }
            }
            Ok(())
        };
        unique(&self.levels, "level")?;
        unique(&self.categories, "category")?;
        let names: Vec<String> = self.workloads.iter().map(|w| w.name.clone()).collect();
        unique(&names, "workload")?;
        for w in &self.workloads {
            let at = |why: String| bad(format!("workload {:?}: {why}", w.name));
            if !dns_label(&w.name) || w.name.len() > 59 {
                return Err(at(
                    "name must be a DNS label of at most 59 characters".into()
                ));
            }
            if !dns_label(&w.namespace) {
                return Err(at(format!(
                    "namespace {:?} is not a DNS label",
                    w.namespace
                )));
            }
            if !self.levels.contains(&w.level) {
                return Err(at(format!("unknown level {:?}", w.level)));
            }
            if let Some(c) = w.categories.iter().find(|c| !self.categories.contains(c)) {
                return Err(at(format!("unknown category {c:?}")));
            }
            if w.selector.is_empty() {
                return Err(at("an empty selector would select every pod".into()));
            }
            for (k, v) in &w.selector {
                if !label_key(k) || !label_value(v) {
                    return Err(at(format!("selector {k}={v} is not a valid label")));
                }
            }
        }
        for (i, a) in self.workloads.iter().enumerate() {
            for b in &self.workloads[i + 1..] {
                let disjoint = a
                    .selector
                    .iter()
                    .any(|(k, v)| b.selector.get(k).is_some_and(|w| w != v));
                if a.namespace == b.namespace && !disjoint {
                    return Err(bad(format!(
                        "workloads {:?} and {:?} could select the same pod (policies add up, \
                         so one would get the other's flows): give them a selector key with \
                         different values",
                        a.name, b.name
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn label(&self, w: &Workload) -> Label {
        Label {
            level: self.levels.iter().position(|l| *l == w.level).unwrap_or(0),
            categories: w.categories.clone(),
        }
    }
}

fn peer(w: &Workload) -> Value {
    json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": w.namespace}},
        "podSelector": {"matchLabels": w.selector},
    })
}

/// One NetworkPolicy per workload (as JSON values, in workload order).
pub fn network_policies(l: &Lattice) -> Result<Vec<Value>> {
    l.validate()?;
    let mut out = Vec::new();
    for b in &l.workloads {
        let lb = l.label(b);
        let from: Vec<Value> = l
            .workloads
            .iter()
            .filter(|a| may_flow(&l.label(a), &lb))
            .map(peer)
            .collect();
        let to: Vec<Value> = l
            .workloads
            .iter()
            .filter(|c| may_flow(&lb, &l.label(c)))
            .map(peer)
            .collect();
        // A rule with an empty peer list would admit everyone: no rule at all denies.
        let ingress: Vec<Value> = if from.is_empty() {
            vec![]
        } else {
            vec![json!({"from": from})]
        };
        let mut egress: Vec<Value> = if to.is_empty() {
            vec![]
        } else {
            vec![json!({"to": to})]
        };
        if l.allow_dns {
            egress.push(json!({
                "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }));
        }
        let cats: Vec<&String> = b.categories.iter().collect();
        out.push(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": format!("blp-{}", b.name),
                "namespace": b.namespace,
                "annotations": {
                    "berth.dev/blp-level": b.level,
                    "berth.dev/blp-categories": cats.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","),
                },
            },
            "spec": {
                "podSelector": {"matchLabels": b.selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": egress,
            },
        }));
    }
    Ok(out)
}

/// Multi-document YAML. Every scalar string is written double-quoted with JSON escapes
/// (a JSON string is a valid YAML double-quoted scalar), so no value can change type or
/// structure ("no", "1e3", ": " and newlines stay strings).
pub fn to_yaml(docs: &[Value]) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        emit(d, 0, &mut out);
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, x) in o {
                let key = Value::String(k.clone()).to_string();
                if is_block(x) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    emit(x, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", scalar(x)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for x in a {
                if is_block(x) {
                    // "- " then the block, its first line on the dash's line.
                    let mut inner = String::new();
                    emit(x, indent + 2, &mut inner);
                    let trimmed = inner.get(indent + 2..).unwrap_or_default();
                    out.push_str(&format!("{pad}- {trimmed}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(x)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}
