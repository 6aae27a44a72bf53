//! What pktguard asks of the host: the interface it guards (resolved once),
//! ioctls and privileges, the kernel's version, features and BTF, rtnetlink
//! and ethtool.

pub mod btf;
pub mod ethtool;
pub mod iface;
pub mod kernel;
pub mod rtnl;
pub mod sys;

pub use iface::Iface;
