//! `cdp-under-test`: the `cdp` binary, built inside this package so that the end-to-end suite can start it
//! as a real process (and kill it) through `CARGO_BIN_EXE_cdp-under-test`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdp_api::cli::run().await
}
