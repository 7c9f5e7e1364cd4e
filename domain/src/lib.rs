//! The pure model of cdp — identifiers, Segment messages and their validation, stored events — and the
//! event log (`store`), the one module of this crate that does IO.
//!
//! Every module except `store` is synchronous and free of IO: the clock and id generation are passed in.

pub mod audience;
pub mod catalog;
pub mod codec;
pub mod computed;
pub mod condition_tree;
pub mod consent;
pub mod event;
pub mod fastmap;
pub mod ident;
pub mod identity;
pub mod json;
pub mod message;
pub mod profile;
pub mod segments;
pub mod shred;
pub mod store;
pub mod tags;
pub mod vecmap;
pub mod workspace;
