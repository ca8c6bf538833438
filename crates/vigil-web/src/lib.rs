//! Vigil's REST API.
