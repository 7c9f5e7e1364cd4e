//! placeholder until the demo lands
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}
pub async fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("demo not yet written")
}
