//! Provisioning at start: the bootstrap workspace, the `CDP_CONFIG` workspaces, or — with no credentials
//! configured at all — a `default` workspace with random keys, printed once.

use anyhow::{bail, Context};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::{EventStore, Store};
use cdp_domain::workspace::{Credential, CredentialKind, Scope};
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::config::{Config, ConfigFile};

/// Credentials generated for the `default` workspace on first start.
#[derive(Debug, Clone)]
pub struct GeneratedCredentials {
    pub workspace: String,
    pub write_key: String,
    pub admin_token: String,
}

/// A new secret: `prefix`, `_` and 32 random alphanumerics (write keys, tokens, test namespaces).
pub fn random_secret(prefix: &str) -> String {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("{prefix}_{body}")
}

/// Defines the workspace's configured traits and tags that differ from the ones in force (as operator
/// commands of the log, like `PUT /v1/traits/{name}`); a definition that does not parse stops the start.
async fn provision_catalog(
    store: &Store,
    w: &crate::config::WorkspaceConfig,
) -> anyhow::Result<()> {
    use cdp_domain::catalog::{check_name, CatalogCommand};
    use cdp_projections::catalog::{definitions, TAG, TRAIT};
    let wanted = [(TRAIT, &w.traits), (TAG, &w.tags)];
    // Parsed when the configuration was read (`config`).
    let id = WorkspaceId::parse(&w.id).context("a configured workspace id")?;
    for (kind, configured) in wanted {
        let current = definitions(store, &id, kind).await?;
        for (name, body) in configured {
            let place = || format!("CDP_CONFIG: workspace {} {kind} {name}", w.id);
            check_name(name).with_context(place)?;
            let canonical = if kind == TRAIT {
                cdp_domain::computed::TraitDef::parse(body)
                    .with_context(place)?
                    .to_json()
            } else {
                cdp_domain::tags::TagDef::parse(body)
                    .with_context(place)?
                    .to_json()
            };
            if current
                .iter()
                .any(|d| &d.name == name && d.body.as_ref() == Some(&canonical))
            {
                continue;
            }
            let command = if kind == TRAIT {
                CatalogCommand::PutTrait {
                    name: name.clone(),
                    definition: canonical,
                    actor: "config".into(),
                }
            } else {
                CatalogCommand::PutTag {
                    name: name.clone(),
                    definition: canonical,
                    actor: "config".into(),
                }
            };
            append_command(store, &id, &command).await?;
        }
    }
    Ok(())
}

/// Appends a command the configuration puts in force to the workspace's log.
async fn append_command(
    store: &Store,
    workspace: &WorkspaceId,
    command: &cdp_domain::catalog::CatalogCommand,
) -> anyhow::Result<()> {
    store
        .append(&[crate::operate::command_event(
            workspace,
            command.name(),
            command,
        )])
        .await?;
    Ok(())
}

/// Puts the workspace's configured consent policy (opt-in where `[workspace.consent]` is absent) in
/// force when it differs from the one in force: a `set_consent_policy` command of the log, like a
/// definition, so the resolver applies it in its place in the global order (re-evaluating the
/// segments that read consent) and a rebuild meets it at the same place. A policy that does not parse
/// stops the start.
async fn provision_consent(
    store: &Store,
    w: &crate::config::WorkspaceConfig,
) -> anyhow::Result<()> {
    use cdp_domain::catalog::CatalogCommand;
    let configured = w
        .consent
        .as_ref()
        .map(crate::config::ConsentConfig::policy)
        .transpose()
        .map_err(|e| anyhow::anyhow!("CDP_CONFIG: workspace {}: {e}", w.id))?
        .unwrap_or_default();
    let id = WorkspaceId::parse(&w.id).context("a configured workspace id")?;
    let in_force = cdp_projections::catalog::consent_policy(store, &id)
        .await
        .with_context(|| format!("failed to read the consent policy of {}", w.id))?;
    if in_force.policy == configured {
        return Ok(());
    }
    let command = CatalogCommand::SetConsentPolicy {
        policy: configured.to_json(),
        actor: "config".into(),
    };
    append_command(store, &id, &command).await
}

/// Applies the configured workspaces and credentials. Returns generated credentials when it had to make
/// the `default` workspace.
pub async fn provision(
    store: &Store,
    config: &Config,
) -> anyhow::Result<Option<GeneratedCredentials>> {
    if let Some(path) = &config.config_file {
        let file = ConfigFile::load(path)?;
        for w in &file.workspaces {
            store.ensure_workspace(&w.id).await?;
            for key in &w.write_keys {
                store
                    .put_credential(&Credential::new(
                        key,
                        &w.id,
                        CredentialKind::WriteKey,
                        vec![Scope::Write],
                    ))
                    .await?;
            }
            if let Some(identity) = &w.identity {
                // Parsed when the configuration was read (`config`).
                let id = WorkspaceId::parse(&w.id).context("a configured workspace id")?;
                let in_force = cdp_projections::identity::rules_of(store, &id)
                    .await
                    .with_context(|| format!("failed to read the identity rules of {}", w.id))?;
                // Changed rules are a rules command of the log, as through PUT /v1/identity/rules,
                // even with no events yet: the resolver puts them in force when it reaches it (before
                // any event that arrives after the start), and a rebuild meets it in the same place.
                if let Some(rules) =
                    cdp_projections::identity::rules_after(&in_force, identity.rules())
                {
                    let command = cdp_domain::identity::OperatorCommand::Rules {
                        rules,
                        actor: "config".into(),
                    };
                    store
                        .append(&[crate::operate::command_event(&id, command.name(), &command)])
                        .await?;
                }
            }
            provision_catalog(store, w).await?;
            provision_consent(store, w).await?;
            for t in &w.tokens {
                let scopes = t.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
                store
                    .put_credential(&Credential::new(
                        &t.token,
                        &w.id,
                        CredentialKind::Token,
                        scopes,
                    ))
                    .await?;
            }
        }
    }
    if let Some(workspace) = &config.bootstrap_workspace {
        WorkspaceId::parse(workspace).context("CDP_BOOTSTRAP_WORKSPACE")?;
        store.ensure_workspace(workspace).await?;
        if let Some(key) = &config.bootstrap_write_key {
            store
                .put_credential(&Credential::new(
                    key,
                    workspace,
                    CredentialKind::WriteKey,
                    vec![Scope::Write],
                ))
                .await?;
        }
        if let Some(token) = &config.bootstrap_admin_token {
            store
                .put_credential(&Credential::new(
                    token,
                    workspace,
                    CredentialKind::Token,
                    vec![Scope::Admin],
                ))
                .await?;
        }
    }
    if config.has_credentials() || store.count_workspaces().await? > 0 {
        return Ok(None);
    }
    // Nothing configured and nothing stored: a first start. Random keys only make sense where nobody
    // else can reach the service before the operator has read them.
    if !config.listen.ip().is_loopback() {
        bail!(
            "no credentials are configured (CDP_CONFIG or CDP_BOOTSTRAP_*); refusing to listen on \
             non-loopback address {} with generated defaults",
            config.listen
        );
    }
    let generated = GeneratedCredentials {
        workspace: "default".into(),
        write_key: random_secret("wk"),
        admin_token: random_secret("tok"),
    };
    store.ensure_workspace(&generated.workspace).await?;
    grant_write_key(store, &generated.write_key, &generated.workspace).await?;
    grant_token(
        store,
        &generated.admin_token,
        &generated.workspace,
        vec![Scope::Admin],
    )
    .await?;
    Ok(Some(generated))
}

async fn grant_write_key(store: &Store, key: &str, workspace: &str) -> anyhow::Result<()> {
    let credential = Credential::new(key, workspace, CredentialKind::WriteKey, vec![Scope::Write]);
    Ok(store.put_credential(&credential).await?)
}

async fn grant_token(
    store: &Store,
    token: &str,
    workspace: &str,
    scopes: Vec<Scope>,
) -> anyhow::Result<()> {
    let credential = Credential::new(token, workspace, CredentialKind::Token, scopes);
    Ok(store.put_credential(&credential).await?)
}
