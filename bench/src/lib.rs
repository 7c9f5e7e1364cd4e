//! Clients of cdp that run it: the benchmark (`bench`) and the demo (`demo`), behind the `cdp-bench`
//! binary that `cdp bench` and `cdp demo` run.
//!
//! They start the real service in-process through `cdp_api::Application::build` and talk to it over HTTP
//! like any client; where a scenario measures the engine itself, it uses `cdp-domain`, `cdp-projections`
//! and `cdp-replay` directly. What both use lies below both: the retail world they generate (`retail`)
//! and their number formatting (`numbers`).

pub mod bench;
pub mod cli;
pub mod demo;
#[allow(unsafe_code)]
pub mod heap;
pub mod numbers;
pub mod retail;
