//! Operator commands in the resolver: the decisions of a manual merge, a split or a rules change,
//! against the graph and under the rules as they stand at the command's place in the log.

use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::{
    apply_rules_diff, identifiers_of, manual_merge, rules_diff, split, IdentityEvent,
    IdentityGraph, IdentityRules, OperatorCommand,
};
use cdp_domain::message::MessageKind;
use cdp_domain::store::{EventStore, Store};
use serde_json::Value;

use super::{profile_id_for, rules_after};
use crate::runner::ProjectionError;

/// The decisions of an operator command, against the graph and under the rules as they stand at the
/// command's place in the log; with the rules a rules command puts in force (`None` when it changes
/// nothing: the same rules, whatever version it names).
pub(super) async fn decide_command(
    store: &Store,
    graph: &IdentityGraph,
    rules: &IdentityRules,
    stored: &StoredEvent,
    payload: Value,
) -> Result<(Vec<IdentityEvent>, Option<IdentityRules>), ProjectionError> {
    let e = &stored.event;
    let rejected = |command: &str, reason: String| {
        vec![IdentityEvent::CommandRejected {
            command: command.to_owned(),
            reason,
            caused_by: e.message_id.clone(),
        }]
    };
    let command: OperatorCommand = match serde_json::from_value(payload) {
        Ok(c) => c,
        Err(err) => return Ok((rejected("unknown", format!("not a command: {err}")), None)),
    };
    let name = command.name();
    let decisions = match command {
        OperatorCommand::Merge {
            profile_ids,
            reason,
            ..
        } => manual_merge(graph, rules, &profile_ids, &reason, &e.message_id)
            .unwrap_or_else(|err| rejected(name, err.0)),
        OperatorCommand::Split {
            profile_id,
            identifiers,
            reason,
            ..
        } => {
            let into = profile_id_for(&e.workspace, &e.message_id);
            match split(
                graph,
                rules,
                &profile_id,
                &identifiers,
                into,
                &reason,
                &e.message_id,
            ) {
                Ok(event) => vec![event],
                Err(err) => rejected(name, err.0),
            }
        }
        OperatorCommand::Rules {
            rules: proposed, ..
        } => {
            // The version is the resolver's to give (the one in force + 1), so that it follows the
            // log whatever the command names.
            let Some(new) = rules_after(rules, proposed) else {
                return Ok((Vec::new(), None));
            };
            let log = log_of(store, &e.workspace, stored.position, &new).await?;
            let diff = rules_diff(graph, &new, &log);
            let mut n = 0;
            let decisions = apply_rules_diff(graph, &new, &diff, &e.message_id, || {
                n += 1;
                profile_id_for(&e.workspace, &format!("{}#{n}", e.message_id))
            });
            return Ok((decisions, Some(new)));
        }
    };
    Ok((decisions, None))
}

/// The customer events of a workspace before `until`, in log order, with their identifiers under `rules`.
pub async fn workspace_log(
    store: &Store,
    workspace: &WorkspaceId,
    until: Position,
    rules: &IdentityRules,
) -> Result<Vec<(String, Vec<(String, String)>)>, ProjectionError> {
    log_of(store, workspace, until, rules).await
}

/// [`workspace_log`] for the engine, which holds workspaces as the events' text.
async fn log_of(
    store: &Store,
    workspace: &str,
    until: Position,
    rules: &IdentityRules,
) -> Result<Vec<(String, Vec<(String, String)>)>, ProjectionError> {
    const PAGE: u32 = 5_000;
    let mut out = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_after(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.position;
        for stored in &page {
            if stored.position >= until {
                return Ok(out);
            }
            let e = &stored.event;
            if e.workspace != workspace
                || e.kind == MessageKind::Operator
                || cdp_domain::shred::is_erased(e)
            {
                continue;
            }
            let payload: Value =
                serde_json::from_str(&e.payload).map_err(ProjectionError::corrupt)?;
            let ids = identifiers_of(
                &payload,
                e.user_id.as_deref(),
                e.anonymous_id.as_deref(),
                rules,
            )
            .into_iter()
            .map(|i| (i.id_type, i.value))
            .collect();
            out.push((e.message_id.clone(), ids));
        }
    }
}
