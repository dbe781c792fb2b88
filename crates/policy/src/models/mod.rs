//! The seed's formal models as code.
