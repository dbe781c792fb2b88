//! Policy files: TOML that turns findings into violations.
//!
//! ```toml
//! require = ["ns.pid", "seccomp.default_deny"]  # these rules must not fail
//! strict = false                                # true: a warn on a required rule violates too
//! fail_on = "high"                              # any failing finding this severe violates
//! forbid_capabilities = ["CAP_SYS_ADMIN"]       # none of these in any set
//! [limits]
//! memory_max = 1073741824                        # bytes: a limit is required, at most this
//! pids_max = 4096
//! cpu_max = 2.0                                  # cpus (quota / period)
//! ```
//! Unknown keys, rule ids, capabilities or severities are refused with one line.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::{Finding, Status};
use crate::error::{Error, Result};
use crate::rules::{self, Severity};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub require: Vec<String>,
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub fail_on: Option<Severity>,
    #[serde(default)]
    pub forbid_capabilities: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_max: Option<i64>,
    pub pids_max: Option<i64>,
    pub cpu_max: Option<f64>,
}

/// A finding (or a limit) the policy does not accept.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Violation {
    /// The rule id, or the policy key (`forbid_capabilities`, `limits.memory_max`, ...).
    pub rule: String,
    pub message: String,
}

impl Policy {
    /// Parse policy text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Policy> {
        let bad = |why: String| Error::Policy {
            path: path.to_path_buf(),
            why,
        };
        let p: Policy = toml::from_str(text).map_err(|e| {
            bad(e.message().to_string()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default())
        })?;
        for r in &p.require {
            if r != "all" && rules::find(r).is_none() {
                return Err(bad(format!(
                    "unknown rule {r:?} in require (see docs/policy.md for the rule ids)"
                )));
            }
        }
        for c in &p.forbid_capabilities {
            if crate::caps::canonical(c).is_none() {
                return Err(bad(format!(
                    "unknown capability {c:?} in forbid_capabilities"
                )));
            }
        }
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Policy> {
        let text = crate::target::read_regular(path, 1 << 20)?;
        let text = String::from_utf8(text).map_err(|_| Error::Policy {
            path: path.to_path_buf(),
            why: "not UTF-8 text".into(),
        })?;
        Policy::parse(&text, path)
    }

    fn required(&self, id: &str) -> bool {
        self.require.iter().any(|r| r == id || r == "all")
    }

    /// The violations of `findings` (from `spec`) against this policy.
    pub fn evaluate(&self, spec: &Value, findings: &[Finding]) -> Vec<Violation> {
        let mut v = Vec::new();
        for f in findings {
            let bad_status = f.status == Status::Fail || (self.strict && f.status == Status::Warn);
            if bad_status && self.required(f.rule) {
                v.push(Violation {
                    rule: f.rule.to_string(),
                    message: format!("required: {}", f.message),
                });
            } else if f.status == Status::Fail && self.fail_on.is_some_and(|s| f.severity >= s) {
                v.push(Violation {
                    rule: f.rule.to_string(),
                    message: format!("{} finding: {}", f.severity, f.message),
                });
            }
        }
        let forbidden = crate::check::granted(&spec["process"], &self.forbid_capabilities);
        for c in forbidden {
            v.push(Violation {
                rule: "forbid_capabilities".into(),
                message: format!("{c} is granted"),
            });
        }
        let res = &spec["linux"]["resources"];
        let limit = |key: &str, name: &str, have: Option<f64>, max: f64, unit: &str| match have {
            None => Some(Violation {
                rule: format!("limits.{key}"),
                message: format!("no {name} limit; at most {max}{unit} is required"),
            }),
            Some(h) if h > max => Some(Violation {
                rule: format!("limits.{key}"),
                message: format!("{name} limit {h}{unit} exceeds {max}{unit}"),
            }),
            _ => None,
        };
        let positive = |v: &Value| v.as_i64().filter(|x| *x > 0).map(|x| x as f64);
        if let Some(max) = self.limits.memory_max {
            v.extend(limit(
                "memory_max",
                "memory",
                positive(&res["memory"]["limit"]),
                max as f64,
                " bytes",
            ));
        }
        if let Some(max) = self.limits.pids_max {
            v.extend(limit(
                "pids_max",
                "pids",
                positive(&res["pids"]["limit"]),
                max as f64,
                "",
            ));
        }
        if let Some(max) = self.limits.cpu_max {
            let period = res["cpu"]["period"].as_u64().unwrap_or(100_000) as f64;
            let cpus = positive(&res["cpu"]["quota"]).map(|q| q / period);
            v.extend(limit("cpu_max", "cpu", cpus, max, " cpus"));
        }
        v
    }
}
