//! `vigil demo`'s simulated fleet and story. The command itself runs the agent loop over them.
#![allow(dead_code)] // used once the command runs the agent loop over the fleet

pub mod fleet;
mod noise;
mod scenario;
