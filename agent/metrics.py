"""Prometheus metrics, defined once so every part uses the same names.

Parts import the metric they update; web serves them on /metrics. Keep label
values to a small fixed set (reason codes, kinds), never ids from the wire.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter(
    "dairy_edge_messages_received_total", "MQTT messages handed to ingest."
)
READINGS_STORED = Counter(
    "dairy_edge_readings_stored_total", "Readings committed to the buffer.", ["firmware"]
)
REJECTED = Counter(
    "dairy_edge_rejected_total", "Messages quarantined, by reason.", ["reason"]
)
DEDUP_HITS = Counter(
    "dairy_edge_dedup_hits_total", "Records already in the buffer (redeliveries, repeats)."
)
DROPPED = Counter(
    "dairy_edge_dropped_total", "Buffered records dropped, by reason and class.", ["reason", "kind"]
)
SESSION_GAPS = Counter(
    "dairy_edge_session_gaps_total", "Broker connects without our persistent session."
)
MQTT_CONNECTED = Gauge("dairy_edge_mqtt_connected", "1 while connected to the broker.")
COMMITS = Counter("dairy_edge_store_commits_total", "Group commits to the buffer.")
COMMIT_SECONDS = Histogram(
    "dairy_edge_store_commit_seconds",
    "Time per group commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
STORAGE_FAULTS = Counter(
    "dairy_edge_storage_faults_total", "Storage errors, by kind.", ["kind"]
)
SYNC_RECORDS = Counter(
    "dairy_edge_sync_records_total", "Records answered by the central receiver.", ["status"]
)
SYNC_ATTEMPTS = Counter(
    "dairy_edge_sync_attempts_total", "Batch uploads, by outcome.", ["outcome"]
)
SYNC_BACKLOG = Gauge("dairy_edge_sync_backlog_records", "Records waiting to be synced.")
DEAD_LETTERS = Counter("dairy_edge_dead_letters_total", "Records moved to dead_letter.")
ALERTS_RAISED = Counter(
    "dairy_edge_alerts_total", "Alerts raised, by rule and severity.", ["rule", "severity"]
)

CENTRAL_BATCHES = Counter(
    "dairy_edge_central_batches_total",
    "Batch posts at the central receiver, by outcome (new, resend, replay, refused).",
    ["outcome"],
)
CENTRAL_RECORDS = Counter(
    "dairy_edge_central_records_total",
    "Records answered by the central receiver, by status and kind.",
    ["status", "kind"],
)
CENTRAL_CACHE_SKIPPED = Counter(
    "dairy_edge_central_cache_skipped_total",
    "Cache updates not made (Redis down, slow or the queue full), by reason.",
    ["reason"],
)
MQTT_HANDLER_ERRORS = Counter(
    "dairy_edge_mqtt_handler_errors_total",
    "Messages whose handler raised; left unacknowledged for redelivery.",
)
STORE_USED_BYTES = Gauge(
    "dairy_edge_store_used_bytes", "Bytes of the buffer database holding data."
)
STORE_FULL = Gauge(
    "dairy_edge_store_full", "1 while the buffer refuses new records for lack of space."
)

# Cameras and vision. Label values are camera ids from the config file (a
# small fixed set), model names from the manifest, and fixed reason codes.
CAMERA_STATE = Gauge(
    "dairy_edge_camera_state",
    "1 for the camera's current state (online, stalled, offline, connecting), else 0.",
    ["camera", "state"],
)
CAMERA_FRAMES = Counter(
    "dairy_edge_camera_frames_total", "Frames read from a camera.", ["camera"]
)
CAMERA_RECONNECTS = Counter(
    "dairy_edge_camera_reconnects_total", "Camera (re)open attempts after a failure.", ["camera"]
)
FRAMES_DROPPED = Counter(
    "dairy_edge_frames_dropped_total",
    "Frames not sent to the models, by reason (budget, busy, empty, error).",
    ["camera", "reason"],
)
FRAMES_INFERRED = Counter(
    "dairy_edge_frames_inferred_total", "Frames the models ran on.", ["camera"]
)
MODEL_SECONDS = Histogram(
    "dairy_edge_model_seconds",
    "Time per model call.",
    ["model"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
MODEL_LOADS = Counter(
    "dairy_edge_model_loads_total",
    "Model load attempts, by outcome (active, refused, rolled_back).",
    ["model", "outcome"],
)
IDENTIFICATIONS = Counter(
    "dairy_edge_identifications_total",
    "Ear-tag visits closed, by status (identified, flagged, review).",
    ["status"],
)
