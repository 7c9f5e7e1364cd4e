//! Tags: rule, value, RFM and manual tags, evaluated from a profile's facts.
