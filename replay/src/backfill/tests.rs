//! Backfill's tests: the CSV mapping, quoting, stable ids, rejected lines, resume and idempotency on a
//! real SQLite store, and that no input makes the readers panic.

use std::io::Cursor;

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

use super::*;

const WS: &str = "acme";

/// The workspace the tests backfill into, as `backfill` takes it.
fn ws() -> WorkspaceId {
    WorkspaceId::parse(WS).unwrap()
}

fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn context(skip_through: u64) -> ReaderContext {
    ReaderContext {
        workspace: WS.into(),
        file_name: "pos.csv".into(),
        path: "/tmp/pos.csv".into(),
        received_at: received_at(),
        phone_region: Default::default(),
        skip_through,
    }
}

fn pos_mapping() -> Mapping {
    Mapping::parse(
        "userId=member_no,traits.phone=mobile,event='Order Completed',timestamp=paid_at,\
         properties.total=amount:number,properties.paid=paid:boolean,properties.store.city=city",
    )
    .unwrap()
}

/// Every batch of a reader, all at once.
fn read_all(input: &str, format: &Format, skip_through: u64) -> Vec<Batch> {
    let mut reader = Reader::new(
        Cursor::new(input.as_bytes().to_vec()),
        format,
        context(skip_through),
    )
    .unwrap();
    let mut out = Vec::new();
    while let Some(batch) = reader.next_batch(2).unwrap() {
        out.push(batch);
    }
    out
}

fn events(batches: &[Batch]) -> Vec<&NewEvent> {
    batches.iter().flat_map(|b| &b.events).collect()
}

fn rejected(batches: &[Batch]) -> Vec<&QuarantineEntry> {
    batches.iter().flat_map(|b| &b.rejected).collect()
}

fn payload(event: &NewEvent) -> Value {
    serde_json::from_str(&event.payload).unwrap()
}

#[test]
fn a_csv_row_becomes_a_typed_segment_message() {
    let csv = "member_no,mobile,paid_at,amount,paid,city\n\
               M-1,+86 138 0013 8000,2024-03-01 14:05:00,129.5,yes,Shanghai\n";
    let batches = read_all(csv, &Format::Csv(pos_mapping()), 0);
    let events = events(&batches);
    assert_eq!(events.len(), 1, "{:?}", rejected(&batches));
    let e = events[0];
    assert_eq!(e.kind.as_str(), "track");
    assert_eq!(e.name.as_deref(), Some("Order Completed"));
    assert_eq!(e.user_id.as_deref(), Some("M-1"));
    // A zone-less export time is read as UTC and kept: no skew correction moves it to the backfill's day.
    assert_eq!(
        e.event_time,
        Utc.with_ymd_and_hms(2024, 3, 1, 14, 5, 0).unwrap()
    );
    assert_eq!(e.received_at, received_at());
    let p = payload(e);
    assert_eq!(p["properties"]["total"], json!(129.5));
    assert_eq!(p["properties"]["paid"], json!(true));
    assert_eq!(p["properties"]["store"]["city"], json!("Shanghai"));
    // The phone went through the same normalisation as live ingestion.
    assert_eq!(p["traits"]["phone"], json!("+8613800138000"));
}

#[test]
fn empty_cells_are_left_out_and_identify_is_the_default_without_an_event() {
    let mapping =
        Mapping::parse("userId=id,traits.email=email,traits.age=age:number,traits.name=name")
            .unwrap();
    let batches = read_all("id,email,age,name\nC-1,,,Ann\n", &Format::Csv(mapping), 0);
    let events = events(&batches);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind.as_str(), "identify");
    let p = payload(events[0]);
    assert_eq!(p["traits"], json!({"name": "Ann"}));
}

#[test]
fn mappings_that_cannot_work_are_refused_before_reading() {
    assert!(matches!(
        Mapping::parse("userid=member_no"),
        Err(MappingError::Target(t)) if t == "userid"
    ));
    assert!(matches!(
        Mapping::parse("traits=phone"),
        Err(MappingError::Target(_))
    ));
    assert!(matches!(
        Mapping::parse("traits.a=x,traits.a.b=y"),
        Err(MappingError::Overlap(..))
    ));
    assert!(matches!(
        Mapping::parse("userId"),
        Err(MappingError::Syntax(_))
    ));
    assert_eq!(Mapping::parse(" , "), Err(MappingError::Empty));
    let err = Reader::new(
        Cursor::new(b"a,b\n1,2\n".to_vec()),
        &Format::Csv(Mapping::parse("userId=member_no").unwrap()),
        context(0),
    )
    .unwrap_err();
    assert!(
        matches!(&err, BackfillError::Mapping(MappingError::MissingColumn { column, .. }) if column == "member_no"),
        "{err}"
    );
}

#[test]
fn quoted_fields_hold_commas_quotes_and_line_breaks() {
    assert_eq!(
        rows::fields(
            br#"a,"b,c","say ""hi""",,"x
y""#
        )
        .unwrap(),
        vec!["a", "b,c", r#"say "hi""#, "", "x\ny"]
    );
    assert_eq!(rows::fields(b"").unwrap(), vec![""]);
    assert_eq!(rows::fields(br#"ab"c,d"#).unwrap(), vec![r#"ab"c"#, "d"]);
    assert_eq!(
        rows::fields(br#""ab"c"#),
        Err(rows::FieldsError::AfterQuote)
    );
    assert_eq!(
        rows::fields(br#""ab"#),
        Err(rows::FieldsError::Unterminated)
    );

    let mapping = Mapping::parse("userId=id,traits.note=note").unwrap();
    let csv = "id,note\r\nu1,\"first line\r\nsecond, line\"\r\nu2,plain\r\n";
    let batches = read_all(csv, &Format::Csv(mapping), 0);
    let events = events(&batches);
    assert_eq!(events.len(), 2);
    assert_eq!(
        payload(events[0])["traits"]["note"],
        json!("first line\r\nsecond, line")
    );
    // The record spanned lines 2–3, so the next one starts on line 4.
    assert_eq!(batches[0].last_line, 4);
}

#[test]
fn identical_rows_get_distinct_ids_and_every_read_the_same_ones() {
    let csv = "member_no,mobile,paid_at,amount,paid,city\n\
               M-1,,2024-03-01 14:05:00,10,,\n\
               M-1,,2024-03-01 14:05:00,10,,\n\
               M-2,,2024-03-02 09:00:00,20,,\n\
               M-1,,2024-03-01 14:05:00,10,,\n";
    let first = read_all(csv, &Format::Csv(pos_mapping()), 0);
    let ids: Vec<String> = events(&first)
        .iter()
        .map(|e| e.message_id.clone())
        .collect();
    assert_eq!(ids.len(), 4);
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("bf_")));
    assert_eq!(ids[1], format!("{}-1", ids[0]));
    assert_eq!(ids[3], format!("{}-2", ids[0]));
    let again: Vec<String> = events(&read_all(csv, &Format::Csv(pos_mapping()), 0))
        .iter()
        .map(|e| e.message_id.clone())
        .collect();
    assert_eq!(ids, again);
    // Resuming after line 3 skips two rows but still counts them: the fourth row keeps its id.
    let resumed: Vec<String> = events(&read_all(csv, &Format::Csv(pos_mapping()), 3))
        .iter()
        .map(|e| e.message_id.clone())
        .collect();
    assert_eq!(resumed, ids[2..].to_vec());
    // Another workspace, other ids.
    let digest = row_digest("other", b"M-1,,2024-03-01 14:05:00,10,,");
    assert_ne!(derived_message_id(&digest, 0), ids[0]);
}

#[test]
fn a_message_keeps_its_own_message_id() {
    let ndjson = r#"{"type":"track","event":"A","userId":"u","messageId":"m-1","timestamp":"2021-05-01T00:00:00Z"}
{"type":"track","event":"A","userId":"u","timestamp":"2021-05-01T00:00:00Z"}
"#;
    let batches = read_all(ndjson, &Format::Ndjson, 0);
    let ids: Vec<&str> = events(&batches)
        .iter()
        .map(|e| e.message_id.as_str())
        .collect();
    assert_eq!(ids[0], "m-1");
    assert!(ids[1].starts_with("bf_"));
}

#[test]
fn sent_at_never_moves_a_historical_time() {
    let ndjson = r#"{"type":"track","event":"A","userId":"u","timestamp":"2021-05-01T10:00:00Z","sentAt":"2021-05-01T09:00:00Z"}

{"type":"identify","userId":"u","sentAt":"2020-02-02T02:02:02Z"}
"#;
    let batches = read_all(ndjson, &Format::Ndjson, 0);
    let events = events(&batches);
    assert_eq!(
        events[0].event_time,
        Utc.with_ymd_and_hms(2021, 5, 1, 10, 0, 0).unwrap()
    );
    // Without a timestamp, the message's sentAt is its time, not the backfill's.
    assert_eq!(
        events[1].event_time,
        Utc.with_ymd_and_hms(2020, 2, 2, 2, 2, 2).unwrap()
    );
    assert_eq!(batches[0].last_line, 3, "the blank line is counted");
}

#[test]
fn refused_rows_name_their_line_and_the_others_of_the_batch_are_kept() {
    let csv = "member_no,mobile,paid_at,amount,paid,city\n\
               M-1,,2024-03-01 14:05:00,10,,\n\
               M-2,,2024-03-01 14:05:00,ten,,\n\
               M-3,not a phone,2024-03-01 14:05:00,10,,\n\
               ,,2024-03-01 14:05:00,10,,\n\
               M-5,,1999-01-01 00:00:00,10,,\n\
               M-6,,2024-03-01 14:05:00,10\n\
               M-7,,2024-03-01 14:05:00,10,maybe,\n";
    let batches = read_all(csv, &Format::Csv(pos_mapping()), 0);
    let kept: Vec<_> = events(&batches)
        .iter()
        .map(|e| e.user_id.clone().unwrap())
        .collect();
    // A junk phone refuses nothing: the row is kept, the value is a finding.
    assert_eq!(kept, vec!["M-1", "M-3"]);
    let findings: Vec<(&str, &str, &str)> = batches
        .iter()
        .flat_map(|b| &b.findings)
        .map(|f| (f.message_id.as_str(), f.field.as_str(), f.code.as_str()))
        .collect();
    let m3 = events(&batches)[1].message_id.clone();
    assert_eq!(findings, [(m3.as_str(), "traits.phone", "not_a_phone")]);
    let refused: Vec<(&str, &str, &str)> = rejected(&batches)
        .iter()
        .map(|q| (q.code.as_str(), q.field.as_str(), q.reason.as_str()))
        .collect();
    let expect = [
        ("invalid_value", "properties.total", "line 3 of pos.csv: "),
        ("missing_field", "userId", "line 5 of pos.csv: "),
        ("invalid_timestamp", "timestamp", "line 6 of pos.csv: "),
        (
            "invalid_row",
            "",
            "line 7 of pos.csv: the row has 4 fields, the header 6",
        ),
        ("invalid_value", "properties.paid", "line 8 of pos.csv: "),
    ];
    assert_eq!(refused.len(), expect.len(), "{refused:?}");
    for ((code, field, reason), (want_code, want_field, want_reason)) in refused.iter().zip(expect)
    {
        assert_eq!((*code, *field), (want_code, want_field), "{reason}");
        assert!(reason.starts_with(want_reason), "{reason}");
    }
    let q = rejected(&batches)[0];
    assert_eq!(q.source, "backfill");
    assert_eq!(q.workspace.as_deref(), Some(WS));
    assert_eq!(q.payload, "M-2,,2024-03-01 14:05:00,ten,,");

    let ndjson = "{\"type\":\"track\",\"userId\":\"u\"}\n{not json\n";
    let batches = read_all(ndjson, &Format::Ndjson, 0);
    let reasons: Vec<&str> = rejected(&batches)
        .iter()
        .map(|q| q.reason.as_str())
        .collect();
    assert!(reasons[0].starts_with("line 1 of pos.csv: "), "{reasons:?}");
    assert!(
        reasons[1].starts_with("line 2 of pos.csv: the row is not JSON"),
        "{reasons:?}"
    );
}

#[test]
fn an_overlong_row_is_refused_and_reading_goes_on() {
    let long = "x".repeat(rows::MAX_ROW_BYTES + 10);
    let ndjson = format!(
        "{long}\n{}\n",
        r#"{"type":"identify","userId":"u","timestamp":"2021-05-01T00:00:00Z"}"#
    );
    let batches = read_all(&ndjson, &Format::Ndjson, 0);
    assert_eq!(rejected(&batches)[0].code, "message_too_large");
    assert_eq!(events(&batches).len(), 1);
    assert_eq!(batches[0].last_line, 2);
}

// ---- against a store ----

struct TestStore {
    store: Store,
    dir: tempfile::TempDir,
}

async fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("data"))
        .await
        .unwrap();
    store.ensure_workspace(WS).await.unwrap();
    TestStore { store, dir }
}

fn options(restart: bool) -> Options {
    Options {
        batch_size: 2,
        restart,
        received_at: received_at(),
        phone_region: Default::default(),
    }
}

async fn message_ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .read_after(cdp_domain::event::Position::START, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.message_id)
        .collect();
    ids.sort();
    ids
}

const POS: &str = "member_no,mobile,paid_at,amount,paid,city\n\
                   M-1,,2024-03-01 14:05:00,10,,\n\
                   M-1,,2024-03-01 14:05:00,10,,\n\
                   M-2,,2024-03-02 09:00:00,oops,,\n\
                   M-3,,2024-03-03 09:00:00,30,,\n\
                   M-1,,2024-03-01 14:05:00,10,,\n";

#[tokio::test]
async fn a_rerun_resumes_and_a_restart_stores_nothing_new() {
    let t = store().await;
    let path = t.dir.path().join("pos.csv");
    std::fs::write(&path, POS).unwrap();
    let source = || Source {
        path: path.clone(),
        format: Format::Csv(pos_mapping()),
    };
    let updates = std::sync::Mutex::new(Vec::new());
    let record = |u: &Update| updates.lock().unwrap().push(u.clone());

    let first = backfill(&t.store, &ws(), source(), &options(false), &record)
        .await
        .unwrap();
    assert_eq!(first.resumed_after, None);
    assert_eq!(
        (
            first.progress.rows,
            first.progress.stored,
            first.progress.duplicates,
            first.progress.rejected
        ),
        (5, 4, 0, 1)
    );
    assert_eq!(first.batches, 3);
    assert_eq!(first.progress.last_line, 6);
    assert_eq!(t.store.count_events(WS).await.unwrap(), 4);
    let quarantined = t.store.list_quarantine(WS, None, 10).await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].reason.starts_with("line 4 of pos.csv: "));
    let committed: Vec<u64> = updates
        .lock()
        .unwrap()
        .iter()
        .filter_map(|u| match u {
            Update::Committed(p) => Some(p.last_line),
            Update::Resuming { .. } => None,
        })
        .collect();
    assert_eq!(committed, vec![3, 5, 6]);

    // The same file again: everything was committed, nothing is read.
    updates.lock().unwrap().clear();
    let second = backfill(&t.store, &ws(), source(), &options(false), &record)
        .await
        .unwrap();
    assert_eq!(second.resumed_after, Some(6));
    assert_eq!(second.progress.rows, 0);
    assert_eq!(
        updates.lock().unwrap()[0],
        Update::Resuming {
            after_line: 6,
            finished: true
        }
    );

    // --restart reads it all again: every row is already there.
    let ids = message_ids(&t.store).await;
    let third = backfill(&t.store, &ws(), source(), &options(true), &record)
        .await
        .unwrap();
    assert_eq!(
        (
            third.progress.rows,
            third.progress.stored,
            third.progress.duplicates
        ),
        (5, 0, 4)
    );
    assert_eq!(message_ids(&t.store).await, ids);
    assert_eq!(t.store.count_events(WS).await.unwrap(), 4);
}

#[tokio::test]
async fn an_interrupted_run_resumes_after_its_last_committed_line_with_the_same_ids() {
    // The whole file in one run, for the ids.
    let whole = store().await;
    let path = whole.dir.path().join("pos.csv");
    std::fs::write(&path, POS).unwrap();
    let source = Source {
        path: path.clone(),
        format: Format::Csv(pos_mapping()),
    };
    backfill(
        &whole.store,
        &ws(),
        source.clone(),
        &options(false),
        &|_| {},
    )
    .await
    .unwrap();
    let all_ids = message_ids(&whole.store).await;

    // A run that stopped after the batch ending on line 3: its two events are in, the progress says 3.
    let t = store().await;
    let mut reader = Reader::new(
        BufReader::new(File::open(&path).unwrap()),
        &source.format,
        context(0),
    )
    .unwrap();
    let batch = reader.next_batch(2).unwrap().unwrap();
    assert_eq!(batch.last_line, 3);
    t.store.append(&batch.events).await.unwrap();
    let file = FileId::of(&path).unwrap();
    let progress = Progress {
        rows: 2,
        stored: 2,
        last_line: 3,
        ..Progress::default()
    };
    save_progress(
        &t.store,
        WS,
        &file,
        &Counts::default().plus(&progress, false),
    )
    .await
    .unwrap();

    let resumed = backfill(&t.store, &ws(), source, &options(false), &|_| {})
        .await
        .unwrap();
    assert_eq!(resumed.resumed_after, Some(3));
    assert_eq!(
        (
            resumed.progress.rows,
            resumed.progress.stored,
            resumed.progress.rejected
        ),
        (3, 2, 1)
    );
    assert_eq!(message_ids(&t.store).await, all_ids);
    let saved = load_progress(&t.store, WS, &file).await.unwrap().unwrap();
    assert_eq!(
        saved,
        Saved {
            last_line: 6,
            finished: true,
            counts: Counts {
                stored: 4,
                duplicates: 0,
                rejected: 1
            }
        }
    );
}

#[tokio::test]
async fn an_unknown_workspace_stores_nothing() {
    let t = store().await;
    let path = t.dir.path().join("e.ndjson");
    std::fs::write(&path, "{}\n").unwrap();
    let err = backfill(
        &t.store,
        &WorkspaceId::parse("nobody").unwrap(),
        Source {
            path,
            format: Format::Ndjson,
        },
        &options(false),
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackfillError::UnknownWorkspace(_)), "{err}");
}

fn encode_csv(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(",")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the bytes, reading gives batches and rejections, never a panic, and every row is either
    /// an event or a rejection.
    #[test]
    fn no_input_makes_the_readers_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for format in [Format::Ndjson, Format::Csv(Mapping::parse("userId=a,event=b,traits.phone=c,properties.n=d:number").unwrap())] {
            let mut input = b"a,b,c,d\n".to_vec();
            input.extend_from_slice(&bytes);
            if let Ok(mut reader) = Reader::new(Cursor::new(input), &format, context(0)) {
                while let Some(batch) = reader.next_batch(3).unwrap() {
                    prop_assert_eq!(batch.rows as usize, batch.events.len() + batch.rejected.len());
                }
            }
        }
    }

    /// Quoted CSV cells come back as they were written, whatever they hold.
    #[test]
    fn quoted_cells_round_trip(cells in proptest::collection::vec(any::<String>(), 1..6)) {
        let record = encode_csv(&cells);
        prop_assert_eq!(rows::fields(record.as_bytes()).unwrap(), cells);
    }
}
