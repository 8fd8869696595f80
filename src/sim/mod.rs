//! The simulated Admin API: not built yet.
