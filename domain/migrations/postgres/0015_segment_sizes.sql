-- Segment sizes over time (`GET /v1/console/segment-sizes`, the console's chart): each segment's size
-- at the end of each of the last days is its size now less the enters and exits recorded since. The
-- query reads only those days' rows of one segment at a time: a range of this index (workspace,
-- segment, at), answered from the index alone (`entered` is included), instead of every row the
-- workspace's history ever recorded grouped by segment and day (`segment_history` only grows).
CREATE INDEX segment_history_by_segment ON segment_history (workspace, segment, at) INCLUDE (entered);
