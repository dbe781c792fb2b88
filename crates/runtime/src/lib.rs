//! runtime: the OCI runtime — bundle + config.json -> container lifecycle.
