-- A track event's facets (`cdp_domain::audience::facets`): the scalars under its `properties` by
-- path, as JSON text, so that the audience index answers an event condition's `where` filters
-- without reading the log. NULL on rows written before: a filter on such an event's name is
-- answered by folding the events until `cdp replay rebuild` writes them.
ALTER TABLE event_profiles ADD COLUMN facets TEXT;
