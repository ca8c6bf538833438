//! Vigil's host agent (`vigil agent`).
#![forbid(unsafe_code)]
