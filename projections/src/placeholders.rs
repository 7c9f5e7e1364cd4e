//! Statements written once with `?` placeholders, numbered for PostgreSQL: a helper below the modules
//! that read and write the model, so that `catalog` does not depend on `profiles` for it (`profiles`
//! reads `catalog`'s tags for the 360 view). `profiles::numbered` re-exports it for the other callers.

/// `sql` with its `?` placeholders numbered `$1`, `$2`, … for PostgreSQL.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}
