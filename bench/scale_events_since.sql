-- bench/scale_events_since.sql: a consumer at the head of the feed reads the
-- last 100 events (-D head=H, the newest global_position; bench/scale.sh).
-- Each call first asks for a numbering round (the worker's, when one serves
-- the database), as every read of the feed does.
SELECT * FROM provider_events_since(:head - 100, 100);
