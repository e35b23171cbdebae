"""The configuration tree. Unknown keys are errors; every field has a default,
bounds where they make sense, and a description (exported as JSON Schema by
``dairy-edge config schema``).

Secrets are not fields here: see ``agent.config.secrets``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.config.base import Section
from agent.config.profiles import (
    ProfileClock,
    ProfileConfig,
    ScheduleEntry,
    check_profiles,
    check_schedule,
)
from agent.config.rules import RulesConfig

SAFE_ID = r"^[A-Za-z0-9_-]{1,64}$"
# Shipped data (agent/bundled: links in a checkout, copies in an installed wheel).
BUNDLED = Path(__file__).resolve().parents[1] / "bundled"


class GatewayConfig(Section):
    id: str = Field(
        "gw-01",
        pattern=SAFE_ID,
        description="This gateway's id: the device_id at the central store and in MQTT topics.",
    )
    data_dir: Path = Field(
        Path("/var/lib/dairy-edge"),
        description="Where the buffer database and state live (systemd StateDirectory).",
    )
    firmware_dir: Path = Field(
        BUNDLED / "firmware_configs",
        description="Folder of firmware_configs/*.yaml: how each sensor node talks.",
    )
    calibration_dir: Path = Field(
        Path("/etc/dairy-edge/calibration"),
        description="Folder of calibration/*.yaml: per-device corrections. Left at its "
        "default, an absent or empty folder means none (the shipped sample is for the demo "
        "and `dairy-edge init` only); a folder given here must exist.",
    )


class TlsConfig(Section):
    enabled: bool = Field(False, description="Connect to the broker over TLS.")
    ca_file: Path | None = Field(None, description="CA bundle; the system store when empty.")
    cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    key_file: Path | None = Field(None, description="Client key for mutual TLS.")
    insecure: bool = Field(False, description="Skip hostname checks (testing only).")


class MqttConfig(Section):
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    username: str | None = Field(
        None, description="Broker user. The password comes from DAIRY_EDGE_MQTT_PASSWORD."
    )
    client_id: str | None = Field(
        None,
        pattern=SAFE_ID,
        description="Fixed client id for the persistent session; 'dairy-edge-<gateway id>' "
        "when empty.",
    )
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="MQTT version; auto tries 5 and falls back to 3.1.1."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        le=2**32 - 1,
        description="How long the broker keeps our session (and queued messages) while we "
        "are away. Longer than the longest planned outage.",
    )
    topics: list[str] = Field(
        default_factory=lambda: ["barn/#"], min_length=1, description="Subscriptions (QoS 1)."
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="Reconnect delay cap.")
    status_prefix: str = Field(
        "dairy-edge",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Topic prefix for the agent's own messages: "
        "<prefix>/<gateway id>/availability (retained, last will) and alerts.",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig)

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class IngestConfig(Section):
    max_payload_bytes: int = Field(
        64 * 1024,
        ge=64,
        le=16 * 1024 * 1024,
        description="Payloads larger than this are quarantined before parsing.",
    )
    max_json_depth: int = Field(8, ge=1, le=64, description="Deeper JSON is rejected.")
    topic_prefix: str | None = Field(
        None,
        pattern=SAFE_ID,
        description="Replaces the first level of every firmware topic pattern (barn/...); "
        "tests and multi-barn sites use their own prefix.",
    )


class StoreConfig(Section):
    path: Path | None = Field(
        None, description="Buffer database; <data_dir>/buffer.db when empty."
    )
    commit_interval_ms: int = Field(
        150,
        ge=5,
        le=1000,
        description="Longest a message waits for its group commit (R8: 100-250 ms spares the "
        "SD card; keep it below the broker's retry interval).",
    )
    commit_max_messages: int = Field(
        200,
        ge=1,
        le=10000,
        description="Commit early once this many messages wait.",
    )
    max_buffer_bytes: int = Field(
        512 * 1024 * 1024,
        ge=1024 * 1024,
        description="Byte cap of the buffer; see docs/reliability.md for the policy when full.",
    )
    reserved_alert_fraction: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="Share of max_buffer_bytes only alerts may use: readings, events and "
        "inferences are held back once the buffer reaches the rest.",
    )
    full_drop_after_s: float = Field(
        600.0,
        ge=0,
        le=30 * 86400,
        description="How long the buffer may stay full (nothing new acknowledged, the broker "
        "holds it) before the oldest unsynced records are dropped by priority (monotonic).",
    )
    synced_max_age_s: float = Field(
        30 * 86400,
        ge=0,
        description="Synced records older than this are deleted (0: keep until space is "
        "needed). Age is monotonic, never wall-clock: a record of an earlier boot counts as "
        "made when this boot started. Unsynced records never expire.",
    )
    synced_max_bytes: int = Field(
        0,
        ge=0,
        description="Cap on the bytes of synced records kept for local display "
        "(0: no cap beyond max_buffer_bytes).",
    )
    retention_interval_s: float = Field(
        60.0, gt=0, le=86400, description="How often retention runs (monotonic)."
    )
    max_pending_items: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="Items queued in memory but not yet committed; beyond it submit() blocks "
        "the caller (backpressure) for up to submit_timeout_s.",
    )
    submit_timeout_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Longest submit() blocks when the pending queue is full; then the item "
        "is refused (not stored, not acknowledged).",
    )


class SyncConfig(Section):
    enabled: bool = Field(True, description="Upload batches to the central receiver.")
    url: str = Field(
        "http://127.0.0.1:8787/api/v1/batches", description="The central receiver's batch URL."
    )
    key_id: str = Field(
        "default",
        pattern=SAFE_ID,
        description="Id of the HMAC key (DAIRY_EDGE_HMAC_KEY) sent with every batch.",
    )
    interval_s: float = Field(2.0, gt=0, le=3600, description="Pause between idle polls.")
    linger_s: float = Field(
        0.2,
        ge=0,
        le=60,
        description="After new records are committed, wait this long for more before "
        "sending (a full batch goes at once): low latency when traffic is light, large "
        "batches when it is heavy.",
    )
    batch_max_records: int = Field(
        2000,
        ge=1,
        le=10000,
        description="Most records per batch. Live traffic goes in smaller ones (what "
        "linger_s gathered); a backlog goes in full ones (fewer requests and commits at "
        "central). A receiver's 413 halves the batch.",
    )
    batch_max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Most uncompressed bytes per batch (central refuses more than "
        "max_decompressed_bytes, 8 MiB by default).",
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="TCP/TLS connect timeout.")
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="Whole-request timeout.")
    backoff_base_s: float = Field(1.0, gt=0, le=60, description="First retry delay.")
    backoff_max_s: float = Field(300.0, gt=0, le=86400, description="Retry delay cap.")
    max_attempts: int = Field(
        5, ge=1, le=1000, description="Rejections before a record goes to dead_letter."
    )
    ca_file: Path | None = Field(None, description="CA bundle for the central's certificate.")


class WebConfig(Section):
    enabled: bool = Field(True, description="Serve the local status page.")
    host: str = Field("0.0.0.0", description="Listen address (technicians' phones on the LAN).")
    port: int = Field(8080, ge=0, le=65535, description="Listen port (0 picks a free one).")
    login: bool = Field(
        True,
        description="Require a login (docs/web.md). May be false only when host is a loopback "
        "address (a test bench); safe mode keeps the login whatever the file says.",
    )
    users_file: Path | None = Field(
        None, description="Users, roles and password hashes; <data_dir>/web-users.json when "
        "empty. Managed with `dairy-edge web user add`.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the page answers to, besides localhost and this machine's "
        "own names (IP addresses always work); other Host headers get 421.",
    )
    metrics_open: bool = Field(
        False, description="Serve /metrics without a login (read-only) for a Prometheus scraper."
    )
    session_hours: float = Field(12.0, gt=0, le=720, description="A session ends unused this long.")
    tls_cert: Path | None = Field(
        None, description="Serve HTTPS with this PEM certificate (and tls_key); cookies get Secure."
    )
    tls_key: Path | None = Field(None, description="The PEM private key of tls_cert.")

    @model_validator(mode="after")
    def _login_off_only_on_loopback(self) -> WebConfig:
        if not self.login and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(
                "login: false is allowed only with host 127.0.0.1, ::1 or localhost; "
                "add users with `dairy-edge web user add NAME --role ROLE` instead"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self


class HomeAssistantConfig(Section):
    enabled: bool = Field(
        False, description="Publish MQTT discovery so the gateway's health, tank "
        "temperatures, barn climate and open alerts appear in Home Assistant (docs/web.md)."
    )
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Home Assistant's MQTT discovery prefix.",
    )
    interval_s: float = Field(60.0, ge=5, le=3600, description="How often states are sent.")


class DetectConfig(Section):
    enabled: bool = Field(True, description="Score readings and raise alerts.")
    save_interval_s: float = Field(
        6 * 3600.0,
        ge=10,
        le=7 * 86400,
        description="How often learnt baselines are saved to the buffer (and always at stop). "
        "About 160 kB per scored stream per save, so longer spares the SD card; shorter "
        "loses less learning to a power cut.",
    )
    anomaly_detector: Literal["default", "cad_ose", "seq_lik"] = Field(
        "seq_lik",
        description="Anomaly detector of every stream. seq_lik: a transition memory over 48 "
        "bins of the field's valid range after calibration (learnt where the firmware gives "
        "none) with HTM's anomaly likelihood, 3-5 us a reading, about 75 kB per stream, "
        "state kept across restarts (the best NAB score here). default: the older "
        "multi-channel detector (its name predates seq_lik), learns each stream's range, "
        "30-45 us a reading, state kept across restarts. cad_ose: CAD OSE on 8 bins of the "
        "valid range, 100-1000 us a reading in pure Python, relearns after a restart "
        "(docs/anomaly.md).",
    )
    anomaly_skip: list[str] = Field(
        default_factory=lambda: ["agitator", "wash", "total_l"],
        description="Value keys not given an anomaly score: on/off states and running "
        "totals, where a per-stream anomaly score means nothing and costs memory.",
    )
    rules: RulesConfig = Field(
        default_factory=RulesConfig, description="Dairy rules and the alert lifecycle."
    )
    worker: Literal["process", "inline"] = Field(
        "inline",
        description="Where the daemon runs detection. process (opt-in; see "
        "docs/performance.md, fifth pass, for what its review left open): in a worker "
        "process of its "
        "own, fed in batches while the daemon parses and stores the next, so detection "
        "runs on a second core (a backlog drains about 25 % faster on 2 cores; about "
        "45 MiB more resident, the worker's own interpreter); if it dies, detection falls "
        "back to the daemon's process from the rule state the worker last sent (at most "
        "about 10 s old; anomaly baselines from the last save), and nothing is lost. "
        "inline: on the daemon's processing thread (one core, less memory). "
        "`dairy-edge replay` always runs it inline.",
    )


class CentralConfig(Section):
    host: str = Field("127.0.0.1", description="Listen address of the central receiver.")
    port: int = Field(8787, ge=0, le=65535, description="Listen port (0 picks a free one).")
    database_url: str = Field(
        "sqlite:///central.db",
        description="postgresql://user@host/db or sqlite:///path. A password comes from "
        "DAIRY_EDGE_DB_PASSWORD.",
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db for the dashboard cache; off when empty."
    )
    redis_timeout_s: float = Field(
        0.25, gt=0, le=10, description="Redis may never slow ingest more than this."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest accepted request body (compressed)."
    )
    max_records: int = Field(10000, ge=1, description="Largest accepted batch.")
    max_decompressed_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest body after gunzip; a bigger one is refused with 413 (gzip "
        "bombs) and the gateway halves its batch.",
    )
    max_json_values: int = Field(
        200_000,
        ge=100,
        description="Most JSON values (counted from commas, colons and brackets) in one "
        "batch; more is refused with 413 before parsing (JSON bombs).",
    )
    max_concurrent_batches: int = Field(
        16, ge=1, le=1024, description="Batches in progress at once, over all gateways; more: 503."
    )
    max_concurrent_per_gateway: int = Field(
        2, ge=1, le=64, description="Batches in progress at once from one gateway; more: 429."
    )
    max_seq_advance: int = Field(
        1000,
        ge=1,
        description="How far one batch may move a gateway's sequence; further is refused "
        "with 409 (the gateway starts a new epoch).",
    )
    accept_body_signature: bool = Field(
        True,
        description="Also accept batches signed over the body only (gateways from before "
        "X-Dairy-Auth). Their body is read before the signature is checked, two at a time; "
        "turn off once every gateway is upgraded.",
    )
    tls_cert: Path | None = Field(
        None, description="Serve HTTPS with this PEM certificate chain (and tls_key); gateways "
        "verify it with sync.ca_file (docs/central-keys.md)."
    )
    tls_key: Path | None = Field(None, description="The PEM private key of central.tls_cert.")
    tls_client_ca: Path | None = Field(
        None, description="Also require a client certificate signed by this CA (mutual TLS)."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> CentralConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("central: give both tls_cert and tls_key, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("central: tls_client_ca needs tls_cert and tls_key")
        return self
    redis_prefix: str = Field(
        "dairy",
        pattern=SAFE_ID,
        description="Prefix of every Redis key (<prefix>:sensor:..., <prefix>:readings).",
    )
    redis_stream_maxlen: int = Field(
        10000, ge=100, description="Approximate length cap of the <prefix>:readings stream."
    )


class CameraConfig(Section):
    """One camera. Frames never pass through MQTT; a failing camera never stops ingest."""

    id: str = Field(pattern=SAFE_ID, description="Camera id: in records, status and metrics.")
    role: Literal["eartag", "bcs", "milk"] = Field(
        "eartag", description="What the camera watches: ear tags at a lane, cow backs (BCS), "
        "or a milk sample point. Chooses the models its frames go to."
    )
    source: Literal["opencv", "picamera2", "replay", "synthetic"] = Field(
        "opencv",
        description="opencv: a V4L2 device or an RTSP/HTTP stream; picamera2: a Raspberry Pi "
        "camera (the 'pi' extra); replay: a folder of images or a video file at its own frame "
        "rate; synthetic: generated barn frames (demo and tests).",
    )
    uri: str = Field(
        "",
        description="opencv: device index ('0'), /dev/videoN or rtsp:// / http:// URL; "
        "replay: a folder or video file; picamera2: camera number; synthetic: a seed.",
    )
    station: str | None = Field(
        None,
        pattern=SAFE_ID,
        description="Station id shared with the RFID reader at the same place: an EID read "
        "from this station is cross-checked with the ear-tag reading.",
    )
    quarter: Literal["LF", "RF", "LR", "RR"] | None = Field(
        None, description="milk: the udder quarter this sample point sees, when fixed."
    )
    width: int | None = Field(None, ge=16, le=8192, description="Requested frame width (px).")
    height: int | None = Field(None, ge=16, le=8192, description="Requested frame height (px).")
    fps_cap: float = Field(
        5.0, gt=0, le=120, description="Most frames per second taken from the camera."
    )
    rotation: Literal[0, 90, 180, 270] = Field(
        0, description="Clockwise rotation applied to every frame (mounting)."
    )
    roi: tuple[float, float, float, float] | None = Field(
        None,
        description="Region of interest as fractions of the (rotated) frame: x, y, w, h in "
        "0..1. Everything outside is cropped before the models run.",
    )
    calibration: Path | None = Field(
        None,
        description="Lens calibration (dairy-edge calibrate camera); "
        "<calibration_dir>/cameras/<id>.yaml when empty and present; none: no undistortion.",
    )
    loop: bool = Field(False, description="replay: start again at the end.")
    stall_after_s: float = Field(
        10.0, gt=0, le=3600, description="No frame for this long (monotonic): 'stalled'."
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="Reconnect delay cap.")
    infer_fps: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Inference budget: most frames per second sent to the models. Frames "
        "beyond it, or while the models are busy, are dropped and counted.",
    )
    motion_threshold: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Presence gate: share of changed pixels (on a small grey thumbnail) "
        "below which a frame is taken as empty and skips the models. 0 turns the gate off.",
    )

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if self.roi is not None:
            x, y, w, h = self.roi
            if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x + 1e-9 and 0 < h <= 1 - y + 1e-9):
                raise ValueError("roi must be x, y, w, h fractions inside the frame")
        return self


class ModelsConfig(Section):
    dir: Path = Field(
        BUNDLED / "models",
        description="Folder with manifest.json and the model files it lists.",
    )
    threads: int = Field(1, ge=1, le=16, description="Threads per model runner.")
    reload_interval_s: float = Field(
        30.0,
        ge=0,
        le=86400,
        description="How often the manifest is checked for new model versions (hot load "
        "after a self-test; the old version stays if the test fails). 0: never.",
    )


class EartagConfig(Section):
    herd_register: Path | None = Field(
        None,
        description="CSV of the herd: animal_id, visual tag number, electronic id (EID). "
        "Readings not in it are flagged, not dropped.",
    )
    tag_pattern: str = Field(
        r"^[0-9]{1,6}$",
        description="The farm's tag format (regular expression, whole number). Readings "
        "that do not match are never reported.",
    )
    min_confidence: float = Field(
        0.9,
        ge=0,
        le=1,
        description="A visit is reported as identified only at or above this confidence; "
        "below it goes to the review queue with its crops. A wrong number is worse than none.",
    )
    visit_gap_s: float = Field(
        3.0, gt=0, le=600, description="A visit ends this long (monotonic) after its last tag."
    )
    max_visit_s: float = Field(
        60.0, gt=0, le=3600, description="A visit longer than this is closed and a new one begun."
    )
    rfid_window_s: float = Field(
        15.0,
        ge=0,
        le=600,
        description="An EID read from the same station within this many seconds of the "
        "visit is cross-checked with it.",
    )
    review_dir: Path | None = Field(
        None, description="Where review crops are kept; <data_dir>/review when empty."
    )
    review_max_bytes: int = Field(
        200 * 1024 * 1024,
        ge=0,
        description="Disk budget of the review queue; the oldest crops go first. 0: no crops.",
    )
    @field_validator("tag_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"not a regular expression: {err}") from err
        return pattern

    upload_crop_bytes_per_day: int = Field(
        2 * 1024 * 1024,
        ge=0,
        description="Crops of flagged or reviewed visits uploaded with their record, at most "
        "this many bytes a day (UTC); beyond it the record goes without its crop.",
    )


class BcsConfig(Section):
    """Body condition from top-view cameras (role: bcs)."""

    model_dir: Path | None = Field(
        None,
        description="Folder of a farm-fitted model (`dairy-edge vision bcs fit --out DIR`); "
        "None: the shipped model in vision.models.dir. Hot-loaded and self-tested like "
        "every model: a refit written here replaces the active one, or is refused and the "
        "old one stays.",
    )
    rear: Literal["auto", "left", "right", "top", "bottom"] = Field(
        "auto", description="Side of the frame the cow's rump is on (the lane's direction); "
        "auto: found per frame.")
    min_quality: float = Field(
        0.25, ge=0, le=1, description="Frames whose outline quality is below this are not scored."
    )
    visit_gap_s: float = Field(
        4.0, gt=0, le=600, description="A visit ends after this long without a scored frame."
    )
    join_window_s: float = Field(
        60.0, ge=0, le=3600,
        description="An identification at the camera's station within this many seconds "
        "of the visit names the cow.",
    )
    loss_alert: float = Field(
        0.5, gt=0, le=2, description="Raise bcs_loss when a cow loses this much within "
        "loss_window_days (trend of her daily scores).")
    loss_window_days: float = Field(30.0, ge=7, le=120, description="Window of the loss alert.")


class MilkConfig(Section):
    """Milk colour and consistency from sample-cup cameras (role: milk)."""

    min_confidence: float = Field(
        0.7, ge=0, le=1,
        description="A sample raises (or clears) milk_abnormal only at or above this "
        "confidence.",
    )
    visit_gap_s: float = Field(
        4.0, gt=0, le=600, description="A sample ends after this long without a checked frame."
    )
    join_window_s: float = Field(
        60.0, ge=0, le=3600,
        description="An identification or RFID read at the camera's station within this many "
        "seconds of the sample names the cow.",
    )


class VisionConfig(Section):
    enabled: bool = Field(True, description="Run the models on camera frames.")
    background_priority: bool = Field(
        True,
        description="Run cameras and models at the lowest CPU priority (Linux SCHED_IDLE), "
        "so sensor ingest never waits for them; when the CPU is busy, frames are dropped "
        "and counted instead (docs/vision.md).",
    )
    busy_infer_factor: float = Field(
        4.0,
        ge=1,
        le=100,
        description="While MQTT ingest has a backlog (its hand-off queue a tenth full or "
        "more), every camera's infer_fps is divided by this, so a gateway catching up "
        "after an outage spends its CPU on the readings first. 1: no throttle.",
    )
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    eartag: EartagConfig = Field(default_factory=EartagConfig)
    bcs: BcsConfig = Field(default_factory=BcsConfig)
    milk: MilkConfig = Field(default_factory=MilkConfig)


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    json_format: bool = Field(False, description="One JSON object per line (for journald).")


class Config(Section):
    """The whole tree. Every section is optional."""

    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    central: CentralConfig = Field(default_factory=CentralConfig)
    cameras: list[CameraConfig] = Field(
        default_factory=list, description="Camera sources (none by default)."
    )
    vision: VisionConfig = Field(default_factory=VisionConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    profiles: dict[str, ProfileConfig] = Field(
        default_factory=dict,
        description="Runtime profiles by name (milking, washing, night, heat_wave...): "
        "overrides of detect.rules and camera sampling, switched without a restart by "
        "profile_schedule, the MQTT topic <mqtt.status_prefix>/<gateway id>/profile/set or "
        "the status page (docs/profiles.md). 'normal' is the base config.",
    )
    profile_schedule: list[ScheduleEntry] = Field(
        default_factory=list,
        description="Daily switches: each entry's profile starts at its time and lasts "
        "until the next entry; a switch by MQTT or the page lasts until the next entry. "
        "Empty: 'normal' unless switched.",
    )
    profile_clock: ProfileClock = Field(
        "local", description="The clock of profile_schedule times: local (the gateway's "
        "time zone) or utc."
    )

    @model_validator(mode="after")
    def _unique_cameras(self) -> Config:
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError("camera ids must be unique")
        return self

    # Field validators, not the model's: an error then shows only its own section.
    @field_validator("profiles")
    @classmethod
    def _profiles_merge(cls, value: dict[str, ProfileConfig],
                        info: ValidationInfo) -> dict[str, ProfileConfig]:
        detect, cameras = info.data.get("detect"), info.data.get("cameras")
        if detect is not None and cameras is not None:  # else their own error shows
            check_profiles(detect.rules, value, {c.id for c in cameras})
        return value

    @field_validator("profile_schedule")
    @classmethod
    def _schedule_names(cls, value: list[ScheduleEntry],
                        info: ValidationInfo) -> list[ScheduleEntry]:
        profiles = info.data.get("profiles")
        if profiles is not None:
            check_schedule(value, set(profiles))
        return value

    @property
    def store_path(self) -> Path:
        return self.store.path or self.gateway.data_dir / "buffer.db"

    @property
    def mqtt_client_id(self) -> str:
        return self.mqtt.client_id or f"dairy-edge-{self.gateway.id}"
