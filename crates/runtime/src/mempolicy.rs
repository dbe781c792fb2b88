//! `linux.memoryPolicy`: the NUMA memory policy of the container process, set with
//! set_mempolicy(2) in init before exec (a task's policy survives exec and fork).

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use crate::error::{Error, Result};

/// Node numbers accepted in `nodes` (the kernel's MAX_NUMNODES on distribution kernels).
const MAX_NODES: usize = 1024;
const WORD_BITS: usize = u64::BITS as usize;

/// A validated policy, ready for set_mempolicy(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// Mode with its flags or'ed in.
    mode: libc::c_int,
    /// Node bitmask; empty when the mode takes no nodes.
    mask: Vec<u64>,
}

fn bad(why: String) -> Error {
    Error::Config(format!("field linux.memoryPolicy{why}"))
}

/// Parses "0-3,5" into a node bitmask.
fn parse_nodes(text: &str) -> Result<Vec<u64>> {
    let mut mask = vec![0u64; MAX_NODES / WORD_BITS];
    let node = |s: &str| -> Result<usize> {
        match s.trim().parse::<usize>() {
            Ok(n) if n < MAX_NODES => Ok(n),
            _ => Err(bad(format!(
                ".nodes: {text:?}: {s:?} is not a node number below {MAX_NODES}"
            ))),
        }
    };
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (node(a)?, node(b)?),
            None => (node(part)?, node(part)?),
        };
        if first > last {
            return Err(bad(format!(".nodes: {text:?}: range {part:?} is reversed")));
        }
        for n in first..=last {
            mask[n / WORD_BITS] |= 1 << (n % WORD_BITS);
        }
    }
    Ok(mask)
}

impl MemoryPolicy {
    /// Validates the spec's policy the way the kernel will judge it, so mistakes are
    /// reported at `create` naming the field.
    pub fn parse(p: &LinuxMemoryPolicy) -> Result<MemoryPolicy> {
        use MemoryPolicyModeType as M;
        let (mode, nodes_allowed, nodes_required) = match p.mode() {
            M::MpolDefault => (0, false, false),
            M::MpolPreferred => (1, true, false),
            M::MpolBind => (2, true, true),
            M::MpolInterleave => (3, true, true),
            M::MpolLocal => (4, false, false),
            M::MpolPreferredMany => (5, true, true),
            M::MpolWeightedInterleave => (6, true, true),
        };
        let nodes = p.nodes().as_deref().unwrap_or("").trim();
        let mask = match (nodes.is_empty(), nodes_allowed, nodes_required) {
            (true, _, true) => return Err(bad(format!(".nodes: mode {} needs nodes", p.mode()))),
            (false, false, _) => {
                return Err(bad(format!(".nodes: mode {} takes no nodes", p.mode())))
            }
            (true, _, _) => Vec::new(),
            (false, true, _) => parse_nodes(nodes)?,
        };
        let flags = p.flags().clone().unwrap_or_default();
        let has = |f| flags.contains(&f);
        if has(MemoryPolicyFlagType::MpolFStaticNodes)
            && has(MemoryPolicyFlagType::MpolFRelativeNodes)
        {
            return Err(bad(
                ".flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other".into(),
            ));
        }
        let mode = flags.iter().fold(mode, |m, f| {
            m | match f {
                MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
                MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
                MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            }
        });
        Ok(MemoryPolicy { mode, mask })
    }

    /// set_mempolicy(2) for this process.
    pub fn apply(&self) -> Result<()> {
        // The kernel reads maxnode - 1 bits (a long-standing off-by-one in its ABI).
        let (ptr, maxnode) = if self.mask.is_empty() {
            (std::ptr::null(), 0)
        } else {
            (self.mask.as_ptr(), self.mask.len() * WORD_BITS + 1)
        };
        // SAFETY: the mask outlives the call and holds maxnode - 1 bits.
        let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, self.mode, ptr, maxnode) };
        nix::errno::Errno::result(r)
            .map(drop)
            .map_err(|e| Error::Sys {
                op: "field linux.memoryPolicy: set_mempolicy".into(),
                source: e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: serde_json::Value) -> Result<MemoryPolicy> {
        MemoryPolicy::parse(&serde_json::from_value(json).unwrap())
    }

    #[test]
    fn nodes_become_a_bitmask() {
        let p = policy(serde_json::json!({"mode": "MPOL_BIND", "nodes": "0-2,5,64"})).unwrap();
        assert_eq!(p.mode, 2);
        assert_eq!(p.mask[0], 0b100111);
        assert_eq!(p.mask[1], 1);
        let p = policy(serde_json::json!({"mode": "MPOL_INTERLEAVE", "nodes": "1",
            "flags": ["MPOL_F_STATIC_NODES"]}))
        .unwrap();
        assert_eq!(p.mode, 3 | 1 << 15);
    }

    #[test]
    fn mistakes_name_the_field() {
        for (json, says) in [
            (
                serde_json::json!({"mode": "MPOL_BIND"}),
                ".nodes: mode MPOL_BIND needs nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
                "takes no nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "3-1"}),
                "is reversed",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0,x"}),
                "\"x\" is not a node",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "4096"}),
                "below 1024",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0",
                    "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
                "exclude each other",
            ),
        ] {
            let e = policy(json).unwrap_err().to_string();
            assert!(e.contains("linux.memoryPolicy") && e.contains(says), "{e}");
        }
    }
}
