"""Detection: per-sensor anomaly scores (anomaly/) and dairy rules and alerts (rules/)."""
