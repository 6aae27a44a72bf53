//! The userspace side of pktguard: configuration, loading and attaching,
//! counters, and the lab that rebuilds the incidents in namespaces.

pub mod btf;
pub mod clamp;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod drops;
pub mod ethtool;
pub mod events;
pub mod kernel;
pub mod lab;
pub mod lab_csum;
pub mod lab_gso;
pub mod loader;
pub mod metrics;
pub mod netns;
pub mod repair_cfg;
pub mod rtnl;
pub mod stats;
pub mod sys;
