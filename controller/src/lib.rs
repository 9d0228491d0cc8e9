//! The FerroLB controller library: the allocator that gives LoadBalancer Services their
//! addresses. Pure: no I/O; the binary and the speaker's standalone mode call it.

pub mod allocator;

pub use allocator::{AllocError, Allocation, Allocator, Assignment, Unassigned, allocate_all};
