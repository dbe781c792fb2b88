//! cgroups: v1, v2 and hybrid hierarchies behind one interface.
