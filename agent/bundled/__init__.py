"""The data the agent runs on, shipped inside the package: firmware formats,
calibrations, models and the example herd. In a checkout these are links to the
top-level folders (firmware_configs/, calibration/, models/, examples/); in an
installed wheel they are real folders, so `dairy-edge` works from anywhere."""
