"""Ear tags: find tags in a frame, read the printed number, vote across a visit,
check against the herd register and RFID, and emit one identification per visit."""
