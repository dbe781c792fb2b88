//! A reference model of id maps: the map as an explicit relation between container ids
//! and host ids, small enough to enumerate. A map is valid when it is a partial
//! injective function (no container id maps twice, no host id is hit twice), with no
//! empty extent and no extent past the 32-bit id space.

use std::collections::BTreeMap;

/// One extent: `size` ids from `container` map to `size` ids from `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// Whether `map` is valid, decided by enumerating every id it maps.
pub fn valid_by_enumeration(map: &[Extent]) -> bool {
    let mut forward: BTreeMap<u64, u64> = BTreeMap::new();
    let mut backward: BTreeMap<u64, u64> = BTreeMap::new();
    for e in map {
        if e.size == 0
            || u64::from(e.container) + u64::from(e.size) > 1 << 32
            || u64::from(e.host) + u64::from(e.size) > 1 << 32
        {
            return false;
        }
        for i in 0..u64::from(e.size) {
            let (c, h) = (u64::from(e.container) + i, u64::from(e.host) + i);
            if forward.insert(c, h).is_some() || backward.insert(h, c).is_some() {
                return false;
            }
        }
    }
    true
}

/// The host id of container id `id`, if mapped.
pub fn lookup(map: &[Extent], id: u32) -> Option<u32> {
    map.iter().find_map(|e| {
        let off = id.checked_sub(e.container)?;
        (off < e.size).then(|| e.host + off)
    })
}
