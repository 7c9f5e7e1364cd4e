//! The key columns the stages' PostgreSQL statements bind as arrays (`UNNEST`).

/// The key columns of a statement's rows: workspace, profile and a third (tag or segment) where the
/// table has one.
#[derive(Default)]
pub(crate) struct Keys<'r> {
    pub(crate) workspace: Vec<&'r str>,
    pub(crate) profile: Vec<&'r str>,
    pub(crate) third: Vec<&'r str>,
}

impl<'r> Keys<'r> {
    pub(crate) fn push(&mut self, workspace: &'r str, profile: &'r str, third: Option<&'r str>) {
        self.workspace.push(workspace);
        self.profile.push(profile);
        if let Some(third) = third {
            self.third.push(third);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workspace.is_empty()
    }
}
