//! The one way a statement runs on either backend, over a pool or a transaction: `query(TEXT)
//! .bind(..).fetch_all(exec)`.
//!
//! Why this shape. sqlx types every query by its backend (`Query<'_, Sqlite, _>` and
//! `Query<'_, Postgres, _>` are unrelated types), and Rust has no closure generic over the backend, so
//! every caller used to write the statement, its binds and its fetch twice — in a `match` or in one
//! of a dozen local macros. Here the binds are values first ([`Arg`], a small enum of what the
//! engine binds) and become the backend's arguments only when the statement runs; the executor is a
//! value too ([`Exec`]: either backend's pool or connection, which is what a transaction derefs to);
//! and the typed fetches (`execute`, `fetch_all`, `fetch_optional`, `fetch_one`, `scalar`…) decode
//! into any row type both backends can decode ([`Record`]: tuples of plain types are). The
//! alternatives were worse: functions generic over `sqlx::Database` carry a screen of `where`
//! clauses each (`Encode`, `Type`, `IntoArguments`, `Executor` for every bound type), and sqlx's `Any`
//! driver needs pools of its own beside the typed ones the adapters and transactions use, and binds
//! no arrays.
//!
//! One text serves both backends: it is written with `?` placeholders (SQLite's), numbered `$1, $2, …`
//! for PostgreSQL ([`numbered`]). A list bound with [`Query::bind`] from a slice stands where the text
//! says `IN (?...)`: on SQLite one `?` per element, on PostgreSQL `= ANY($n)` with the list as one
//! array — the same answer, and PostgreSQL keeps one prepared statement whatever the length. Where the
//! backends need different SQL (`UNNEST` joins, `ON CONFLICT` forms, a statement only one of them
//! has), [`query_each`] takes both texts, the PostgreSQL one used as written; a statement only one
//! backend runs, or one read from the database's catalog, runs [`verbatim`].
//!
//! Texts are constants of each room's `sql` module; a text is never made from input (placeholders
//! only; `format!` only of constant fragments).

use std::borrow::Cow;

use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Arguments, Postgres, Sqlite, Transaction};

use super::Store;

/// A row type both backends decode (tuples of `String`, `i64`, `bool`, `f64`, `Vec<u8>` and their
/// `Option`s are).
pub trait Record:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// A single column both backends decode.
pub trait Scalar:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + Send
    + Unpin
{
}

impl<T> Scalar for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + Send
        + Unpin
{
}

/// A bound parameter: what the engine binds, as a value either backend encodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<'a> {
    Text(Cow<'a, str>),
    OptText(Option<Cow<'a, str>>),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    OptFloat(Option<f64>),
    Bool(bool),
    Bytes(Cow<'a, [u8]>),
    OptBytes(Option<Cow<'a, [u8]>>),
    /// A list, where the text says `IN (?...)`.
    Texts(Vec<&'a str>),
    /// A list of integers, where the text says `IN (?...)`.
    Ints(Cow<'a, [i64]>),
}

impl Arg<'_> {
    fn is_list(&self) -> bool {
        matches!(self, Arg::Texts(_) | Arg::Ints(_))
    }

    fn list_len(&self) -> usize {
        match self {
            Arg::Texts(v) => v.len(),
            Arg::Ints(v) => v.len(),
            _ => 1,
        }
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}
impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Cow::Owned(v))
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v.map(Cow::Borrowed))
    }
}
impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v.map(Cow::Owned))
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::OptText(v.as_deref().map(Cow::Borrowed))
    }
}
impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Float(v)
    }
}
impl From<Option<f64>> for Arg<'_> {
    fn from(v: Option<f64>) -> Self {
        Arg::OptFloat(v)
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(Cow::Borrowed(v))
    }
}
impl From<Vec<u8>> for Arg<'_> {
    fn from(v: Vec<u8>) -> Self {
        Arg::Bytes(Cow::Owned(v))
    }
}
impl<'a> From<Option<&'a [u8]>> for Arg<'a> {
    fn from(v: Option<&'a [u8]>) -> Self {
        Arg::OptBytes(v.map(Cow::Borrowed))
    }
}
impl From<Option<Vec<u8>>> for Arg<'_> {
    fn from(v: Option<Vec<u8>>) -> Self {
        Arg::OptBytes(v.map(Cow::Owned))
    }
}
impl<'a> From<&'a [&'a str]> for Arg<'a> {
    fn from(v: &'a [&'a str]) -> Self {
        Arg::Texts(v.to_vec())
    }
}
impl<'a> From<&'a Vec<&'a str>> for Arg<'a> {
    fn from(v: &'a Vec<&'a str>) -> Self {
        Arg::Texts(v.clone())
    }
}
impl<'a> From<&'a [String]> for Arg<'a> {
    fn from(v: &'a [String]) -> Self {
        Arg::Texts(v.iter().map(String::as_str).collect())
    }
}
impl<'a> From<&'a Vec<String>> for Arg<'a> {
    fn from(v: &'a Vec<String>) -> Self {
        Arg::Texts(v.iter().map(String::as_str).collect())
    }
}
impl<'a> From<&'a [i64]> for Arg<'a> {
    fn from(v: &'a [i64]) -> Self {
        Arg::Ints(Cow::Borrowed(v))
    }
}

/// Where a statement runs: one backend's pool, or one of its connections (a transaction derefs to
/// its connection: `Exec::from(&mut tx)`).
#[derive(Debug)]
pub enum Exec<'c> {
    Sqlite(On<'c, Sqlite>),
    Postgres(On<'c, Postgres>),
}

/// A pool or a connection of one backend.
#[derive(Debug)]
pub enum On<'c, DB: sqlx::Database> {
    Pool(&'c sqlx::Pool<DB>),
    Conn(&'c mut DB::Connection),
}

impl Exec<'_> {
    /// The same pool or connection, lent again for one statement: `on.reborrow()` runs several
    /// statements on one `Exec`.
    pub fn reborrow(&mut self) -> Exec<'_> {
        match self {
            Exec::Sqlite(On::Pool(p)) => Exec::Sqlite(On::Pool(p)),
            Exec::Sqlite(On::Conn(c)) => Exec::Sqlite(On::Conn(&mut **c)),
            Exec::Postgres(On::Pool(p)) => Exec::Postgres(On::Pool(p)),
            Exec::Postgres(On::Conn(c)) => Exec::Postgres(On::Conn(&mut **c)),
        }
    }
}

/// The connection a statement runs on: taken from the pool for the statement, or the one lent.
enum Held<'c, DB: sqlx::Database> {
    Pooled(PoolConnection<DB>),
    Lent(&'c mut DB::Connection),
}

impl<'c, DB: sqlx::Database> On<'c, DB> {
    async fn hold(self) -> Result<Held<'c, DB>, sqlx::Error> {
        Ok(match self {
            On::Pool(p) => Held::Pooled(p.acquire().await?),
            On::Conn(c) => Held::Lent(c),
        })
    }
}

impl<DB: sqlx::Database> std::ops::Deref for Held<'_, DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        match self {
            Held::Pooled(c) => c,
            Held::Lent(c) => c,
        }
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Held<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Held::Pooled(c) => c,
            Held::Lent(c) => c,
        }
    }
}

impl<'c> From<&'c SqlitePool> for Exec<'c> {
    fn from(p: &'c SqlitePool) -> Self {
        Exec::Sqlite(On::Pool(p))
    }
}
impl<'c> From<&'c PgPool> for Exec<'c> {
    fn from(p: &'c PgPool) -> Self {
        Exec::Postgres(On::Pool(p))
    }
}
impl<'c> From<&'c mut SqliteConnection> for Exec<'c> {
    fn from(c: &'c mut SqliteConnection) -> Self {
        Exec::Sqlite(On::Conn(c))
    }
}
impl<'c> From<&'c mut PgConnection> for Exec<'c> {
    fn from(c: &'c mut PgConnection) -> Self {
        Exec::Postgres(On::Conn(c))
    }
}
impl<'c> From<&'c mut Transaction<'_, Sqlite>> for Exec<'c> {
    fn from(tx: &'c mut Transaction<'_, Sqlite>) -> Self {
        Exec::Sqlite(On::Conn(&mut **tx))
    }
}
impl<'c> From<&'c mut Transaction<'_, Postgres>> for Exec<'c> {
    fn from(tx: &'c mut Transaction<'_, Postgres>) -> Self {
        Exec::Postgres(On::Conn(&mut **tx))
    }
}

impl Store {
    /// Where reads run: SQLite's read pool (readers never wait for the writer), PostgreSQL's pool.
    pub fn reader(&self) -> Exec<'_> {
        match self {
            Store::Sqlite(s) => s.read_pool().into(),
            Store::Postgres(s) => s.pool().into(),
        }
    }

    /// Where a write outside a model transaction runs: SQLite's one writing connection, PostgreSQL's
    /// pool.
    pub fn writer(&self) -> Exec<'_> {
        match self {
            Store::Sqlite(s) => s.write_pool().into(),
            Store::Postgres(s) => s.pool().into(),
        }
    }
}

/// A statement and its binds, run on either backend.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    sqlite: Cow<'a, str>,
    /// `None`: `sqlite`, numbered.
    postgres: Option<Cow<'a, str>>,
    args: Vec<Arg<'a>>,
}

/// A statement both backends run: `?` placeholders, `IN (?...)` for a list.
pub fn query<'a>(sql: impl Into<Cow<'a, str>>) -> Query<'a> {
    Query {
        sqlite: sql.into(),
        postgres: None,
        args: Vec::new(),
    }
}

/// A statement written for each backend: SQLite's with `?` placeholders (`IN (?...)` for a list),
/// PostgreSQL's as it runs (`$n` placeholders, a list bound as one array).
pub fn query_each<'a>(
    sqlite: impl Into<Cow<'a, str>>,
    postgres: impl Into<Cow<'a, str>>,
) -> Query<'a> {
    Query {
        sqlite: sqlite.into(),
        postgres: Some(postgres.into()),
        args: Vec::new(),
    }
}

/// A statement run as written, on whichever backend it is meant for: one only one backend runs, in
/// its own placeholders (`$n` for PostgreSQL), or a definition read from the database's catalog (an
/// index, a trigger), where a `?` means what it says.
pub fn verbatim<'a>(sql: impl Into<Cow<'a, str>>) -> Query<'a> {
    let sql = sql.into();
    Query {
        postgres: Some(sql.clone()),
        sqlite: sql,
        args: Vec::new(),
    }
}

impl<'a> Query<'a> {
    /// Binds the next placeholder (a slice: the next `IN (?...)`).
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Binds each of `values` in turn, as many placeholders.
    pub fn bind_each<V: Into<Arg<'a>>>(mut self, values: impl IntoIterator<Item = V>) -> Self {
        self.args.extend(values.into_iter().map(Into::into));
        self
    }

    /// The text SQLite runs: each `?...` replaced by one `?` per element of its list.
    fn sqlite_text(&self) -> Result<Cow<'_, str>, sqlx::Error> {
        if !self.args.iter().any(Arg::is_list) {
            return Ok(Cow::Borrowed(&self.sqlite));
        }
        let mut out = String::with_capacity(self.sqlite.len() + 64);
        let mut rest: &str = &self.sqlite;
        let mut index = 0;
        while let Some(at) = rest.find('?') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            let arg = self.args.get(index).ok_or_else(|| misbound(&self.sqlite))?;
            if let Some(after) = rest.strip_prefix("...") {
                let n = arg.list_len();
                for i in 0..n {
                    out.push_str(if i == 0 { "?" } else { ", ?" });
                }
                rest = after;
            } else if arg.is_list() {
                return Err(misbound(&self.sqlite));
            } else {
                out.push('?');
            }
            index += 1;
        }
        out.push_str(rest);
        Ok(Cow::Owned(out))
    }

    /// The text PostgreSQL runs.
    fn postgres_text(&self) -> Cow<'_, str> {
        match &self.postgres {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(numbered(&self.sqlite)),
        }
    }

    fn sqlite_args(&self) -> Result<SqliteArguments<'_>, sqlx::Error> {
        let mut out = SqliteArguments::default();
        for arg in &self.args {
            let added = match arg {
                Arg::Text(v) => out.add(v.as_ref()),
                Arg::OptText(v) => out.add(v.as_deref()),
                Arg::Int(v) => out.add(*v),
                Arg::OptInt(v) => out.add(*v),
                Arg::Float(v) => out.add(*v),
                Arg::OptFloat(v) => out.add(*v),
                Arg::Bool(v) => out.add(*v),
                Arg::Bytes(v) => out.add(v.as_ref()),
                Arg::OptBytes(v) => out.add(v.as_deref()),
                Arg::Texts(list) => list.iter().try_for_each(|v| out.add(*v)),
                Arg::Ints(list) => list.iter().try_for_each(|v| out.add(*v)),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        Ok(out)
    }

    fn postgres_args(&self) -> Result<PgArguments, sqlx::Error> {
        let mut out = PgArguments::default();
        for arg in &self.args {
            let added = match arg {
                Arg::Text(v) => out.add(v.as_ref()),
                Arg::OptText(v) => out.add(v.as_deref()),
                Arg::Int(v) => out.add(*v),
                Arg::OptInt(v) => out.add(*v),
                Arg::Float(v) => out.add(*v),
                Arg::OptFloat(v) => out.add(*v),
                Arg::Bool(v) => out.add(*v),
                Arg::Bytes(v) => out.add(v.as_ref()),
                Arg::OptBytes(v) => out.add(v.as_deref()),
                Arg::Texts(list) => out.add(list.as_slice()),
                Arg::Ints(list) => out.add(list.as_ref()),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        Ok(out)
    }

    /// Runs the statement; the number of rows it changed.
    pub async fn execute(self, on: impl Into<Exec<'_>>) -> Result<u64, sqlx::Error> {
        Ok(match on.into() {
            Exec::Sqlite(on) => {
                let sql = self.sqlite_text()?;
                let mut c = on.hold().await?;
                sqlx::query_with(&sql, self.sqlite_args()?)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            }
            Exec::Postgres(on) => {
                let sql = self.postgres_text();
                let mut c = on.hold().await?;
                sqlx::query_with(&sql, self.postgres_args()?)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            }
        })
    }

    /// Every row of the answer.
    pub async fn fetch_all<T: Record>(
        self,
        on: impl Into<Exec<'_>>,
    ) -> Result<Vec<T>, sqlx::Error> {
        match on.into() {
            Exec::Sqlite(on) => {
                let sql = self.sqlite_text()?;
                let mut c = on.hold().await?;
                sqlx::query_as_with(&sql, self.sqlite_args()?)
                    .fetch_all(&mut *c)
                    .await
            }
            Exec::Postgres(on) => {
                let sql = self.postgres_text();
                let mut c = on.hold().await?;
                sqlx::query_as_with(&sql, self.postgres_args()?)
                    .fetch_all(&mut *c)
                    .await
            }
        }
    }

    /// The first row of the answer, if any.
    pub async fn fetch_optional<T: Record>(
        self,
        on: impl Into<Exec<'_>>,
    ) -> Result<Option<T>, sqlx::Error> {
        match on.into() {
            Exec::Sqlite(on) => {
                let sql = self.sqlite_text()?;
                let mut c = on.hold().await?;
                sqlx::query_as_with(&sql, self.sqlite_args()?)
                    .fetch_optional(&mut *c)
                    .await
            }
            Exec::Postgres(on) => {
                let sql = self.postgres_text();
                let mut c = on.hold().await?;
                sqlx::query_as_with(&sql, self.postgres_args()?)
                    .fetch_optional(&mut *c)
                    .await
            }
        }
    }

    /// The first row of the answer; `RowNotFound` without one.
    pub async fn fetch_one<T: Record>(self, on: impl Into<Exec<'_>>) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// The first column of every row.
    pub async fn scalars<T: Scalar>(self, on: impl Into<Exec<'_>>) -> Result<Vec<T>, sqlx::Error> {
        let rows: Vec<(T,)> = self.fetch_all(on).await?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    /// The first column of the first row, if any.
    pub async fn scalar_optional<T: Scalar>(
        self,
        on: impl Into<Exec<'_>>,
    ) -> Result<Option<T>, sqlx::Error> {
        let row: Option<(T,)> = self.fetch_optional(on).await?;
        Ok(row.map(|(v,)| v))
    }

    /// The first column of the first row; `RowNotFound` without one.
    pub async fn scalar<T: Scalar>(self, on: impl Into<Exec<'_>>) -> Result<T, sqlx::Error> {
        let (v,): (T,) = self.fetch_one(on).await?;
        Ok(v)
    }

    /// Hands each row of the answer to `each` as it arrives (the answer is not gathered first).
    pub async fn fetch_each<T: Record, E: From<sqlx::Error>>(
        self,
        on: impl Into<Exec<'_>>,
        mut each: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        match on.into() {
            Exec::Sqlite(on) => {
                let sql = self.sqlite_text()?;
                let mut c = on.hold().await?;
                let mut rows = sqlx::query_as_with(&sql, self.sqlite_args()?).fetch(&mut *c);
                while let Some(row) = rows.try_next().await? {
                    each(row)?;
                }
            }
            Exec::Postgres(on) => {
                let sql = self.postgres_text();
                let mut c = on.hold().await?;
                let mut rows = sqlx::query_as_with(&sql, self.postgres_args()?).fetch(&mut *c);
                while let Some(row) = rows.try_next().await? {
                    each(row)?;
                }
            }
        }
        Ok(())
    }
}

/// `(?, ?), (?, ?), …`: `rows` rows of `columns` placeholders, for a multi-row `VALUES`.
pub fn values(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

fn misbound(sql: &str) -> sqlx::Error {
    sqlx::Error::Encode(format!("the binds do not match the placeholders of {sql:?}").into())
}

/// `sql` with its `?` placeholders numbered `$1`, `$2`, … for PostgreSQL, and each `IN (?...)` (a
/// list) as `= ANY($n)`, `NOT IN (?...)` as `<> ALL($n)` (the same answers, `NULL`s included).
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut rest = sql;
    while let Some(at) = rest.find('?') {
        let before = &rest[..at];
        rest = &rest[at + 1..];
        n += 1;
        let list = rest.strip_prefix("...)");
        let not_in = before.strip_suffix("NOT IN (");
        match (before.strip_suffix("IN ("), list) {
            (Some(head), Some(after)) => {
                out.push_str(not_in.unwrap_or(head));
                out.push_str(if not_in.is_some() {
                    "<> ALL($"
                } else {
                    "= ANY($"
                });
                out.push_str(&n.to_string());
                out.push(')');
                rest = after;
            }
            _ => {
                out.push_str(before);
                out.push('$');
                out.push_str(&n.to_string());
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE w = ? AND b > ? LIMIT ?"),
            "SELECT a FROM t WHERE w = $1 AND b > $2 LIMIT $3"
        );
        assert_eq!(numbered("SELECT count(*) FROM t"), "SELECT count(*) FROM t");
    }

    #[test]
    fn a_list_is_one_array_on_postgres_and_one_placeholder_per_element_on_sqlite() {
        let text = "SELECT a FROM t WHERE w = ? AND p IN (?...) ORDER BY a LIMIT ?";
        assert_eq!(
            numbered(text),
            "SELECT a FROM t WHERE w = $1 AND p = ANY($2) ORDER BY a LIMIT $3"
        );
        let names = ["x", "y", "z"];
        let q = query(text).bind("w").bind(&names[..]).bind(5);
        assert_eq!(
            q.sqlite_text().unwrap(),
            "SELECT a FROM t WHERE w = ? AND p IN (?, ?, ?) ORDER BY a LIMIT ?"
        );
        assert_eq!(q.sqlite_args().unwrap().len(), 5);
        assert_eq!(q.postgres_args().unwrap().len(), 3);
        let none: [&str; 0] = [];
        assert_eq!(
            numbered("DELETE FROM t WHERE w = ? AND (p IN (?...) OR s NOT IN (?...))"),
            "DELETE FROM t WHERE w = $1 AND (p = ANY($2) OR s <> ALL($3))"
        );
        let q = query(text).bind("w").bind(&none[..]).bind(5);
        assert_eq!(
            q.sqlite_text().unwrap(),
            "SELECT a FROM t WHERE w = ? AND p IN () ORDER BY a LIMIT ?"
        );
    }

    #[test]
    fn a_list_bound_where_the_text_has_no_list_is_refused() {
        let names = ["x"];
        let q = query("SELECT a FROM t WHERE p = ?").bind(&names[..]);
        assert!(q.sqlite_text().is_err());
        let q = query("SELECT a FROM t WHERE p IN (?...)");
        assert!(
            q.sqlite_text().is_ok(),
            "no list bound: left to the database"
        );
    }

    #[test]
    fn a_text_for_each_backend_is_run_as_written_on_postgres() {
        let q = query_each("SELECT ? + ?", "SELECT $1 + $1");
        assert_eq!(q.postgres_text(), "SELECT $1 + $1");
        assert_eq!(q.sqlite_text().unwrap(), "SELECT ? + ?");
    }
}
