//! Cgroup trees (§2.2.6, §4.2.1): limits along a path, and the allocation of a
//! parent's resource among its children (guarantee first, then by weight, capped by
//! limit).

/// A cgroup with an optional hard limit (None: unlimited) and its children.
#[derive(Debug, Clone)]
pub struct Node {
    pub limit: Option<u64>,
    pub guarantee: u64,
    pub weight: u64,
    pub children: Vec<Node>,
}

/// The limit the kernel enforces on a node: the smallest limit on its path from the root
/// (a child's own setting may be larger, but it cannot use more than its parent).
pub fn effective(parent: Option<u64>, own: Option<u64>) -> Option<u64> {
    match (parent, own) {
        (Some(p), Some(o)) => Some(p.min(o)),
        (p, o) => p.or(o),
    }
}

/// Every (parent effective, child effective) pair of the tree.
pub fn edges(node: &Node, parent: Option<u64>, out: &mut Vec<(Option<u64>, Option<u64>)>) {
    let mine = effective(parent, node.limit);
    for c in &node.children {
        out.push((mine, effective(mine, c.limit)));
        edges(c, mine, out);
    }
}

/// `a <= b` where None is infinity.
pub fn le(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a <= b,
    }
}

/// The seed's `allocate_resource`: each child gets its guarantee, then a share of what
/// remains in proportion to its weight, then is capped by its limit. Guarantees that do
/// not fit are scaled down so the pool is never overdrawn.
pub fn allocate(total: u64, children: &[Node]) -> Vec<u64> {
    let guaranteed: u64 = children
        .iter()
        .map(|c| c.guarantee.min(c.limit.unwrap_or(u64::MAX)))
        .sum();
    let base: Vec<u64> = children
        .iter()
        .map(|c| {
            let g = c.guarantee.min(c.limit.unwrap_or(u64::MAX));
            if guaranteed <= total {
                g
            } else {
                // proportional scale-down: floor(g * total / guaranteed)
                (u128::from(g) * u128::from(total) / u128::from(guaranteed)) as u64
            }
        })
        .collect();
    let remaining = total - base.iter().sum::<u64>();
    let weights: u64 = children.iter().map(|c| c.weight).sum();
    children
        .iter()
        .zip(base)
        .map(|(c, b)| {
            let share = if weights == 0 {
                0
            } else {
                (u128::from(remaining) * u128::from(c.weight) / u128::from(weights)) as u64
            };
            let alloc = b + share;
            c.limit.map_or(alloc, |l| alloc.min(l))
        })
        .collect()
}
